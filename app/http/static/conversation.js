// The conversation the page keeps: its turns, what each request sends of them, and their copy in
// localStorage, so that a reload shows the same conversation.

const STORAGE_KEY = "tokenrelay.conversation.v1";
// While an answer streams, at most one write per this many ms: a reload loses at most that much of it, and
// a 2,000-delta answer does not serialise the conversation 2,000 times.
const SAVE_EVERY_MS = 250;
// What a request carries of the conversation at most, in characters: a quarter of the server's default
// MAX_BODY_BYTES (1 MiB), so that JSON escaping and the request's other fields always fit.
export const HISTORY_BUDGET_CHARS = 256 * 1024;

let idSeq = 0;

/** An id unique on this page and across reloads (crypto.randomUUID needs a secure context). */
export function newId(prefix) {
  idSeq += 1;
  return `${prefix}-${Date.now().toString(36)}-${idSeq}`;
}

/** Whether a saved turn has the shape this page draws (an older page's, or a hand edit, may not). */
function wellFormed(turn) {
  if (!turn || typeof turn !== "object" || typeof turn.text !== "string") return false;
  if (turn.role === "user") return true;
  if (turn.role !== "assistant") return false;
  const calls = turn.calls ?? [];
  const marks = turn.marks ?? [];
  return (
    Array.isArray(calls) &&
    calls.every((call) => call && typeof call === "object" && typeof (call.arguments ?? "") === "string") &&
    Array.isArray(marks) &&
    marks.every((mark) => Array.isArray(mark) && Number.isFinite(mark[0]))
  );
}

/**
 * A turn is `{id, role: "user", text}` or `{id, role: "assistant", text, state, note, calls, marks, ttftMs,
 * summary}`: `state` is "streaming", "done", "stopped" or "error"; `calls` the tool calls made (name,
 * arguments); `marks` the arrival of each delta, in ms since Send, for the timeline.
 */
export class Conversation {
  constructor(storage) {
    this.storage = storage;
    this.id = newId("chat");
    this.turns = [];
    this.saveTimer = null;
  }

  /** The conversation saved by an earlier visit, or a new one. */
  static restore(storage) {
    const conversation = new Conversation(storage);
    let saved = null;
    try {
      saved = JSON.parse(storage?.getItem(STORAGE_KEY) ?? "null");
    } catch {
      saved = null; // unreadable (another version, a hand edit): start afresh rather than fail
    }
    if (saved && typeof saved.id === "string" && Array.isArray(saved.turns)) {
      conversation.id = saved.id;
      conversation.turns = saved.turns.filter(wellFormed);
      for (const turn of conversation.turns) {
        // Saved mid-stream, and the page went away without stopping it (a crash, a killed tab).
        if (turn.state === "streaming") {
          turn.state = "stopped";
          turn.note ??= "Interrupted: the page was closed while this answer streamed.";
        }
      }
    }
    return conversation;
  }

  add(turn) {
    this.turns.push(turn);
    this.save();
    return turn;
  }

  /**
   * The messages a request sends before its prompt: every turn so far. An assistant turn is its text, a
   * stopped one included (the user saw it); one without text (only a tool call, which the page does not run,
   * or a failure before the first delta) is left out: a call without its result is not a valid turn.
   */
  history(budgetChars = HISTORY_BUDGET_CHARS) {
    const messages = [];
    for (const turn of this.turns) {
      if (turn.role === "user") messages.push({ role: "user", content: turn.text });
      else if (turn.text) messages.push({ role: "assistant", content: turn.text });
    }
    // The newest turns that fit: a conversation longer than the server takes in one request (MAX_BODY_BYTES)
    // would be refused on every prompt from then on; the oldest turns are left out instead, and counted.
    let used = 0;
    let first = messages.length;
    while (first > 0) {
      used += messages[first - 1].content.length + 32;
      if (used > budgetChars) break;
      first -= 1;
    }
    // Start with a user turn: a history that opens with the assistant's answer to a turn left out misleads.
    while (first < messages.length && messages[first].role !== "user") first += 1;
    const sent = messages.slice(first);
    sent.dropped = first;
    return sent;
  }

  clear() {
    clearTimeout(this.saveTimer);
    this.saveTimer = null;
    this.id = newId("chat");
    this.turns = [];
    try {
      this.storage?.removeItem(STORAGE_KEY);
    } catch {
      // storage refused: nothing was kept anyway
    }
  }

  /** Write now (a turn started or ended). */
  save() {
    clearTimeout(this.saveTimer);
    this.saveTimer = null;
    try {
      this.storage?.setItem(STORAGE_KEY, JSON.stringify({ id: this.id, turns: this.turns }));
    } catch {
      // Full or disabled (private mode): the conversation still works, it just does not survive a reload.
    }
  }

  /** Write soon (a delta arrived). */
  saveSoon() {
    this.saveTimer ??= setTimeout(() => this.save(), SAVE_EVERY_MS);
  }
}
