"""`POST /api/chat`: the Vercel AI SDK's UI message stream, what `useChat()` reads.

SSE `data:` lines of JSON chunks, ending with `data: [DONE]`: `start` (the message id, and metadata with the
stream id), `start-step`, then the answer's parts, each opened and closed (`text-start`, `text-delta`...,
`text-end`; `tool-input-start`, `tool-input-delta`..., `tool-input-available`), then `finish-step` and
`finish` (its reason, and metadata with usage and timings).

How a stream ends that has no answer is what the AI SDK's own `streamText(...).toUIMessageStreamResponse()`
sends: a failure is `error` (its `errorText`), `finish-step` and `finish` with reason `error`; a cancel is
`abort`, which `useChat` takes as a stopped answer, not a failed one. `[DONE]` follows either, as it
follows every stream of the SDK's.
"""

from __future__ import annotations

import time
from typing import Final

import msgspec

from app.schemas import ErrorDetail, Timings, UsageInfo
from app.schemas_ui import (
    AbortChunk,
    EndMetadata,
    ErrorChunk,
    FinishChunk,
    FinishStepChunk,
    MessageMetadataChunk,
    StartChunk,
    StartMetadata,
    StartStepChunk,
    TextDeltaChunk,
    TextEndChunk,
    TextStartChunk,
    ToolInputAvailableChunk,
    ToolInputDeltaChunk,
    ToolInputErrorChunk,
    ToolInputStartChunk,
    UIFinishReason,
    UIMessageChunk,
)
from app.stream.dialects import sse
from app.stream.session import Completed, Failed, Heartbeat, Outcome, SessionEvent, StreamSession
from providers.protocol import FinishReason, TextDelta, ToolCallDelta

_encode = msgspec.json.Encoder().encode
# The AI SDK ends its streams with the same line as OpenAI's.
_DONE: Final = sse.OPENAI_DONE
_FINISH_REASONS: Final[dict[FinishReason, UIFinishReason]] = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content-filter",
    "tool_calls": "tool-calls",
}
_EMPTY_DELTA_TAIL: Final = b'""}'


def _chunk(chunk: UIMessageChunk) -> bytes:
    return sse.event(_encode(chunk))


_START_STEP: Final = _chunk(StartStepChunk())
_FINISH_STEP: Final = _chunk(FinishStepChunk())


class _Call:
    """A tool call being streamed: its id, its name, its arguments so far."""

    __slots__ = ("arguments", "call_id", "name")

    def __init__(self, call_id: str, name: str) -> None:
        self.call_id = call_id
        self.name = name
        self.arguments: list[str] = []

    def end(self) -> UIMessageChunk:
        """`tool-input-available` with the arguments parsed, or `tool-input-error` when they are not JSON."""
        text = "".join(self.arguments)
        try:
            parsed = msgspec.json.decode(text)
        except msgspec.DecodeError as exc:
            return ToolInputErrorChunk(
                tool_call_id=self.call_id,
                tool_name=self.name,
                input=text,
                error_text=f"the tool call's arguments are not valid JSON: {exc}",
            )
        return ToolInputAvailableChunk(tool_call_id=self.call_id, tool_name=self.name, input=parsed)


class UIMessageStreamDialect:
    """Frames one session as one assistant `UIMessage`, of id `message_id`, built part by part.

    A text part is open from its first delta until a tool call or the end; tool calls are complete (their
    input parsed) when text follows them or the answer ends.
    """

    __slots__ = ("_calls", "_message_id", "_parts", "_session", "_text_head")

    def __init__(self, session: StreamSession, *, message_id: str) -> None:
        self._session = session
        self._message_id = message_id
        self._parts = 0
        # The open text part's `text-delta` line up to its text, encoded once per part (the hot path); or
        # empty when no text part is open.
        self._text_head = b""
        self._calls: dict[int, _Call] = {}

    def start(self) -> bytes:
        session = self._session
        metadata = StartMetadata(
            stream_id=session.stream_id,
            model=session.request.model,
            provider=session.provider.name,
            created=int(time.time()),
        )
        return _chunk(StartChunk(message_id=self._message_id, message_metadata=metadata)) + _START_STEP

    def frame(self, event: SessionEvent) -> bytes | None:
        if isinstance(event, TextDelta):
            opened = b"" if self._text_head else self._end_calls() + self._open_text()
            return opened + self._text_head + _encode(event.text) + b"}\n\n"
        if isinstance(event, ToolCallDelta):
            return self._end_text() + self._call_piece(event)
        if isinstance(event, Heartbeat):
            return sse.PING
        if isinstance(event, Completed):
            metadata = self._end_metadata(event.outcome, UsageInfo.of(event.usage))
            finish = FinishChunk(
                finish_reason=_FINISH_REASONS[event.finish_reason], message_metadata=metadata
            )
            return self._end_text() + self._end_calls() + _FINISH_STEP + _chunk(finish) + _DONE
        if isinstance(event, Failed):
            detail = event.error.detail
            metadata = self._end_metadata(event.outcome, None, error=detail)
            if event.outcome is Outcome.CANCELLED:
                # An `abort` cannot carry metadata: the SDK's own `message-metadata` chunk does.
                metadata_chunk = MessageMetadataChunk(message_metadata=metadata)
                return _chunk(metadata_chunk) + _chunk(AbortChunk(reason=detail.message)) + _DONE
            ended = FinishChunk(finish_reason="error", message_metadata=metadata)
            return _chunk(ErrorChunk(error_text=detail.message)) + _FINISH_STEP + _chunk(ended) + _DONE
        # A `Finish` before the last comes only with `n > 1`, which this endpoint refuses.
        return None

    def _open_text(self) -> bytes:
        self._parts += 1
        part_id = f"text-{self._parts}"
        delta = sse.event(_encode(TextDeltaChunk(id=part_id, delta="")))
        self._text_head = delta[: -len(_EMPTY_DELTA_TAIL) - 2]
        return _chunk(TextStartChunk(id=part_id))

    def _end_text(self) -> bytes:
        if not self._text_head:
            return b""
        self._text_head = b""
        return _chunk(TextEndChunk(id=f"text-{self._parts}"))

    def _call_piece(self, delta: ToolCallDelta) -> bytes:
        """Every piece of a call is one `tool-input-delta` (its first piece opens the call before it)."""
        opened = b""
        call = self._calls.get(delta.index)
        if call is None:
            call = _Call(delta.id or f"call_{delta.index}", delta.name or "")
            self._calls[delta.index] = call
            opened = _chunk(ToolInputStartChunk(tool_call_id=call.call_id, tool_name=call.name))
        call.arguments.append(delta.arguments)
        piece = ToolInputDeltaChunk(tool_call_id=call.call_id, input_text_delta=delta.arguments)
        return opened + _chunk(piece)

    def _end_calls(self) -> bytes:
        if not self._calls:
            return b""
        ended = b"".join(_chunk(call.end()) for call in self._calls.values())
        self._calls.clear()
        return ended

    def _end_metadata(
        self, outcome: Outcome, usage: UsageInfo | None, *, error: ErrorDetail | None = None
    ) -> EndMetadata:
        session = self._session
        return EndMetadata(
            outcome=outcome.value,
            usage=usage,
            timings=Timings(ttft_ms=session.ttft_ms, duration_ms=session.duration_ms),
            error=error,
        )
