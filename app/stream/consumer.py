"""The one shape every endpoint consumes a session in: open it, then drive a dialect with one loop.

`open_stream` waits for the session's first event. A failure there (bad upstream key, rate limit,
upstream down) is raised as its `ApiError`, so every host turns it into an HTTP status (or, on a
WebSocket, an error message) the same way; once it returns, the stream has begun, and `frames` yields a
dialect's frames for it until its terminal event, closing the session however it ends.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Final, TypeVar

from app.errors import internal_error
from app.logs import log_event
from app.stream.dialects import Dialect
from app.stream.session import Completed, Failed, Outcome, SessionEvent, StreamSession
from providers.protocol import TextDelta

FrameT = TypeVar("FrameT")
_TERMINAL: Final = (Completed, Failed)


@dataclass(slots=True)
class OpenStream:
    """A session whose first event is known and is not a failure."""

    session: StreamSession
    first: SessionEvent
    rest: AsyncGenerator[SessionEvent, None]
    # The failure the stream ended with, once `frames` has framed it: what a host may report beside the
    # stream (Lambda's error trailers).
    failed: Failed | None = None

    async def aclose(self) -> None:
        """End the session (provider task, `stream_end` log) now, not whenever the GC finalises it."""
        await self.rest.aclose()


async def open_stream(session: StreamSession) -> OpenStream:
    """Start the generation and read ahead to its first event; raise a failure that comes first."""
    events = session.events()
    first = await anext(events)
    if isinstance(first, Failed):
        await events.aclose()
        raise first.error
    return OpenStream(session, first, events)


async def frames(
    stream: OpenStream, dialect: Dialect[FrameT], *, join: Callable[[list[FrameT]], FrameT] | None = None
) -> AsyncGenerator[FrameT, None]:
    """Every frame of the stream in `dialect`; the session ends after its terminal event is framed.

    With `join`, the frames of events that are already queued when one is framed come out with it, joined
    into one (a writer then makes one write, one system call, for them): only what is already there is
    taken, so no frame ever waits for a later one, and an event that arrives alone comes out alone, at once.

    Should the app itself fail once frames are out (a bug here or in a dialect), the stream still ends
    with the dialect's `error` frame, an internal error, under every host.
    """
    frame = dialect.frame
    event = stream.first
    session = stream.session
    started = False
    # Frames held for `join` while more events are queued; never held across a wait.
    held: list[FrameT] = []
    try:
        head = dialect.start()
        if head is not None:
            started = True
            yield head
        framed = frame(event)
        if framed is not None:
            started = True
            yield framed
        if not isinstance(event, _TERMINAL):
            async for event in stream.rest:
                framed = frame(event)
                # Nothing is framed after the terminal event; a delta (the hot path) is never one.
                last = event.__class__ is not TextDelta and isinstance(event, _TERMINAL)
                if framed is not None:
                    started = True
                    if held or (join is not None and not last and session.has_queued):
                        held.append(framed)
                    else:
                        yield framed  # the common case: nothing queued behind it, nothing held
                if held and (last or not session.has_queued):
                    batch, held = held, []
                    yield _joined(batch, join)
                if last:
                    break
    except Exception as exc:
        if not started:
            raise  # nothing is out yet: the host answers with a status
        log_event("stream_crashed", logging.ERROR, request_id=session.stream_id, exc_type=type(exc).__name__)
        if held:  # frames already made go out before the error
            yield _joined(held, join)
        event = Failed(internal_error(), Outcome.ERROR)
        framed = frame(event)
        if framed is not None:
            yield framed
    finally:
        if isinstance(event, Failed):
            stream.failed = event
        await stream.aclose()


def _joined(held: list[FrameT], join: Callable[[list[FrameT]], FrameT] | None) -> FrameT:
    """Held frames as one: a single one as it is, several joined (frames are only held with `join`)."""
    if join is None or len(held) == 1:
        return held[0]
    return join(held)


async def collect(stream: OpenStream, dialect: Dialect[FrameT]) -> FrameT:
    """The single frame of a dialect that answers in one piece (a non-streamed completion)."""
    generator = frames(stream, dialect)
    try:
        async for framed in generator:
            return framed
    finally:
        await generator.aclose()
    raise RuntimeError("the dialect produced no frame")
