"""The stream log: every event of a resumable stream, kept so that a client that lost its connection can
read the rest of the same answer instead of asking again.

An entry is one Server-Sent Event exactly as it was written (in the stream's own dialect, with its
`id: N` line); ids count 1, 2, … per stream, with no gap. The producer appends as it streams and closes the
log after the terminal event; readers `follow` it from any id: first what is logged after that id, then
each new event as it is appended, until the log is closed. A closed log stays readable for the retention
time, then disappears.

A stream belongs to the API key that started it (`owner`): `find` with another key answers like an
unknown id, as the cancel registry does.

Backends: `memory.py` (one process, the default) and `dynamodb.py` (`STREAM_TABLE`: shared by every
Lambda instance, so a resume served by another instance reads what this one produced).

Storage that fails never stops a stream: `open`, `append` and `close` log the failure and go on; `find`,
`active_for_chat` and `follow` raise `StreamLogUnavailable`, once, at the backend's edge.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class StreamLogUnavailable(Exception):
    """Raised when a log's storage cannot be read (a DynamoDB error), or lacks events its producer could
    not write: the stream cannot be served now, though it may exist."""


@dataclass(frozen=True, slots=True)
class LoggedStream:
    """What is known of a logged stream without reading its events."""

    stream_id: str
    owner: str | None
    # The wire dialect of its events (`stream`, `chat.completions`, `responses`, `ui-message-stream`):
    # a resume is framed in it, since its events are replayed as they were written.
    dialect: str
    # Whether the terminal event has been logged (nothing more will be appended).
    closed: bool
    # The AI SDK chat this stream answers (`/api/chat`), if any.
    chat_id: str | None = None


@runtime_checkable
class StreamLog(Protocol):
    """Where resumable streams' events are kept, and read again."""

    async def open(
        self, stream_id: str, *, owner: str | None, dialect: str, chat_id: str | None = None
    ) -> None:
        """Start the log of a new stream (before its first event is appended)."""
        ...

    async def append(self, stream_id: str, event_id: int, event: bytes) -> None:
        """Add the next event; `event_id` is the last one's plus one. A backend may batch the write, so
        the call does not wait for storage; `close` makes everything appended durable."""
        ...

    async def close(self, stream_id: str) -> None:
        """The terminal event has been appended: flush what is buffered and mark the log complete."""
        ...

    async def find(self, stream_id: str, owner: str | None) -> LoggedStream | None:
        """The stream, if its log exists, has not expired, and belongs to `owner`; else None."""
        ...

    async def active_for_chat(self, chat_id: str, owner: str | None) -> str | None:
        """The id of the stream still answering this chat (its log not closed), if there is one."""
        ...

    def follow(
        self, stream_id: str, after: int, *, until: float | None = None
    ) -> AsyncGenerator[bytes, None]:
        """The events after id `after`, then the new ones as they come, ending after the terminal event.

        `until` (on the `time.monotonic` clock) ends the iteration early, without the terminal event: a
        reader with a deadline of its own (a Lambda invocation) then tells its client to resume again.
        The stream must exist (`find` first).
        """
        ...
