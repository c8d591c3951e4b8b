"""Wire dialects: each turns a session's events into the frames of one wire format, and nothing else.

A dialect is a small object made per stream (it may number its events or remember the completion id)
whose `frame` is a pure function of the event. The one loop that drives every dialect is
`app.stream.consumer.frames`; ordering, budgets and errors were decided by the session before.

- `native.NativeDialect`: `GET/POST /v1/stream`, named SSE events `start`, `delta`, `done`, `error`, ids
- `openai_chat.OpenAIChatDialect`: `/v1/chat/completions` with `stream: true`, chunk objects, `[DONE]`
- `openai_chat.CompletionDialect`: `/v1/chat/completions` with `stream: false`, one `chat.completion`
- `responses.ResponsesStreamDialect`: `/v1/responses` with `stream: true`, the Responses API's events
- `responses.ResponseDialect`: `/v1/responses` with `stream: false`, one `response` object
- `websocket.WebSocketDialect`: `WS /v1/ws`, one JSON text message per event, with the prompt's id
- `ui_message.UIMessageStreamDialect`: `POST /api/chat`, the AI SDK's UI message chunks, `[DONE]`
"""

from __future__ import annotations

from typing import Protocol, TypeVar

from app.stream.session import SessionEvent

FrameT_co = TypeVar("FrameT_co", covariant=True)


class Dialect(Protocol[FrameT_co]):
    """One stream's translation from session events to frames of a wire format."""

    def start(self) -> FrameT_co | None:
        """What goes out before the first event (a `start` event, the assistant role chunk), if anything."""
        ...

    def frame(self, event: SessionEvent) -> FrameT_co | None:
        """The frame for one event, or None for an event this format does not carry (a heartbeat)."""
        ...
