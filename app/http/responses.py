"""The event-stream response: one session's frames written as they come, under any ASGI host.

It cancels its producer when the client goes away and always closes it: Litestar's own `Stream` stops
iterating on disconnect but leaves the async generator to the garbage collector; here the session is
closed explicitly, so the provider's upstream request ends at once and the stream's single `stream_end`
log line is written before the response returns.

A host that advertises the ASGI `http.response.trailers` extension (the Lambda streaming runtime) also
gets the stream's outcome as trailers after the body (`app/stream/trailers.py`), so it can report a
failure beside the in-band `error` event; no other host is sent any.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final, cast

from litestar import Response
from litestar.response.base import ASGIResponse

from app.http.disconnect import wait_for_disconnect
from app.stream.consumer import OpenStream, frames
from app.stream.dialects import Dialect
from app.stream.dialects.sse import EVENT_STREAM_HEADERS
from app.stream.session import Outcome
from app.stream.trailers import ASGI_EXTENSION, outcome_trailers

# After its deadline the session ends the stream itself; this is how long it gets to, before the writer
# is stopped from outside (it can only be stuck in a write to a client that does not read).
_DEADLINE_GRACE_S: Final = 1.0

if TYPE_CHECKING:
    from litestar.app import Litestar
    from litestar.background_tasks import BackgroundTask, BackgroundTasks
    from litestar.connection import Request
    from litestar.datastructures import Cookie
    from litestar.types import HTTPResponseStartEvent, Message, Receive, Scope, Send, TypeEncodersMap


class EventStreamBase(Response[None]):
    """A `text/event-stream` response written by an ASGI callable of its own (`asgi`), which gets the
    headers Litestar would have sent, already encoded."""

    def __init__(self, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(content=None, headers={**EVENT_STREAM_HEADERS, **(headers or {})})

    def asgi(self, raw_headers: list[tuple[bytes, bytes]]) -> ASGIResponse:
        raise NotImplementedError

    def to_asgi_response(
        self,
        app: Litestar | None,
        request: Request[Any, Any, Any],
        *,
        background: BackgroundTask | BackgroundTasks | None = None,
        cookies: Iterable[Cookie] | None = None,
        encoded_headers: Iterable[tuple[bytes, bytes]] | None = None,
        headers: dict[str, str] | None = None,
        is_head_response: bool = False,
        media_type: Any = None,
        status_code: int | None = None,
        type_encoders: TypeEncodersMap | None = None,
    ) -> ASGIResponse:
        merged = {**(headers or {}), **self.headers}
        raw_headers = [
            (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in merged.items()
        ]
        raw_headers.extend(encoded_headers or ())
        return self.asgi(raw_headers)


def event_stream_start(headers: list[tuple[bytes, bytes]], *, trailers: bool) -> HTTPResponseStartEvent:
    """The 200 that opens an event stream, announcing trailers to a host that takes them."""
    # Litestar's ASGI types predate the trailers extension: the message is cast.
    start = {"type": "http.response.start", "status": 200, "headers": headers, "trailers": trailers}
    return cast("HTTPResponseStartEvent", start)


class EventStreamResponse(EventStreamBase):
    """A `text/event-stream` response framing one open stream in one dialect."""

    def __init__(
        self, stream: OpenStream, dialect: Dialect[bytes], *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(headers=headers)
        self.stream = stream
        self.dialect = dialect

    def asgi(self, raw_headers: list[tuple[bytes, bytes]]) -> ASGIResponse:
        return _EventStreamASGI(self.stream, self.dialect, raw_headers)


class _EventStreamASGI(ASGIResponse):
    __slots__ = ("_dialect", "_raw_headers", "_stream", "_writes", "_writing")

    def __init__(
        self, stream: OpenStream, dialect: Dialect[bytes], headers: list[tuple[bytes, bytes]]
    ) -> None:
        super().__init__()
        self._stream = stream
        self._dialect = dialect
        self._raw_headers = headers
        # The writer's progress, for the supervisor: completed writes, and whether one is under way.
        self._writes = 0
        self._writing = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        trailers = ASGI_EXTENSION in (scope.get("extensions") or {})
        writer = asyncio.create_task(self._write(send, trailers=trailers))
        listener = asyncio.create_task(wait_for_disconnect(receive))
        try:
            await self._supervise(writer, listener)
        finally:
            listener.cancel()
            if not writer.done():
                writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def _supervise(self, writer: asyncio.Task[None], listener: asyncio.Task[None]) -> None:
        """Wait for the writer to finish or the client to leave; stop a stream whose client stops reading.

        The session enforces its budgets only while it is asked for events. A client that stops reading
        (but stays connected) blocks the writer in `send` once the socket buffers are full, and with it
        the session: so the deadline is also enforced here, and a single write that waits longer than
        `send_timeout_s` drops the stream (outcome `stalled`).
        """
        session = self._stream.session
        send_timeout_s = session.limits.send_timeout_s
        # The stream is open, so its session has started and knows its deadline.
        stop_at = None if session.deadline_at is None else session.deadline_at + _DEADLINE_GRACE_S
        previous = (-1, False)
        while True:
            timeout_s = send_timeout_s if stop_at is None else min(send_timeout_s, stop_at - time.monotonic())
            done, _ = await asyncio.wait(
                (writer, listener), timeout=max(0.0, timeout_s), return_when=asyncio.FIRST_COMPLETED
            )
            if done:
                return
            if stop_at is not None and time.monotonic() >= stop_at:
                session.stopping_as(Outcome.DEADLINE)
                return
            progress = (self._writes, self._writing)
            if self._writing and progress == previous:  # the same write, under way for a whole window
                session.stopping_as(Outcome.STALLED)
                return
            previous = progress

    async def _write(self, send: Send, *, trailers: bool) -> None:
        # Events already queued share a write (one system call for them all); none waits for another.
        body = frames(self._stream, self._dialect, join=b"".join)
        try:
            await send(event_stream_start(self._raw_headers, trailers=trailers))
            async for chunk in body:
                self._writing = True
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                self._writing = False
                self._writes += 1
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await body.aclose()
        if trailers:
            headers = outcome_trailers(self._stream.failed)
            await send(
                cast(
                    "Message", {"type": "http.response.trailers", "headers": headers, "more_trailers": False}
                )
            )
