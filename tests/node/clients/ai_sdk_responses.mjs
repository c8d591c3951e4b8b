// The Vercel AI SDK as a Node app uses it with the OpenAI provider's Responses API model
// (`createOpenAI({ baseURL }).responses(id)`, also what `openai(id)` picks by default): stream a text
// answer, a tool call, and an answer that fails mid-stream. Prints what it saw as one JSON line.
// Usage: node ai_sdk_responses.mjs <base URL of /v1> <prompt>
import { createOpenAI } from "@ai-sdk/openai";
import { jsonSchema, streamText, tool } from "ai";

const [baseURL, prompt] = process.argv.slice(2);

// The mock's fault injection is a body field of ours, which the AI SDK has no option for: a custom
// `fetch` (an AI SDK setting) adds it, as an app would add a header.
function provider(mock) {
  const fetchWithMock = (url, init) => {
    if (mock === undefined) return fetch(url, init);
    return fetch(url, { ...init, body: JSON.stringify({ ...JSON.parse(init.body), mock }) });
  };
  return createOpenAI({ baseURL, apiKey: "x", fetch: fetchWithMock });
}

async function streamed(options, mock) {
  const errors = [];
  const result = streamText({
    model: provider(mock).responses("mock"),
    maxRetries: 0,
    onError: ({ error }) => errors.push(String(error?.message ?? error)),
    ...options,
  });
  const deltas = [];
  for await (const delta of result.textStream) deltas.push(delta);
  return { result, deltas, errors };
}

const text = await streamed({ prompt });
const weather = {
  get_weather: tool({
    description: "The forecast",
    inputSchema: jsonSchema({
      type: "object",
      properties: { location: { type: "string" }, unit: { type: "string", enum: ["celsius", "fahrenheit"] } },
      required: ["location", "unit"],
      additionalProperties: false,
    }),
  }),
};
const withTool = await streamed({ prompt: "What is the weather in Lyon?", tools: weather, toolChoice: "required" });
const failing = await streamed({ prompt }, { fail_after: 3 });

console.log(JSON.stringify({
  text: text.deltas.join(""),
  deltas: text.deltas.length,
  finishReason: await text.result.finishReason,
  usage: await text.result.usage,
  errors: text.errors,
  toolCalls: (await withTool.result.toolCalls).map((call) => ({ name: call.toolName, input: call.input })),
  toolFinishReason: await withTool.result.finishReason,
  failedText: failing.deltas.join(""),
  failedErrors: failing.errors,
}));
