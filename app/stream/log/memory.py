"""The stream log in this process's memory: resume works for clients of this process (`make run`, one
uvicorn worker). Several workers or Lambda instances need the shared DynamoDB log (`dynamodb.py`)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator

from app.stream.log import LoggedStream


class _Entry:
    __slots__ = ("changed", "chat_id", "closed_at", "dialect", "events", "owner")

    def __init__(self, owner: str | None, dialect: str, chat_id: str | None) -> None:
        self.owner = owner
        self.dialect = dialect
        self.chat_id = chat_id
        self.events: list[bytes] = []
        self.closed_at: float | None = None
        # Set, then replaced, on every change: each waiting reader wakes once per change.
        self.changed = asyncio.Event()

    def touch(self) -> None:
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()


class InMemoryStreamLog:
    """A `StreamLog` in a dict; closed logs are dropped `retention_s` after their end."""

    def __init__(self, *, retention_s: float = 300.0) -> None:
        self._retention_s = retention_s
        self._entries: dict[str, _Entry] = {}

    async def open(
        self, stream_id: str, *, owner: str | None, dialect: str, chat_id: str | None = None
    ) -> None:
        self._expire()
        self._entries[stream_id] = _Entry(owner, dialect, chat_id)

    async def append(self, stream_id: str, event_id: int, event: bytes) -> None:
        entry = self._entries[stream_id]
        if event_id != len(entry.events) + 1:
            raise ValueError(f"event {event_id} of {stream_id} does not follow event {len(entry.events)}")
        entry.events.append(event)
        entry.touch()

    async def close(self, stream_id: str) -> None:
        entry = self._entries[stream_id]
        entry.closed_at = time.monotonic()
        entry.touch()

    def __contains__(self, stream_id: object) -> bool:
        """Whether the stream's log is here (open, or closed and not yet expired), whoever owns it."""
        self._expire()
        return stream_id in self._entries

    async def find(self, stream_id: str, owner: str | None) -> LoggedStream | None:
        self._expire()
        entry = self._entries.get(stream_id)
        if entry is None or entry.owner != owner:
            return None
        return LoggedStream(
            stream_id=stream_id,
            owner=entry.owner,
            dialect=entry.dialect,
            closed=entry.closed_at is not None,
            chat_id=entry.chat_id,
        )

    async def active_for_chat(self, chat_id: str, owner: str | None) -> str | None:
        # The newest first: a chat has at most one stream still open, the one its last request started.
        for stream_id, entry in reversed(self._entries.items()):
            if entry.chat_id == chat_id and entry.owner == owner and entry.closed_at is None:
                return stream_id
        return None

    async def follow(
        self, stream_id: str, after: int, *, until: float | None = None
    ) -> AsyncGenerator[bytes, None]:
        entry = self._entries[stream_id]
        position = max(0, after)
        while True:
            while position < len(entry.events):
                yield entry.events[position]
                position += 1
            if entry.closed_at is not None:
                return
            changed = entry.changed
            timeout_s = None if until is None else until - time.monotonic()
            if timeout_s is not None and timeout_s <= 0:
                return
            # A timeout is not the end: uvloop's timers keep libuv's millisecond clock and may fire a little
            # before `time.monotonic()` reaches `until`; the check above ends the iteration by that clock,
            # which is the one the caller compares with (to send its resume hint).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout_s)

    def _expire(self) -> None:
        oldest = time.monotonic() - self._retention_s
        expired = [
            sid for sid, e in self._entries.items() if e.closed_at is not None and e.closed_at < oldest
        ]
        for stream_id in expired:
            del self._entries[stream_id]
