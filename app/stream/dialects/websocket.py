"""`WS /v1/ws`: the app-native event Structs as JSON text messages, each carrying its prompt's `id`.

Heartbeats are not relayed: the WebSocket server pings the client on its own. A resumable prompt is
produced as `/v1/stream` events into the stream log (`app.stream.resumable`); its socket reads them back
with `logged_message`, which adds the prompt's `id` and the log's `event_id` to resume from.
"""

from __future__ import annotations

from typing import Final

import msgspec

from app.schemas import DeltaEvent, ErrorEvent, StreamEvent
from app.stream.dialects.native import done_event, start_event, tool_call_event
from app.stream.session import Completed, Failed, SessionEvent, StreamSession
from providers.protocol import TextDelta, ToolCallDelta

_encode = msgspec.json.Encoder().encode
_decode_event = msgspec.json.Decoder(StreamEvent).decode
_ID_LINE: Final = b"id: "
_DATA_LINE: Final = b"\ndata: "


def message(event: StreamEvent) -> str:
    """One server message."""
    return _encode(event).decode()


def logged_message(event: bytes, *, prompt_id: str) -> tuple[StreamEvent, str]:
    """A `/v1/stream` event from the stream log (`id: N`, `event:`, one `data:` line of JSON, as
    `NativeDialect` wrote it) as the message for the prompt `prompt_id`, carrying `event_id: N`."""
    if not event.startswith(_ID_LINE):
        raise ValueError("a logged event starts with its id line")
    event_id = int(event[len(_ID_LINE) : event.index(b"\n")])
    data = event[event.index(_DATA_LINE) + len(_DATA_LINE) :].rstrip(b"\n")
    payload = msgspec.structs.replace(_decode_event(data), id=prompt_id, event_id=event_id)
    return payload, message(payload)


class WebSocketDialect:
    """Frames one prompt's session for the socket it came on."""

    __slots__ = ("_prompt_id", "_session")

    def __init__(self, session: StreamSession, *, prompt_id: str) -> None:
        self._session = session
        self._prompt_id = prompt_id

    def start(self) -> str:
        return message(start_event(self._session, prompt_id=self._prompt_id))

    def frame(self, event: SessionEvent) -> str | None:
        if isinstance(event, TextDelta):
            return message(DeltaEvent(text=event.text, id=self._prompt_id))
        if isinstance(event, ToolCallDelta):
            return message(tool_call_event(event, prompt_id=self._prompt_id))
        if isinstance(event, Completed):
            return message(done_event(self._session, event, prompt_id=self._prompt_id))
        if isinstance(event, Failed):
            return message(ErrorEvent(error=event.error.detail, id=self._prompt_id))
        return None
