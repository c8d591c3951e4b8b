"""Server-Sent Events framing, shared by the SSE dialects: pure functions from payloads to bytes.

Data is always a single line of JSON, so tokens that contain newlines survive; the naive
`data: ${token}` framing would split them into several `data:` lines or end the event early.
"""

from __future__ import annotations

EVENT_STREAM_HEADERS: dict[str, str] = {
    "Content-Type": "text/event-stream; charset=utf-8",
    # Proxies and CDNs must pass every event through as it is written.
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",
}

# Sent for a session `Heartbeat`: a comment line, which every SSE client ignores.
PING = b": ping\n\n"
OPENAI_DONE = b"data: [DONE]\n\n"


def event(data: bytes, *, name: str | None = None, event_id: str | None = None) -> bytes:
    """One SSE event; `data` must be a single line (JSON from msgspec always is)."""
    head = b""
    if event_id is not None:
        head += b"id: " + event_id.encode() + b"\n"
    if name is not None:
        head += b"event: " + name.encode() + b"\n"
    return head + b"data: " + data + b"\n\n"
