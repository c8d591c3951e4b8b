"""Session events to bytes, for each stream flavour: app-native SSE events and OpenAI chunks.

These are pure translations; ordering, budgets and errors were decided by the session.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator

import msgspec

from app import sse
from app.schemas import (
    ChatCompletionChunk,
    ChunkChoice,
    ChunkDelta,
    DeltaEvent,
    DoneEvent,
    ErrorBody,
    ErrorEvent,
    StartEvent,
    Timings,
    UsageInfo,
)
from app.streaming import Completed, Failed, Heartbeat, SessionEvent, StreamSession
from providers.protocol import TextDelta, Usage

_encode = msgspec.json.Encoder().encode


def usage_info(usage: Usage | None) -> UsageInfo | None:
    """OpenAI's usage object for provider usage, if the provider reported any."""
    if usage is None:
        return None
    return UsageInfo(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
    )


def start_event(session: StreamSession) -> StartEvent:
    return StartEvent(
        stream_id=session.stream_id,
        model=session.request.model,
        provider=session.provider.name,
        created=int(time.time()),
    )


def done_event(session: StreamSession, completed: Completed) -> DoneEvent:
    return DoneEvent(
        finish_reason=completed.finish_reason,
        outcome=completed.outcome.value,
        usage=usage_info(completed.usage),
        timings=Timings(ttft_ms=session.ttft_ms, duration_ms=session.duration_ms),
    )


async def native_stream(
    session: StreamSession, first: SessionEvent, rest: AsyncGenerator[SessionEvent, None]
) -> AsyncGenerator[bytes, None]:
    """`/v1/stream`: named events `start`, `delta`..., then `done` or `error`; every event has an id.

    The frames own `rest`: however they end (finished, failed, or closed by a departing client), the
    session is closed before they are.
    """
    sequence = 0

    def frame(name: str, payload: msgspec.Struct) -> bytes:
        nonlocal sequence
        sequence += 1
        return sse.event(_encode(payload), name=name, event_id=str(sequence))

    try:
        yield frame("start", start_event(session))
        event: SessionEvent | None = first
        while event is not None:
            if isinstance(event, TextDelta):
                yield frame("delta", DeltaEvent(text=event.text))
            elif isinstance(event, Heartbeat):
                yield sse.HEARTBEAT
            elif isinstance(event, Completed):
                yield frame("done", done_event(session, event))
                return
            elif isinstance(event, Failed):
                yield frame("error", ErrorEvent(error=event.error.detail))
                return
            event = await anext(rest, None)
    finally:
        # Ends the session (provider task, `stream_end` log) now, not whenever the GC finalises it.
        await rest.aclose()


async def openai_stream(
    session: StreamSession,
    first: SessionEvent,
    rest: AsyncGenerator[SessionEvent, None],
    *,
    completion_id: str,
    include_usage: bool,
) -> AsyncGenerator[bytes, None]:
    """`/v1/chat/completions` with `stream: true`: `chat.completion.chunk` objects, then `[DONE]`.

    A failure after the first chunk is sent as `data: {"error": {...}}`, which the openai SDK raises as
    `APIError`; the stream then ends without `[DONE]`, as OpenAI's own does.
    """
    created = int(time.time())
    model = session.request.model

    def chunk(delta: ChunkDelta, finish_reason: str | None = None) -> bytes:
        body = ChatCompletionChunk(
            id=completion_id,
            created=created,
            model=model,
            choices=[ChunkChoice(index=0, delta=delta, finish_reason=finish_reason)],
        )
        return sse.event(_encode(body))

    try:
        yield chunk(ChunkDelta(role="assistant", content=""))
        event: SessionEvent | None = first
        while event is not None:
            if isinstance(event, TextDelta):
                yield chunk(ChunkDelta(content=event.text))
            elif isinstance(event, Heartbeat):
                yield sse.HEARTBEAT
            elif isinstance(event, Completed):
                yield chunk(ChunkDelta(), event.finish_reason)
                usage = usage_info(event.usage)
                if include_usage and usage is not None:
                    yield sse.event(
                        _encode(
                            ChatCompletionChunk(
                                id=completion_id, created=created, model=model, choices=[], usage=usage
                            )
                        )
                    )
                yield sse.OPENAI_DONE
                return
            elif isinstance(event, Failed):
                yield sse.event(_encode(ErrorBody(error=event.error.detail)))
                return
            event = await anext(rest, None)
    finally:
        await rest.aclose()
