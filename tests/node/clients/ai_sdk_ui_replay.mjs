// Replays UI message streams through the AI SDK's own reader: `DefaultChatTransport`'s parser (which
// validates every chunk against `uiMessageChunkSchema`) and `readUIMessageStream` (which builds the
// UIMessage and rejects chunks out of order). Reads a JSON array of SSE bodies on stdin; prints, for each,
// the chunk types, the final message and every error, as one JSON line.
// Usage: node ai_sdk_ui_replay.mjs < bodies.json
import { DefaultChatTransport, readUIMessageStream } from "ai";

async function replay(body) {
  const chunks = new DefaultChatTransport().processResponseStream(new Response(body).body);
  const types = [];
  const recorded = chunks.pipeThrough(
    new TransformStream({
      transform(chunk, controller) {
        types.push(chunk.type);
        controller.enqueue(chunk);
      },
    }),
  );
  const errors = [];
  let message = null;
  for await (const snapshot of readUIMessageStream({ stream: recorded, onError: (e) => errors.push(e.message) })) {
    message = snapshot;
  }
  return { types, message, errors };
}

let input = "";
for await (const piece of process.stdin) input += piece;
const results = [];
for (const body of JSON.parse(input)) results.push(await replay(body));
console.log(JSON.stringify(results));
