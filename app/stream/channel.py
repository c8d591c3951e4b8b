"""The buffer between a provider's task and its session: the hot path of every token."""

from __future__ import annotations

import asyncio
from collections import deque


class Channel:
    """A bounded single-producer, single-consumer buffer from the provider task to the session.

    Tokens are the hot path: `asyncio.Queue` with an `asyncio.timeout` around each wait cost a timer
    handle, a future and a context manager per token. Here a side only makes a future when it must wait,
    and the session's timers live in one lazily re-armed alarm instead of one timer per wait.
    The session reads `items` directly: a method call per token is measurable here.
    """

    __slots__ = ("_getter", "_limit", "_putter", "items", "rang")

    def __init__(self, limit: int) -> None:
        self.items: deque[object] = deque()
        self._limit = limit
        self._getter: asyncio.Future[None] | None = None
        self._putter: asyncio.Future[None] | None = None
        # Set by the session's alarm when it fires: some timer may be due.
        self.rang = False

    def pop(self) -> object:
        item = self.items.popleft()
        if self._putter is not None:
            self._putter.set_result(None)
            self._putter = None
        return item

    def offer(self, item: object) -> bool:
        """Add an item unless the buffer is full; no coroutine, so no allocation beyond the item."""
        if len(self.items) >= self._limit:
            return False
        self.items.append(item)
        getter = self._getter
        if getter is not None:
            self._getter = None
            if not getter.done():  # cancelled with the session
                getter.set_result(None)
        return True

    async def put(self, item: object) -> None:
        while not self.offer(item):
            self._putter = putter = asyncio.get_running_loop().create_future()
            try:
                await putter
            finally:
                self._putter = None

    def wait(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        """A future done when an item arrives or the alarm rings."""
        self._getter = getter = loop.create_future()
        return getter

    def ring(self) -> None:
        self.rang = True
        getter = self._getter
        if getter is not None:
            self._getter = None
            if not getter.done():
                getter.set_result(None)
