"""The response that reads a resumable stream from its log: the request that started it, or a resume.

It writes each logged event as it comes, a `: ping` when the log stays quiet for a heartbeat interval,
and ends after the terminal event. A client that leaves, or stops reading for `send_timeout_s`, only
detaches it from the stream (`app.stream.resumable`). A host deadline (a Lambda invocation's) ends it
early, with a last event saying from which id to resume: a `resume` event on `/v1/stream`, a comment in
the other dialects, whose clients could not parse an event they do not know.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Final, cast

import msgspec
from litestar.response.base import ASGIResponse

from app.errors import stream_log_unavailable
from app.http.disconnect import wait_for_disconnect
from app.http.responses import EventStreamBase, event_stream_start
from app.logs import log_event
from app.stream.dialects import sse
from app.stream.limits import Deadline
from app.stream.log import StreamLog, StreamLogUnavailable
from app.stream.resumable import ResumableRun
from app.stream.trailers import ASGI_EXTENSION, outcome_trailers

if TYPE_CHECKING:
    from litestar.types import HTTPResponseStartEvent, Message, Receive, Scope, Send

# Ended this long before the host's deadline, so that the resume hint and the body's end still go out.
_DEADLINE_MARGIN_S: Final = 1.0
_NATIVE_DIALECT: Final = "stream"


class LogFollowResponse(EventStreamBase):
    """A `text/event-stream` response of a logged stream's events after id `after`."""

    def __init__(
        self,
        log: StreamLog,
        stream_id: str,
        *,
        dialect: str,
        after: int = 0,
        run: ResumableRun | None = None,
        heartbeat_s: float,
        send_timeout_s: float,
        deadline: Deadline | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(headers=headers)
        self._follow = _Follow(
            log,
            stream_id,
            dialect=dialect,
            after=after,
            run=run,
            heartbeat_s=heartbeat_s,
            send_timeout_s=send_timeout_s,
            until=None if deadline is None else deadline.at - _DEADLINE_MARGIN_S,
        )

    def asgi(self, raw_headers: list[tuple[bytes, bytes]]) -> ASGIResponse:
        self._follow.raw_headers = raw_headers
        return self._follow


class _Follow(ASGIResponse):
    def __init__(
        self,
        log: StreamLog,
        stream_id: str,
        *,
        dialect: str,
        after: int,
        run: ResumableRun | None,
        heartbeat_s: float,
        send_timeout_s: float,
        until: float | None,
    ) -> None:
        super().__init__()
        self._log = log
        self._stream_id = stream_id
        self._dialect = dialect
        self._after = after
        self._run = run
        self._heartbeat_s = heartbeat_s
        self._send_timeout_s = send_timeout_s
        self._until = until
        self.raw_headers: list[tuple[bytes, bytes]] = []
        # The id of the last event written, for the resume hint.
        self._last_id = after

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        trailers = ASGI_EXTENSION in (scope.get("extensions") or {})
        if self._run is not None:
            self._run.attach()
        writer = asyncio.create_task(self._write(send, trailers=trailers))
        listener = asyncio.create_task(wait_for_disconnect(receive))
        try:
            await asyncio.wait((writer, listener), return_when=asyncio.FIRST_COMPLETED)
        finally:
            try:
                for task in (listener, writer):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            finally:
                # Even when the writer failed (a send on a closed connection): else the grace never starts.
                if self._run is not None:
                    self._run.detach()

    async def _write(self, send: Send, *, trailers: bool) -> None:
        events = self._log.follow(self._stream_id, self._after, until=self._until)
        beats = _with_heartbeats(events, self._heartbeat_s)
        try:
            # The log's first read comes before the status: a log that cannot be read is still a 503.
            try:
                first: bytes | None = await anext(beats)
            except StopAsyncIteration:
                first = None
            except StreamLogUnavailable:
                await self._unavailable(send)
                return
            await send(event_stream_start(self.raw_headers, trailers=trailers))
            async for chunk in _starting_with(first, beats):
                # A client that stops reading only detaches: the stream goes on into the log.
                async with asyncio.timeout(self._send_timeout_s):
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if chunk is not sse.PING:
                    self._last_id += 1
        except TimeoutError:
            return
        except StreamLogUnavailable:
            # The headers are out: the body ends early, and the client resumes again from its last id.
            log_event("stream_log_unreadable", logging.WARNING, stream_id=self._stream_id)
            await send({"type": "http.response.body", "body": self._resume_hint(), "more_body": False})
            return
        finally:
            await beats.aclose()  # first: it may be waiting on the log reader
            await events.aclose()
        if self._until is not None and time.monotonic() >= self._until:
            await send({"type": "http.response.body", "body": self._resume_hint(), "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        if trailers:
            failed = self._run.stream.failed if self._run is not None else None
            headers = outcome_trailers(failed)
            await send(
                cast(
                    "Message", {"type": "http.response.trailers", "headers": headers, "more_trailers": False}
                )
            )

    async def _unavailable(self, send: Send) -> None:
        log_event("stream_log_unreadable", logging.WARNING, stream_id=self._stream_id)
        error = stream_log_unavailable()
        start = {
            "type": "http.response.start",
            "status": error.status_code,
            "headers": [(b"content-type", b"application/json")],
        }
        await send(cast("HTTPResponseStartEvent", start))
        await send(
            {"type": "http.response.body", "body": msgspec.json.encode(error.body()), "more_body": False}
        )

    def _resume_hint(self) -> bytes:
        if self._dialect == _NATIVE_DIALECT:
            hint = {"type": "resume", "stream_id": self._stream_id, "last_event_id": self._last_id}
            return sse.event(msgspec.json.encode(hint), name="resume")
        return b": resume from last_event_id=%d\n\n" % self._last_id


async def _starting_with(
    first: bytes | None, rest: AsyncGenerator[bytes, None]
) -> AsyncGenerator[bytes, None]:
    if first is None:
        return
    yield first
    async for chunk in rest:
        yield chunk


async def _with_heartbeats(
    events: AsyncGenerator[bytes, None], heartbeat_s: float
) -> AsyncGenerator[bytes, None]:
    """`events`, with `sse.PING` whenever none came for `heartbeat_s` (the next one is still awaited:
    an `anext` cancelled by a timeout would close the log reader mid-step)."""
    pending: asyncio.Task[bytes] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(events))
            done, _ = await asyncio.wait((pending,), timeout=heartbeat_s)
            if not done:
                yield sse.PING
                continue
            finished, pending = pending, None
            try:
                event = finished.result()
            except StopAsyncIteration:
                return
            yield event
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await pending
