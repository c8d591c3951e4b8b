// The Vercel AI SDK's chat client against `POST /api/chat`, the way a `useChat()` front end uses it, without
// React: `DefaultChatTransport` posts the conversation, `readUIMessageStream` rebuilds the answer's UIMessage;
// or `AbstractChat` (the class `useChat` wraps) runs the whole loop: send, run a tool in the client, send its
// output back, Stop. Prints what it saw as one JSON line.
// Usage: node ai_sdk_ui_chat.mjs <base URL> <scenario: transport | chat | stop | errors> [API key]
import {
  AbstractChat,
  DefaultChatTransport,
  lastAssistantMessageIsCompleteWithToolCalls,
  readUIMessageStream,
} from "ai";

const [baseUrl, scenario, apiKey] = process.argv.slice(2);
const api = `${baseUrl}/api/chat`;
const headers = apiKey ? { Authorization: `Bearer ${apiKey}` } : undefined;
const WEATHER = {
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
};
const FORECAST = { forecast: "sunny, 24 degrees" };

function userMessage(id, text) {
  return { id, role: "user", parts: [{ type: "text", text }] };
}

function textOf(message) {
  return message.parts.filter((part) => part.type === "text").map((part) => part.text).join("");
}

function summary(message) {
  return {
    id: message.id,
    role: message.role,
    text: textOf(message),
    partTypes: message.parts.map((part) => part.type),
    tools: message.parts.filter((part) => part.type.startsWith("tool-")),
    metadata: message.metadata ?? null,
  };
}

/** One request as `useChat` makes it, and the UIMessage rebuilt from its stream (`message`: the one it continues). */
async function send(transport, messages, { message, abortSignal } = {}) {
  const stream = await transport.sendMessages({
    chatId: "chat-1",
    messages,
    trigger: "submit-message",
    messageId: undefined,
    abortSignal,
  });
  const errors = [];
  let last = message;
  let snapshots = 0;
  for await (const snapshot of readUIMessageStream({ stream, message, onError: (e) => errors.push(e.message) })) {
    last = snapshot;
    snapshots += 1;
  }
  return { message: last, snapshots, errors };
}

async function viaTransport() {
  const transport = new DefaultChatTransport({ api, headers, body: { model: "mock" } });
  const ask = userMessage("u-1", "How do streaming responses work?");
  const first = await send(transport, [ask]);
  // The next turn carries the whole history, the assistant message we produced included, as `useChat` does.
  const again = userMessage("u-2", "And a second question?");
  const second = await send(transport, [ask, first.message, again]);

  const withTools = new DefaultChatTransport({ api, headers, body: { model: "mock", tools: [WEATHER] } });
  const weather = userMessage("u-3", "What is the weather in Lyon?");
  const called = await send(withTools, [weather]);
  // The front end runs the tool and puts its output in the part; the answer continues the same message.
  const answered = structuredClone(called.message);
  const part = answered.parts.find((p) => p.type === "tool-get_weather");
  Object.assign(part, { state: "output-available", output: FORECAST });
  const resumed = await send(withTools, [weather, answered], { message: answered });
  return {
    first: { ...summary(first.message), snapshots: first.snapshots, errors: first.errors },
    second: { ...summary(second.message), errors: second.errors },
    called: { ...summary(called.message), errors: called.errors },
    resumed: { ...summary(resumed.message), errors: resumed.errors },
  };
}

/** `AbstractChat` with the plainest state: what `useChat` gives React, kept in an array. */
class Chat extends AbstractChat {
  constructor(init) {
    const state = {
      status: "ready",
      error: undefined,
      messages: [],
      pushMessage(message) {
        state.messages = [...state.messages, message];
        init.onChange?.(state);
      },
      popMessage() {
        state.messages = state.messages.slice(0, -1);
      },
      replaceMessage(index, message) {
        state.messages = state.messages.map((m, i) => (i === index ? message : m));
        init.onChange?.(state);
      },
      snapshot: (thing) => structuredClone(thing),
    };
    super({ ...init, state });
  }
}

async function viaChat() {
  const requests = [];
  const recordingFetch = (url, init) => {
    requests.push(JSON.parse(init.body));
    return fetch(url, init);
  };
  const chat = new Chat({
    transport: new DefaultChatTransport({ api, headers, fetch: recordingFetch, body: { tools: [WEATHER] } }),
    sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithToolCalls,
    onToolCall: ({ toolCall }) => {
      // Not awaited: the SDK runs it after the chunk that called the tool (awaiting it here would deadlock).
      void chat.addToolOutput({ tool: toolCall.toolName, toolCallId: toolCall.toolCallId, output: FORECAST });
    },
  });
  await chat.sendMessage({ text: "What is the weather in Lyon?" });
  const afterFirst = { status: chat.status, error: chat.error?.message ?? null, count: chat.messages.length };
  await chat.sendMessage({ text: "And in Paris?" });
  return {
    afterFirst,
    status: chat.status,
    error: chat.error?.message ?? null,
    messages: chat.messages.map(summary),
    requests: requests.map((body) => ({
      keys: Object.keys(body).sort(),
      trigger: body.trigger,
      roles: body.messages.map((m) => m.role),
      lastPartTypes: body.messages.at(-1).parts.map((p) => p.type),
    })),
  };
}

async function stop() {
  let stopped = null;
  const chat = new Chat({
    // A plain stream: Stop (the aborted fetch) then stops the generation. A resumable one, the default,
    // only detaches from it, as the AI SDK's own resumable streams do.
    transport: new DefaultChatTransport({ api, headers, body: { mock: { delay_ms: 20 }, resumable: false } }),
    // Stop as a user would, once some of the answer is on screen.
    onChange: (state) => {
      const last = state.messages.at(-1);
      if (!stopped && last?.role === "assistant" && textOf(last).length > 20) stopped = chat.stop();
    },
  });
  await chat.sendMessage({ text: "How do streaming responses work?" });
  await stopped;
  const last = chat.messages.at(-1);
  return { status: chat.status, error: chat.error?.message ?? null, stoppedAt: textOf(last), message: summary(last) };
}

async function errors() {
  const failing = new Chat({
    transport: new DefaultChatTransport({ api, headers, body: { mock: { fail_after: 3 } } }),
  });
  await failing.sendMessage({ text: "How do streaming responses work?" });
  const refused = new Chat({ transport: new DefaultChatTransport({ api, headers, body: { model: "no-such-model" } }) });
  await refused.sendMessage({ text: "Hello?" });
  return {
    midStream: { status: failing.status, error: failing.error?.message ?? null, message: summary(failing.messages.at(-1)) },
    refused: { status: refused.status, error: refused.error?.message ?? null, count: refused.messages.length },
  };
}

const SCENARIOS = { transport: viaTransport, chat: viaChat, stop, errors };
console.log(JSON.stringify(await SCENARIOS[scenario]()));
