"""Cancels for the streams of this process (a local server, a container)."""

from __future__ import annotations


class InMemoryCancelRegistry:
    """Cancels for streams served by this process (local server, containers)."""

    def __init__(self) -> None:
        self._live: dict[str, str | None] = {}  # stream id -> owner
        self._cancelled: set[str] = set()

    @property
    def poll_interval_s(self) -> float:
        return 0.1

    async def register(self, stream_id: str, owner: str | None = None) -> None:
        self._live[stream_id] = owner

    async def request_cancel(self, stream_id: str, owner: str | None = None) -> bool:
        if stream_id not in self._live or self._live[stream_id] != owner:
            return False
        self._cancelled.add(stream_id)
        return True

    async def is_cancelled(self, stream_id: str) -> bool:
        return stream_id in self._cancelled

    async def release(self, stream_id: str) -> None:
        self._live.pop(stream_id, None)
        self._cancelled.discard(stream_id)

    def is_live(self, stream_id: str) -> bool:
        return stream_id in self._live

    @property
    def live_streams(self) -> int:
        return len(self._live)
