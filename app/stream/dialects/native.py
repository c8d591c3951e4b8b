"""`/v1/stream`: SSE events `start`, `delta` / `tool_call`..., then `done` or `error`, each with an `id:`.

The event name is the payload Struct's tag (`StartEvent` -> `start`), so the `event:` line and the JSON
`type` cannot disagree; the WebSocket carries the same Structs (`websocket.py`).
"""

from __future__ import annotations

import time
from typing import Final

import msgspec

from app.schemas import (
    DeltaEvent,
    DoneEvent,
    ErrorEvent,
    StartEvent,
    StreamEvent,
    Timings,
    ToolCallEvent,
    UsageInfo,
    tag_of,
)
from app.stream.dialects import sse
from app.stream.session import Completed, Failed, Heartbeat, SessionEvent, StreamSession
from providers.protocol import TextDelta, ToolCallDelta

_encode = msgspec.json.Encoder().encode


def event_name(payload: StreamEvent) -> str:
    return tag_of(payload)


# A delta is the hot path: its constant parts are encoded once, from the Struct itself.
_DELTA_NAME: Final = b"\nevent: " + event_name(DeltaEvent(text="")).encode() + b"\ndata: "
_DELTA_JSON_HEAD: Final = _encode(DeltaEvent(text=""))[: -len(b'""}')]


def start_event(session: StreamSession, *, prompt_id: str | None = None) -> StartEvent:
    return StartEvent(
        stream_id=session.stream_id,
        model=session.request.model,
        provider=session.provider.name,
        created=int(time.time()),
        resumable=session.resumable,
        id=prompt_id,
    )


def done_event(session: StreamSession, completed: Completed, *, prompt_id: str | None = None) -> DoneEvent:
    return DoneEvent(
        finish_reason=completed.finish_reason,
        outcome=completed.outcome.value,
        usage=UsageInfo.of(completed.usage),
        timings=Timings(ttft_ms=session.ttft_ms, duration_ms=session.duration_ms),
        id=prompt_id,
    )


def tool_call_event(delta: ToolCallDelta, *, prompt_id: str | None = None) -> ToolCallEvent:
    return ToolCallEvent(
        index=delta.index, arguments=delta.arguments, call_id=delta.id, name=delta.name, id=prompt_id
    )


class NativeDialect:
    """Frames one session as the app-native event stream; ids count 1, 2, ... from `start`."""

    __slots__ = ("_sequence", "_session")

    def __init__(self, session: StreamSession) -> None:
        self._session = session
        self._sequence = 0

    def start(self) -> bytes:
        return self._event(start_event(self._session))

    def frame(self, event: SessionEvent) -> bytes | None:
        if isinstance(event, TextDelta):
            self._sequence += 1
            return b"id: %d%b%b%b}\n\n" % (self._sequence, _DELTA_NAME, _DELTA_JSON_HEAD, _encode(event.text))
        if isinstance(event, ToolCallDelta):
            return self._event(tool_call_event(event))
        if isinstance(event, Heartbeat):
            return sse.PING
        if isinstance(event, Completed):
            return self._event(done_event(self._session, event))
        if isinstance(event, Failed):
            return self._event(ErrorEvent(error=event.error.detail))
        return None

    def _event(self, payload: StreamEvent) -> bytes:
        self._sequence += 1
        return sse.event(_encode(payload), name=event_name(payload), event_id=str(self._sequence))
