"""Resumable streams: the generation writes into the stream log, and every client reads the log.

A plain stream is its response: the client leaving ends it. A resumable one is produced by a task of its
own (`ResumableRun`), which frames the session in its dialect and appends every Server-Sent Event to the
log with an `id:` line (1, 2, … with no gap); the request that started it, and any later resume, are
readers of that log (`app.http.follow`). So a reader leaving only detaches: the run goes on, and when no
reader is attached for `RESUME_GRACE_S` it stops the session itself, which ends with its own terminal
event (outcome `abandoned`), so a late resume still reads a complete stream.

On Lambda the function never learns that its client left: the invocation runs the stream to its end,
writing the log to DynamoDB, and a resume on any instance reads it there.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Final

from app.errors import ABANDONED
from app.stream.consumer import OpenStream, frames
from app.stream.dialects import Dialect
from app.stream.log import StreamLog
from app.stream.session import Outcome

_EVENT_END: Final = b"\n\n"
_ID_PREFIX: Final = b"id: "


def sse_events(frame: bytes) -> Iterator[bytes]:
    """The events of a frame a dialect wrote (it may hold several), each with its blank line; comments
    (heartbeats) are left out, since they carry nothing a resumed client needs."""
    start = 0
    while start < len(frame):
        end = frame.index(_EVENT_END, start) + len(_EVENT_END)
        event = frame[start:end]
        start = end
        if not event.startswith(b":"):
            yield event


def with_id(event: bytes, event_id: int) -> bytes:
    """The event with `id: <event_id>` as its first line (replacing an id the dialect gave it: the app's
    native events are numbered the same way already, so their ids do not change)."""
    if event.startswith(_ID_PREFIX):
        event = event[event.index(b"\n") + 1 :]
    return b"id: %d\n%b" % (event_id, event)


class ResumableRun:
    """The producer of one resumable stream, and the count of readers attached to it in this process."""

    def __init__(
        self, stream: OpenStream, dialect: Dialect[bytes], log: StreamLog, *, grace_s: float
    ) -> None:
        self.stream = stream
        self.stream_id = stream.session.stream_id
        self._dialect = dialect
        self._log = log
        self._grace_s = grace_s
        self._readers = 0
        self._grace: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
        # How many events are logged: a reader that attaches now has these to read first.
        self.logged = 0

    @property
    def done(self) -> bool:
        return self._task is not None and self._task.done()

    async def start(self, *, owner: str | None, dialect: str, chat_id: str | None = None) -> None:
        """Open the log and start producing into it; the caller attaches its reader next."""
        await self._log.open(self.stream_id, owner=owner, dialect=dialect, chat_id=chat_id)
        self._task = asyncio.create_task(self._produce(), name=f"resumable-{self.stream_id}")

    def when_done(self, callback: Callable[[], object]) -> None:
        assert self._task is not None, "start() first"
        self._task.add_done_callback(lambda _: callback())

    async def wait(self) -> None:
        """Until the terminal event is logged (or production failed)."""
        assert self._task is not None
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(self._task)

    def attach(self) -> None:
        self._readers += 1
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None

    def detach(self) -> None:
        self._readers -= 1
        if self._readers == 0 and not self.done:
            self._grace = asyncio.create_task(self._abandon_after_grace(), name=f"grace-{self.stream_id}")

    async def stop(self) -> None:
        """End the run now (server shutdown): the session ends and the log is closed."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _abandon_after_grace(self) -> None:
        await asyncio.sleep(self._grace_s)
        if self._readers == 0:
            self.stream.session.request_stop(
                ABANDONED(f"no client read the stream for {self._grace_s:g}s after its client left"),
                Outcome.ABANDONED,
            )

    async def _produce(self) -> None:
        log, stream_id = self._log, self.stream_id
        try:
            async for frame in frames(self.stream, self._dialect):
                for event in sse_events(frame):
                    self.logged += 1
                    await log.append(stream_id, self.logged, with_id(event, self.logged))
        finally:
            if self._grace is not None:
                self._grace.cancel()
            await log.close(stream_id)


class RunRegistry:
    """The resumable runs of this process, so that a resume served here attaches to its run."""

    def __init__(self) -> None:
        self._runs: dict[str, ResumableRun] = {}

    def add(self, run: ResumableRun) -> None:
        """Keep a started run until it ends."""
        self._runs[run.stream_id] = run
        run.when_done(lambda: self._runs.pop(run.stream_id, None))

    def get(self, stream_id: str) -> ResumableRun | None:
        return self._runs.get(stream_id)

    async def stop_all(self) -> None:
        for run in list(self._runs.values()):
            await run.stop()
