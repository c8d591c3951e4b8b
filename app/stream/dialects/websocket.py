"""`WS /v1/ws`: the app-native event Structs as JSON text messages, each carrying its prompt's `id`.

Heartbeats are not relayed: the WebSocket server pings the client on its own.
"""

from __future__ import annotations

import msgspec

from app.schemas import DeltaEvent, ErrorEvent, StreamEvent
from app.stream.dialects.native import done_event, start_event, tool_call_event
from app.stream.session import Completed, Failed, SessionEvent, StreamSession
from providers.protocol import TextDelta, ToolCallDelta

_encode = msgspec.json.Encoder().encode


def message(event: StreamEvent) -> str:
    """One server message."""
    return _encode(event).decode()


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
