// The `openai` npm package as a Node app uses it: stream a tool call with the SDK's own helper, which
// accumulates the argument fragments, then send the tool result back. Prints what it saw as one JSON line.
// Usage: node openai_tool_call.mjs <base URL of /v1>
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.argv[2], apiKey: "x", maxRetries: 0, timeout: 15000 });
const tools = [
  {
    type: "function",
    function: {
      name: "get_weather",
      parameters: {
        type: "object",
        properties: { location: { type: "string" }, unit: { type: "string", enum: ["celsius", "fahrenheit"] } },
        required: ["location", "unit"],
        additionalProperties: false,
      },
    },
  },
];
const messages = [{ role: "user", content: "What is the weather in Lyon?" }];

let fragments = 0;
const stream = client.chat.completions.stream({ model: "mock", messages, tools });
stream.on("tool_calls.function.arguments.delta", () => { fragments += 1; });
const completion = await stream.finalChatCompletion();
const choice = completion.choices[0];
const call = choice.message.tool_calls[0];

messages.push(choice.message, { role: "tool", tool_call_id: call.id, content: "sunny, 24 degrees" });
const answer = await client.chat.completions.create({ model: "mock", messages, tools, stream: true });
let text = "";
for await (const chunk of answer) text += chunk.choices[0]?.delta?.content ?? "";

console.log(JSON.stringify({
  finish_reason: choice.finish_reason,
  name: call.function.name,
  arguments: call.function.arguments,
  fragments,
  answer: text,
}));
