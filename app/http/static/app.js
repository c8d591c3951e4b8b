// tokenrelay's browser client: a conversation kept in the browser, four transports that send it with each
// prompt, and an answer rendered as Markdown while it streams (markdown.js, over the vendored
// streaming-markdown), with a timeline of its deltas (timeline.js). No build step; loaded as a module, so it
// runs in strict mode after parsing.

import { Conversation, newId } from "./conversation.js";
import { MarkdownView, handleCopyButtons } from "./markdown.js";
import { Timeline } from "./timeline.js";

// After a dropped connection: two more attempts, after these pauses. Every transport starts resumable
// streams and reconnects to the same one, from the last event it rendered (`GET /v1/streams/{id}/events`,
// or a `resume` message on a new WebSocket), so nothing is generated twice. Only a stream whose id never
// arrived is asked for again: the new answer is shown, and the text already on screen is kept as is when
// the new answer starts with it (the mock provider is deterministic; a sampling model usually is not).
const RETRY_DELAYS_MS = [500, 1500];

const TRANSPORT_LABELS = {
  fetch: "fetch + SSE parser",
  eventsource: "EventSource",
  websocket: "WebSocket",
  "ai-sdk": "AI SDK UI stream",
};

// The AI SDK's `finishReason`s, as the other transports (and OpenAI) name them.
const UI_FINISH_REASONS = {
  stop: "stop",
  length: "length",
  "content-filter": "content_filter",
  "tool-calls": "tool_calls",
};

// The tool "Offer a demo tool" puts in the request. The page shows the calls the model makes; it does not
// run them (a real app would run the tool and send its result back in a `tool` message).
const DEMO_TOOL = {
  type: "function",
  function: {
    name: "get_weather",
    description: "The current weather in a city",
    parameters: {
      type: "object",
      properties: {
        city: { type: "string", description: "City name, e.g. Lyon" },
        unit: { type: "string", enum: ["celsius", "fahrenheit"] },
      },
      required: ["city"],
      additionalProperties: false,
    },
  },
};

// EventSource can only GET, so the conversation travels in the URL; servers and proxies refuse URLs past
// about 8 KB (uvicorn's h11 at 16 KB for the whole request head), so the page says so before trying.
const EVENTSOURCE_URL_LIMIT = 8000;
const EVENTSOURCE_MESSAGE_LIMIT = 64; // what GET /v1/stream?messages= takes (MAX_QUERY_MESSAGES)

const byId = (id) => document.getElementById(id);
const ui = {
  form: byId("chat"),
  prompt: byId("prompt"),
  transport: byId("transport"),
  transportNote: byId("transport-note"),
  send: byId("send"),
  stop: byId("stop"),
  apiKey: byId("api-key"),
  model: byId("model"),
  maxTokens: byId("max-tokens"),
  mock: byId("mock"),
  demoTool: byId("demo-tool"),
  newConversation: byId("new-conversation"),
  conversation: byId("conversation"),
  status: byId("status"),
  summary: byId("summary"),
  ttft: byId("ttft"),
  deltas: byId("deltas"),
  rate: byId("rate"),
};

const conversation = Conversation.restore(browserStorage());

function browserStorage() {
  try {
    return window.localStorage;
  } catch {
    return null; // storage disabled: the conversation lasts as long as the page
  }
}

/** The connection broke before the answer was complete: worth another attempt. */
class ConnectionLost extends Error {}

/** The server refused or failed the request: another attempt would fail the same way. */
class StreamFailed extends Error {}

let current = null; // the Run whose answer the page shows
let promptSeq = 0;

function showStatus(state, text) {
  ui.status.dataset.state = state;
  ui.status.textContent = text;
}

function refreshControls() {
  const running = current !== null && !current.ended;
  ui.stop.disabled = !running;
  ui.conversation.setAttribute("aria-busy", String(running));
}

// Follow the answer as it grows unless the user scrolled up to read; at most one layout per frame. Only a
// scroll the user makes decides: the page's own, and the browser's (clamping when the text shrinks, keeping
// an anchor in view), happen in between and say nothing about where the user wants to be.
let followOutput = true;
let scrollQueued = false;
let userScrolledAt = -Infinity;
for (const type of ["wheel", "touchmove", "keydown", "pointerdown"]) {
  ui.conversation.addEventListener(type, () => (userScrolledAt = performance.now()), { passive: true });
}
ui.conversation.addEventListener("scroll", () => {
  if (performance.now() - userScrolledAt > 1000) return;
  const log = ui.conversation;
  followOutput = log.scrollHeight - log.scrollTop - log.clientHeight < 24;
});

function scrollSoon(force = false) {
  if (force) followOutput = true;
  if (scrollQueued) return;
  scrollQueued = true;
  requestAnimationFrame(() => {
    scrollQueued = false;
    if (followOutput) ui.conversation.scrollTop = ui.conversation.scrollHeight;
  });
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A user's turn: its text as typed, never parsed. */
function showUserTurn(turn) {
  const article = element("article", "turn user");
  article.dataset.turnId = turn.id;
  article.append(element("p", "who", "You"), element("p", "text", turn.text));
  ui.conversation.append(article);
}

/** A line under a user's turn, about what was sent with it. */
function showUserNote(turn, text) {
  const article = ui.conversation.querySelector(`article[data-turn-id="${turn.id}"]`);
  article?.append(element("p", "turn-note", text));
}

/** An assistant's turn: the Markdown of its answer, its tool calls, its timeline and how it ended. */
class AssistantView {
  constructor(turn) {
    this.article = element("article", "turn assistant");
    this.article.dataset.turnId = turn.id;
    this.body = element("div", "markdown");
    this.calls = element("div", "tool-calls");
    this.calls.hidden = true;
    this.note = element("p", "turn-note");
    this.note.hidden = true;
    this.article.append(element("p", "who", "Assistant"), this.body, this.calls);
    this.timeline = new Timeline(this.article);
    this.article.append(this.note);
    this.markdown = new MarkdownView(this.body);
    this.callArguments = new Map(); // tool call index -> the text node its arguments are appended to
    this.setState(turn.state, turn.note);
    ui.conversation.append(this.article);
  }

  /** A turn saved by an earlier visit, drawn whole. */
  static restore(turn) {
    const view = new AssistantView(turn);
    view.markdown.write(turn.text);
    view.markdown.end();
    for (const call of turn.calls ?? []) view.toolCall(call);
    for (const [at, kind] of turn.marks ?? []) view.timeline.mark(at, kind);
    view.timeline.describe();
    return view;
  }

  setState(state, note) {
    this.article.dataset.state = state;
    this.note.textContent = note ?? "";
    this.note.hidden = !note;
  }

  /** A piece of a tool call: its first piece names the function, every piece extends the arguments. */
  toolCall(data) {
    let args = this.callArguments.get(data.index);
    if (args === undefined) {
      const block = element("details", "tool-call");
      const summary = element("summary", "", "Tool call ");
      summary.append(element("code", "tool-name", data.name ?? "tool"));
      const code = element("code", "tool-arguments");
      args = document.createTextNode("");
      code.append(args);
      const pre = element("pre");
      pre.append(code);
      block.append(summary, pre);
      if (data.call_id) block.dataset.callId = data.call_id;
      this.calls.append(block);
      this.calls.hidden = false;
      this.callArguments.set(data.index, args);
    }
    args.appendData(data.arguments);
  }

  clearToolCalls() {
    this.callArguments.clear();
    this.calls.replaceChildren();
    this.calls.hidden = true;
  }
}

function formatMs(ms) {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

function describeError(error) {
  if (!error || typeof error !== "object") return "unknown error";
  const code = error.code || error.type;
  return code ? `${error.message} (${code})` : String(error.message);
}

function authHeaders(apiKey) {
  return apiKey ? { Authorization: `Bearer ${apiKey}` } : {};
}

/** One prompt and its answer, across reconnect attempts, until done, error or stop. */
class Run {
  constructor(request, transport, apiKey, turn, view) {
    this.request = request; // the body of POST /v1/stream: {messages, model?, max_tokens?, mock?}
    this.transport = transport;
    this.apiKey = apiKey;
    this.turn = turn; // the assistant turn this run fills, as the conversation saves it
    this.view = view; // and as the page shows it
    this.chatId = conversation.id; // /api/chat's conversation id
    this.controller = new AbortController();
    this.ended = false;
    this.attempt = 0; // retries used after dropped connections, out of RETRY_DELAYS_MS.length
    this.reconnects = 0; // connections after the first, hand-overs included
    this.mode = "first"; // this connection: "first", "resume" (the same stream) or "regenerate"
    this.streamId = null; // from `X-Stream-Id` or `start`: for the cancel endpoint, and to resume
    // The id this page gives the stream it asks for (`X-Stream-Id`), so that Stop can cancel it while the
    // first token is awaited: the server's answer, headers included, comes only with its first event.
    this.chosenStreamId = randomStreamId();
    this.lastEventId = 0; // the `id:` of the last event rendered: a resume asks for the ones after it
    this.openedAfter = 0; // lastEventId when this connection opened, to tell whether it brought anything
    this.handedOver = false; // the server ended this connection with a `resume` event (its host's deadline)
    this.chunks = null; // ai-sdk: the UI message chunk reader, whose state a resume continues
    this.sentAt = performance.now();
    this.firstTokenAt = null;
    this.attemptFirstAt = null;
    this.lastTokenAt = null;
    this.tokens = 0; // deltas of the stream shown (of the current attempt, when regenerating)
    this.shown = ""; // the Markdown source of the answer shown
    this.received = ""; // the text of the current attempt
    this.replaying = false; // a regeneration is re-receiving text that is already shown
    this.timer = null;
  }

  get signal() {
    return this.controller.signal;
  }

  get live() {
    return !this.ended && current === this;
  }

  async start() {
    ui.summary.textContent = "";
    this.renderStats();
    refreshControls();
    this.status("connecting", `Connecting with ${TRANSPORT_LABELS[this.transport]}…`);
    this.timer = setInterval(() => {
      this.renderStats(); // TTFT counts up until the first token
      this.view.timeline.describe();
    }, 100);
    try {
      await this.attempts();
    } finally {
      clearInterval(this.timer);
    }
  }

  async attempts() {
    for (;;) {
      this.openedAfter = this.lastEventId;
      this.handedOver = false;
      try {
        await TRANSPORTS[this.transport](this);
        if (!this.ended) throw new ConnectionLost("the stream ended before its last event");
        return;
      } catch (error) {
        if (!this.live) return;
        if (!(error instanceof ConnectionLost)) {
          this.fail(error instanceof StreamFailed ? error.message : `Unexpected error: ${error}`);
          return;
        }
        const resume = this.streamId !== null;
        // A hand-over is planned, not a failure: reconnect at once, without using a retry. Unless the
        // connection brought nothing, so that a server that cannot serve the stream cannot make us spin.
        if (resume && this.handedOver && this.lastEventId > this.openedAfter) {
          this.reconnects += 1;
          this.mode = "resume";
          continue;
        }
        if (this.attempt >= RETRY_DELAYS_MS.length) {
          // Nobody will read the rest: stop the generation rather than leave it running for its grace period.
          if (resume) requestCancel(this.streamId, this.apiKey);
          this.fail(`Connection lost: ${error.message}. Gave up after ${this.attempt} retries; press Send to try again.`);
          return;
        }
        conversation.save(); // the answer so far, kept at once: the retry may never come
        const delay = RETRY_DELAYS_MS[this.attempt];
        this.attempt += 1;
        const lost = `Connection lost after ${this.tokens} deltas (${error.message}).`;
        const when = `in ${delay / 1000} s (attempt ${this.attempt} of ${RETRY_DELAYS_MS.length})`;
        this.status(
          "retrying",
          resume
            ? `${lost} Reconnecting ${when} to resume the same answer where it stopped.`
            : `${lost} Retrying ${when}: the answer is regenerated, and the text already shown is kept.`,
        );
        if (!(await pause(delay, this.signal)) || !this.live) return;
        this.reconnects += 1;
        if (resume) this.mode = "resume";
        else this.regenerate();
      }
    }
  }

  /** Start over with a new stream: the connection dropped before the stream's id arrived. */
  regenerate() {
    this.mode = "regenerate";
    this.received = "";
    this.replaying = this.shown.length > 0;
    this.tokens = 0;
    this.attemptFirstAt = null;
    this.streamId = null;
    this.chosenStreamId = randomStreamId(); // a new stream: a new id
    this.lastEventId = 0;
    this.openedAfter = 0;
    this.chunks = null;
    this.clearToolCalls(); // the regenerated answer makes its calls again
  }

  /** Whether an event with this `id:` is one not rendered yet; a resume must never render one twice. */
  fresh(id) {
    if (!id) return true; // events without an id (the `resume` hint)
    const number = Number(id);
    if (!Number.isSafeInteger(number)) return true;
    if (number <= this.lastEventId) return false;
    this.lastEventId = number;
    return true;
  }

  /** A resume connection is open: the events after `lastEventId` follow. */
  resumed() {
    this.status(
      "streaming",
      `Reconnected: resuming the same answer after event ${this.lastEventId} (${this.tokens} deltas kept)…`,
    );
  }

  /** An SSE comment. Dialects other than /v1/stream's hand a stream over with one, not an event. */
  comment(text) {
    if (text.startsWith("resume from last_event_id=")) this.handedOver = true;
  }

  /** Apply one server event; transports stop reading once `ended` is true. */
  handle(type, data) {
    if (!this.live) return;
    if (type === "start") {
      this.streamId = data.stream_id ?? this.streamId;
      if (this.mode === "first") this.status("streaming", "Streaming…");
      else if (this.mode === "regenerate") {
        this.status("streaming", `Reconnected (attempt ${this.attempt}); regenerating and skipping the text already shown…`);
      }
    } else if (type === "delta") {
      this.delta(data.text);
    } else if (type === "tool_call") {
      this.toolCall(data);
    } else if (type === "done") {
      this.done(data);
    } else if (type === "error") {
      const where = this.tokens > 0 || this.shown ? `The stream failed after ${this.tokens} deltas` : "Error";
      this.fail(`${where}: ${describeError(data.error)}`);
    } else if (type === "resume") {
      this.handedOver = true;
    }
  }

  delta(text) {
    this.counted("text");
    if (this.replaying) this.replay(text);
    else this.append(text);
    this.renderStats();
  }

  /** One delta received: counted, and marked on the timeline at its arrival. */
  counted(kind) {
    const now = performance.now();
    this.firstTokenAt ??= now;
    this.attemptFirstAt ??= now;
    this.lastTokenAt = now;
    this.tokens += 1;
    const at = Math.round((now - this.sentAt) * 10) / 10;
    this.turn.marks.push([at, kind]);
    this.view.timeline.mark(at, kind);
  }

  toolCall(data) {
    this.counted("call");
    const calls = this.turn.calls;
    const saved = calls.find((call) => call.index === data.index);
    if (saved) saved.arguments += data.arguments;
    else calls.push({ index: data.index, name: data.name ?? "tool", call_id: data.call_id, arguments: data.arguments });
    this.view.toolCall(data);
    conversation.saveSoon();
    this.renderStats();
  }

  clearToolCalls() {
    this.turn.calls = [];
    this.view.clearToolCalls();
  }

  append(text) {
    this.view.markdown.write(text);
    this.shown += text;
    this.turn.text = this.shown;
    conversation.saveSoon();
    scrollSoon();
  }

  /** During a retry: skip what is already shown while the new answer matches it, then carry on appending. */
  replay(text) {
    const from = this.received.length;
    this.received += text;
    const shown = this.shown;
    const overlap = shown.slice(from, from + text.length);
    if (!text.startsWith(overlap)) {
      this.diverged();
      return;
    }
    if (this.received.length > shown.length) {
      this.replaying = false;
      this.append(text.slice(overlap.length));
      this.status(
        "streaming",
        `Resumed after reconnecting: the regenerated answer matched the ${shown.length} characters ` +
          "already shown, so only the rest is added.",
      );
    }
  }

  diverged() {
    this.replaying = false;
    this.view.markdown.reset(this.received);
    this.shown = this.received;
    this.turn.text = this.shown;
    this.status("streaming", "Reconnected, but the regenerated answer differs from the interrupted one; showing the new one.");
  }

  done(data) {
    if (this.replaying && this.received !== this.shown) this.diverged();
    const usage = data.usage;
    // Tokens as the server counted them when it says; otherwise what the page can count: deltas.
    const count = usage ? `${usage.completion_tokens} tokens` : `${this.tokens} deltas`;
    const cut = data.outcome === "max_tokens" ? " (cut short by the token limit)" : "";
    const retried = this.reconnects ? ` after ${this.reconnects} reconnect${this.reconnects > 1 ? "s" : ""}` : "";
    const called = data.finish_reason === "tool_calls" ? " The model called a tool (the page does not run it)." : "";
    const parts = [`finish_reason: ${data.finish_reason}`, `${this.tokens} deltas received`];
    if (data.timings.ttft_ms !== null) parts.push(`server time to first token: ${formatMs(data.timings.ttft_ms)}`);
    parts.push(`server duration: ${formatMs(data.timings.duration_ms)}`);
    if (usage) parts.push(`usage: ${usage.prompt_tokens} prompt + ${usage.completion_tokens} completion tokens`);
    this.turn.summary = parts.join(" · ");
    this.end("done", cut ? "Cut short by the token limit." : "");
    showStatus("done", `Done: ${count} in ${formatMs(data.timings.duration_ms)}${retried}${cut}.${called}`);
    ui.summary.textContent = this.turn.summary;
  }

  fail(message) {
    this.turn.summary = this.clientSummary("failed");
    this.end("error", message);
    showStatus("error", message);
    ui.summary.textContent = this.turn.summary;
  }

  /** The Stop button, Escape, a new prompt replacing this one, or the page going away. */
  stop(reason) {
    if (this.ended) return;
    // The cancel endpoint first: on Lambda a closed connection is never reported to the function, and a
    // WebSocket between two sockets has none to send its `cancel` on (it sends one too, on abort).
    const streamId = this.streamId ?? (this.transport === "websocket" ? null : this.chosenStreamId);
    if (streamId) requestCancel(streamId, this.apiKey);
    this.controller.abort();
    const note = {
      stop: `Stopped after ${this.tokens} deltas.`,
      superseded: `Stopped after ${this.tokens} deltas: a new prompt replaced it.`,
      left: `Stopped after ${this.tokens} deltas: the page was closed or reloaded.`,
    }[reason] ?? `Stopped after ${this.tokens} deltas.`;
    this.turn.summary = this.clientSummary("stopped");
    this.end("stopped", note);
    if (reason === "stop") {
      showStatus("stopped", note);
      ui.summary.textContent = this.turn.summary;
    }
  }

  /** What the page measured itself, for an answer that ended without the server's `done`. */
  clientSummary(outcome) {
    const parts = [outcome, `${this.tokens} deltas received`];
    if (this.firstTokenAt !== null) parts.push(`time to first delta: ${formatMs(this.firstTokenAt - this.sentAt)}`);
    parts.push(`${formatMs(performance.now() - this.sentAt)} since Send`);
    return parts.join(" · ");
  }

  end(state, note = "") {
    this.ended = true;
    clearInterval(this.timer);
    this.view.markdown.end(); // an unterminated fence or list is closed here, not left open
    this.view.timeline.describe();
    this.turn.state = state;
    this.turn.note = note;
    this.view.setState(state, note);
    conversation.save();
    this.renderStats();
    refreshControls();
    scrollSoon();
  }

  status(state, text) {
    if (this.live) showStatus(state, text);
  }

  renderStats() {
    if (current !== this) return;
    if (this.firstTokenAt !== null) {
      ui.ttft.textContent = formatMs(this.firstTokenAt - this.sentAt);
    } else {
      ui.ttft.textContent = this.ended ? "–" : `${((performance.now() - this.sentAt) / 1000).toFixed(1)} s…`;
    }
    ui.deltas.textContent = String(this.tokens);
    const span = this.lastTokenAt !== null && this.attemptFirstAt !== null ? this.lastTokenAt - this.attemptFirstAt : 0;
    ui.rate.textContent = this.tokens > 1 && span > 0 ? `${((this.tokens - 1) / (span / 1000)).toFixed(1)} deltas/s` : "–";
  }
}

/** Resolve true after `ms`, or false as soon as `signal` aborts. */
function pause(ms, signal) {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve(false);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve(true);
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

function requestCancel(streamId, apiKey) {
  fetch(`/v1/streams/${encodeURIComponent(streamId)}/cancel`, {
    method: "POST",
    headers: authHeaders(apiKey),
    keepalive: true,
  }).catch(() => {}); // best effort: a 404 or a network error means the stream is gone anyway
}

async function httpError(response) {
  let detail = null;
  try {
    detail = (await response.json()).error ?? null;
  } catch {
    // not a JSON body (a proxy's error page, say)
  }
  const message = detail ? describeError(detail) : response.statusText || "no details";
  const retryAfter = response.headers.get("Retry-After");
  const hint = retryAfter ? ` Retry after ${retryAfter} s.` : "";
  return new StreamFailed(`The server answered HTTP ${response.status}: ${message}.${hint}`);
}

/** An incremental `text/event-stream` parser (WHATWG rules): feed it decoded text as it arrives. */
class SseParser {
  constructor(onEvent, onComment = () => {}) {
    this.onEvent = onEvent; // (type, data, id): `id` is the event's own `id:` field, "" without one
    this.onComment = onComment;
    this.buffer = "";
    this.type = "";
    this.data = [];
    this.id = "";
  }

  push(text) {
    this.buffer += text;
    // A chunk can end between the "\r" and "\n" of one line break; keep the "\r" until we know.
    const held = this.buffer.endsWith("\r");
    const lines = (held ? this.buffer.slice(0, -1) : this.buffer).split(/\r\n|\r|\n/);
    this.buffer = lines.pop() + (held ? "\r" : "");
    for (const line of lines) this.line(line);
  }

  line(line) {
    if (line === "") {
      // Only a complete event counts, id included: a connection cut inside one leaves it to the resume.
      if (this.data.length) this.onEvent(this.type || "message", this.data.join("\n"), this.id);
      this.type = "";
      this.data = [];
      this.id = "";
      return;
    }
    if (line.startsWith(":")) {
      this.onComment(line.slice(1).trimStart()); // the `: ping` heartbeat, or a hand-over hint
      return;
    }
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.type = value;
    else if (field === "data") this.data.push(value);
    else if (field === "id" && !value.includes("\0")) this.id = value;
  }
}

function viaFetch(run) {
  const onEvent = (type, data) => run.handle(type, JSON.parse(data));
  if (run.mode === "resume") return resumeEventStream(run, onEvent);
  // Resumable: a dropped connection reconnects to this stream instead of asking again.
  const request = postJson({ ...run.request, resumable: true }, run.chosenStreamId);
  return readEventStream(run, "/v1/stream", request, (response) => {
    run.streamId = response.headers.get("X-Stream-Id");
    return onEvent;
  });
}

function postJson(body, streamId) {
  const headers = { "Content-Type": "application/json", "X-Stream-Id": streamId };
  return { method: "POST", headers, body: JSON.stringify(body) };
}

/** 32 random hex digits (crypto.getRandomValues works where crypto.randomUUID, secure contexts only, may not). */
function randomStreamId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** The events of the run's stream after the last one rendered, in the stream's own framing. */
function resumeEventStream(run, onEvent) {
  const path = `/v1/streams/${encodeURIComponent(run.streamId)}/events`;
  const request = { method: "GET", headers: { "Last-Event-ID": String(run.lastEventId) } };
  return readEventStream(run, path, request, () => {
    run.resumed();
    return onEvent;
  });
}

/** Send the request and read the event stream of its answer; `reader(response)` makes the event handler. */
async function readEventStream(run, path, request, reader) {
  let response;
  try {
    response = await fetch(path, {
      ...request,
      headers: { Accept: "text/event-stream", ...request.headers, ...authHeaders(run.apiKey) },
      signal: run.signal,
      cache: "no-store",
    });
  } catch (error) {
    if (run.signal.aborted) return;
    throw new ConnectionLost("could not reach the server");
  }
  if (!response.ok) throw await httpError(response);
  const onEvent = reader(response);
  const parser = new SseParser(
    (type, data, id) => {
      if (run.fresh(id)) onEvent(type, data);
    },
    (text) => run.comment(text),
  );
  const stream = response.body.pipeThrough(new TextDecoderStream()).getReader();
  try {
    while (!run.ended && !run.handedOver) {
      const { value, done } = await stream.read();
      if (done) break;
      parser.push(value);
    }
  } catch (error) {
    if (run.signal.aborted) return;
    throw new ConnectionLost("the connection dropped");
  } finally {
    stream.cancel().catch(() => {});
  }
  if (run.ended) return;
  throw new ConnectionLost(run.handedOver ? "the server handed the stream over" : "the stream ended before its last event");
}

/** POST /api/chat as the AI SDK's `useChat` does: the prompt as a user UIMessage, the options as body fields. */
function viaAiSdk(run) {
  const onEvent = (_, data) => run.chunks.read(data);
  // The same framing on resume: the chunk reader carries on where the dropped connection left it.
  if (run.mode === "resume") return resumeEventStream(run, onEvent);
  const { messages, ...options } = run.request;
  // The whole conversation every turn, as `useChat` sends it; ids are the conversation's and the position's.
  const body = {
    id: run.chatId,
    trigger: "submit-message",
    messages: messages.map((message, index) => ({
      id: `${run.chatId}-${index}`,
      role: message.role,
      parts: [{ type: "text", text: message.content }],
    })),
    ...options,
  };
  // /api/chat streams are resumable unless the body says otherwise.
  return readEventStream(run, "/api/chat", postJson(body, run.chosenStreamId), (response) => {
    run.streamId = response.headers.get("X-Stream-Id");
    run.chunks = new UiMessageChunks(run);
    return onEvent;
  });
}

/** The AI SDK's UI message chunks, as the events the other transports give `Run.handle`. */
class UiMessageChunks {
  constructor(run) {
    this.run = run;
    this.calls = new Map(); // toolCallId -> {index, name}
    this.metadata = {}; // merged as the SDK merges it: `start`'s, then the end's
    this.finishReason = null;
    this.failure = null; // the `errorText` of an `error`, or the `reason` of an `abort`
  }

  read(data) {
    if (data === "[DONE]") {
      this.end();
      return;
    }
    const chunk = JSON.parse(data);
    switch (chunk.type) {
      case "start":
        Object.assign(this.metadata, chunk.messageMetadata);
        this.run.handle("start", this.metadata);
        break;
      case "text-delta":
        this.run.handle("delta", { text: chunk.delta });
        break;
      case "tool-input-start":
        this.calls.set(chunk.toolCallId, { index: this.calls.size, name: chunk.toolName });
        break;
      case "tool-input-delta": {
        const call = this.calls.get(chunk.toolCallId);
        this.run.handle("tool_call", { ...call, call_id: chunk.toolCallId, arguments: chunk.inputTextDelta });
        break;
      }
      case "finish":
        this.finishReason = chunk.finishReason;
        Object.assign(this.metadata, chunk.messageMetadata);
        break;
      case "message-metadata":
        Object.assign(this.metadata, chunk.messageMetadata);
        break;
      case "error":
        this.failure = chunk.errorText;
        break;
      case "abort":
        this.failure = chunk.reason ?? "the stream was stopped";
        break;
      default:
        // Part boundaries (`text-start`, `start-step`...) and `tool-input-available`: the deltas drew them.
        break;
    }
  }

  end() {
    const metadata = this.metadata;
    if (this.failure !== null) {
      this.run.handle("error", { error: metadata.error ?? { message: this.failure } });
      return;
    }
    this.run.handle("done", { ...metadata, finish_reason: UI_FINISH_REASONS[this.finishReason] ?? this.finishReason });
  }
}

function viaEventSource(run) {
  const resume = run.mode === "resume";
  return new Promise((resolve, reject) => {
    if (run.signal.aborted) {
      resolve();
      return;
    }
    const url = eventSourceUrl(run);
    const messages = run.request.messages.length;
    if (url.href.length > EVENTSOURCE_URL_LIMIT || messages > EVENTSOURCE_MESSAGE_LIMIT) {
      reject(
        new StreamFailed(
          `The conversation is too long for EventSource, which can send it only in the URL (${url.href.length} ` +
            `characters, ${messages} message${messages === 1 ? "" : "s"}). Use fetch, WebSocket or the AI SDK transport, or start a new ` +
            "conversation.",
        ),
      );
      return;
    }
    const source = new EventSource(url);
    let opened = false;
    const settle = (outcome) => {
      source.close();
      run.signal.removeEventListener("abort", onAbort);
      outcome();
    };
    const onAbort = () => settle(resolve);
    run.signal.addEventListener("abort", onAbort, { once: true });
    source.addEventListener("open", () => {
      opened = true;
      if (resume) run.resumed();
    });
    const relay = (event) => {
      if (run.fresh(event.lastEventId)) run.handle(event.type, JSON.parse(event.data));
      if (run.ended) settle(resolve);
    };
    for (const name of ["start", "delta", "tool_call", "done"]) source.addEventListener(name, relay);
    // Carries no `id:`: `lastEventId` would repeat the previous event's, so it bypasses `fresh`.
    source.addEventListener("resume", (event) => {
      run.handle(event.type, JSON.parse(event.data));
      settle(() => reject(new ConnectionLost("the server handed the stream over")));
    });
    source.addEventListener("error", (event) => {
      // The server's `event: error` and the browser's own connection errors share one name; only the
      // server's carries data.
      if (event instanceof MessageEvent && typeof event.data === "string") {
        relay(event);
        return;
      }
      // An HTTP error status closes an EventSource for good; a network error leaves it reconnecting.
      const refused = source.readyState === EventSource.CLOSED;
      // Never let EventSource reconnect by itself: it would ask its own URL again, and on GET /v1/stream
      // that starts a new generation. The page resumes the stream by its id instead, a bounded number of times.
      settle(() => {
        if (run.signal.aborted) resolve();
        else if (opened) reject(new ConnectionLost("the event stream dropped"));
        else if (resume && !refused) reject(new ConnectionLost("could not reach the server"));
        else if (resume) reject(new StreamFailed(refusedResumeMessage()));
        else reject(new StreamFailed(refusedEventSourceMessage(run.apiKey)));
      });
    });
  });
}

/** GET /v1/stream for a new stream; the resume endpoint, with the last id in the query, for a resume. */
function eventSourceUrl(run) {
  if (run.mode === "resume") {
    const url = new URL(`/v1/streams/${encodeURIComponent(run.streamId)}/events`, window.location.href);
    url.searchParams.set("last_event_id", String(run.lastEventId)); // EventSource cannot set the header
    return url;
  }
  const url = new URL("/v1/stream", window.location.href);
  const { messages, model, max_tokens: maxTokens, mock } = run.request;
  // A first prompt as `prompt`; a conversation as `messages`, the JSON a POST would carry.
  if (messages.length === 1) url.searchParams.set("prompt", messages[0].content);
  else url.searchParams.set("messages", JSON.stringify(messages));
  if (model) url.searchParams.set("model", model);
  if (maxTokens) url.searchParams.set("max_tokens", String(maxTokens));
  if (mock) url.searchParams.set("mock", JSON.stringify(mock));
  url.searchParams.set("resumable", "true");
  url.searchParams.set("stream_id", run.chosenStreamId); // EventSource cannot set the X-Stream-Id header
  return url;
}

function refusedResumeMessage() {
  return (
    "The connection dropped and the server refused to resume the stream (it may have expired). " +
    "EventSource does not expose the HTTP status or message; the fetch transport shows the reason."
  );
}

function refusedEventSourceMessage(apiKey) {
  const why = apiKey
    ? "EventSource cannot send the API key (it cannot set headers), so a server with API_KEYS refuses it"
    : "EventSource does not expose the HTTP status or message";
  return `The server refused the stream or could not be reached. ${why}; the fetch transport shows the reason.`;
}

/** One WebSocket to /v1/ws shared by successive prompts; answers are routed by prompt id. */
class SocketConnection {
  constructor(apiKey) {
    const url = new URL("/v1/ws", window.location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    if (apiKey) url.searchParams.set("api_key", apiKey);
    this.apiKey = apiKey;
    this.listeners = new Map();
    this.lastError = null; // an error not tied to a prompt, e.g. why the server is about to close
    this.socket = new WebSocket(url);
    this.opened = new Promise((resolve, reject) => {
      this.socket.addEventListener("open", () => resolve(), { once: true });
      this.socket.addEventListener("close", (event) => reject(event), { once: true });
    });
    this.opened.catch(() => {}); // a failed open is reported to whoever awaits it
    this.socket.addEventListener("message", (event) => this.dispatch(event.data));
    this.socket.addEventListener("close", (event) => {
      const listeners = [...this.listeners.values()];
      this.listeners.clear();
      for (const listener of listeners) listener.closed(event);
    });
  }

  get usable() {
    return this.socket.readyState === WebSocket.CONNECTING || this.socket.readyState === WebSocket.OPEN;
  }

  dispatch(raw) {
    let message;
    try {
      message = JSON.parse(raw);
    } catch {
      return;
    }
    const listener = this.listeners.get(message.id);
    if (listener) listener.message(message);
    else if (message.id === undefined && message.type === "error") this.lastError = message.error;
  }

  send(message) {
    if (this.socket.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }

  close() {
    this.socket.close(1000, "client done");
  }
}

let sharedSocket = null;

function socketFor(apiKey) {
  if (sharedSocket && sharedSocket.apiKey === apiKey && sharedSocket.usable) return sharedSocket;
  sharedSocket?.close();
  sharedSocket = new SocketConnection(apiKey);
  return sharedSocket;
}

function socketCloseError(event, connection, run, beforeOpen) {
  if (event.code === 4401) {
    const reason = connection.lastError ? connection.lastError.message : event.reason;
    return new StreamFailed(`The server refused the WebSocket: ${reason} (check the API key).`);
  }
  if (beforeOpen && run.attempt === 0) {
    return new StreamFailed(
      "Could not open a WebSocket to /v1/ws. WebSockets need an ASGI server (local, containers); " +
        "Lambda function URLs do not carry them, so use fetch or EventSource there.",
    );
  }
  return new ConnectionLost(`the WebSocket closed${event.code ? ` (code ${event.code})` : ""}`);
}

async function viaWebSocket(run) {
  const connection = socketFor(run.apiKey);
  try {
    await connection.opened;
  } catch (event) {
    if (run.signal.aborted) return;
    throw socketCloseError(event, connection, run, true);
  }
  if (run.signal.aborted) return;
  promptSeq += 1;
  const id = `prompt-${promptSeq}`;
  // A resume goes on with the same stream, under this socket's new prompt id.
  const resuming = run.mode === "resume";
  await new Promise((resolve, reject) => {
    const settle = (outcome) => {
      connection.listeners.delete(id);
      run.signal.removeEventListener("abort", onAbort);
      outcome();
    };
    const onAbort = () => {
      connection.send({ type: "cancel", id });
      settle(resolve);
    };
    run.signal.addEventListener("abort", onAbort, { once: true });
    connection.listeners.set(id, {
      message(message) {
        // `event_id`: the message's id in the stream log, which a resume continues after.
        if (run.fresh(message.event_id === undefined ? "" : String(message.event_id))) {
          run.handle(message.type, message);
        }
        if (run.ended) settle(resolve);
        // The server stopped following the stream before its end: go on on a new prompt id.
        else if (run.handedOver) settle(() => reject(new ConnectionLost("the server handed the stream over")));
      },
      closed(event) {
        settle(() => reject(socketCloseError(event, connection, run, false)));
      },
    });
    if (resuming) {
      connection.send({ type: "resume", id, stream_id: run.streamId, last_event_id: run.lastEventId });
      run.resumed();
    } else {
      connection.send({ type: "prompt", id, ...run.request, resumable: true });
    }
  });
}

const TRANSPORTS = { fetch: viaFetch, eventsource: viaEventSource, websocket: viaWebSocket, "ai-sdk": viaAiSdk };

/** The request's options from the form; its `messages` are added once the prompt is taken. */
function buildRequest() {
  const request = {};
  const model = ui.model.value.trim();
  if (model) request.model = model;
  const maxTokens = ui.maxTokens.value.trim();
  if (maxTokens) {
    const value = Number(maxTokens);
    if (!Number.isInteger(value) || value < 1) throw new Error("Max tokens must be a whole number, 1 or more.");
    request.max_tokens = value;
  }
  const mock = ui.mock.value.trim();
  if (mock) {
    let directives;
    try {
      directives = JSON.parse(mock);
    } catch (error) {
      throw new Error(`Mock directives are not valid JSON: ${error.message}`);
    }
    if (directives === null || typeof directives !== "object" || Array.isArray(directives)) {
      throw new Error('Mock directives must be a JSON object, like {"delay_ms": 40}.');
    }
    request.mock = directives;
  }
  if (ui.demoTool.checked) {
    // GET /v1/stream has query parameters only: no room for a tool's JSON Schema.
    if (ui.transport.value === "eventsource") throw new Error("EventSource cannot send tools: use fetch or WebSocket.");
    request.tools = [DEMO_TOOL];
  }
  return request;
}

function submit() {
  const text = ui.prompt.value.trim();
  if (!text) {
    if (!current || current.ended) showStatus("error", "Type a prompt first.");
    ui.prompt.focus();
    return;
  }
  let request;
  try {
    request = buildRequest();
  } catch (error) {
    if (!current || current.ended) showStatus("error", error.message);
    return;
  }
  current?.stop("superseded"); // first, so that its partial answer is part of the history sent
  const history = conversation.history();
  request = { messages: [...history, { role: "user", content: text }], ...request };
  const user = conversation.add({ id: newId("user"), role: "user", text });
  showUserTurn(user);
  if (history.dropped) {
    const turns = `${history.dropped} older message${history.dropped === 1 ? " was" : "s were"}`;
    showUserNote(user, `${turns} not sent with this prompt: the conversation is longer than one request takes.`);
  }
  const turn = { id: newId("assistant"), role: "assistant", text: "", state: "streaming", note: "" };
  Object.assign(turn, { calls: [], marks: [], summary: "" });
  conversation.add(turn);
  const view = new AssistantView(turn);
  scrollSoon(true);
  ui.prompt.value = "";
  const run = new Run(request, ui.transport.value, ui.apiKey.value.trim(), turn, view);
  current = run;
  run.start();
}

/** Forget the conversation, here and in the browser's storage. */
function startNewConversation() {
  current?.stop("superseded");
  current = null;
  conversation.clear();
  ui.conversation.replaceChildren();
  ui.summary.textContent = "";
  ui.ttft.textContent = "–";
  ui.deltas.textContent = "0";
  ui.rate.textContent = "–";
  showStatus("idle", "Ready: a new conversation.");
  refreshControls();
  ui.prompt.focus();
}

/** The conversation an earlier visit saved, drawn as it was left. */
function showSavedConversation() {
  let last = null;
  for (const turn of conversation.turns) {
    if (turn.role === "user") {
      showUserTurn(turn);
    } else {
      AssistantView.restore(turn);
      last = turn;
    }
  }
  if (!conversation.turns.length) return;
  ui.summary.textContent = last?.summary ?? "";
  showStatus("idle", `Ready. The conversation saved in this browser is back (${conversation.turns.length} turns).`);
  scrollSoon(true);
}

function updateTransportNote() {
  const transport = ui.transport.value;
  let note = "";
  if (transport === "eventsource" && ui.apiKey.value.trim()) {
    note =
      "EventSource cannot send headers, so the API key is not sent: a server with API_KEYS will refuse this " +
      "transport. Use fetch or WebSocket.";
  } else if (transport === "websocket") {
    note = "WebSockets need an ASGI server (local, containers); Lambda function URLs do not support them.";
  }
  ui.transportNote.textContent = note;
  ui.transportNote.hidden = !note;
}

ui.form.addEventListener("submit", (event) => {
  event.preventDefault();
  submit();
});
ui.prompt.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    ui.form.requestSubmit();
  }
});
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && current && !current.ended) current.stop("stop");
});
ui.stop.addEventListener("click", () => current?.stop("stop"));
ui.newConversation.addEventListener("click", startNewConversation);
// A reload or a closed tab: stop the answer (the server cancels it) and keep it as far as it got.
window.addEventListener("pagehide", () => current?.stop("left"));
handleCopyButtons(ui.conversation);
showSavedConversation();
ui.transport.addEventListener("change", updateTransportNote);
ui.apiKey.addEventListener("input", updateTransportNote);
updateTransportNote();
refreshControls();
