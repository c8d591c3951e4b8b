"""Explicit stream cancellation: the only way a client can stop work where disconnects are not delivered.

On Lambda a client that walks away is never reported to the function, so `POST /v1/streams/{id}/cancel`
marks the stream in a registry that the stream polls between chunks. Locally the registry is in memory
(`memory.py`); on AWS it is a DynamoDB table (`dynamodb.py`), since the cancel request may reach another
instance than the one streaming.

A stream belongs to the API key that started it (`owner`, a digest of the key, None without keys): a cancel
with another key is refused exactly like one for an unknown id, so it tells nothing about other streams.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class CancelRegistry(Protocol):
    """Where cancel requests are recorded and streams look for them."""

    @property
    def poll_interval_s(self) -> float:
        """How often a stream asks `is_cancelled`, between chunks and while the provider is silent."""
        ...

    async def register(self, stream_id: str, owner: str | None = None) -> None:
        """Record that a stream is live, so that a cancel for it can be told apart from a typo."""
        ...

    async def request_cancel(self, stream_id: str, owner: str | None = None) -> bool:
        """Ask a live stream to stop; False when no such stream is known to this owner."""
        ...

    async def is_cancelled(self, stream_id: str) -> bool:
        """Whether a cancel was requested for this stream."""
        ...

    async def release(self, stream_id: str) -> None:
        """Forget a stream that has ended."""
        ...

    def is_live(self, stream_id: str) -> bool:
        """Whether this process has registered the stream and not released it yet."""
        ...
