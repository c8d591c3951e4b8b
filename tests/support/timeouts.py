"""Run async test bodies with a hard timeout, so a hanging stream fails fast instead of stalling CI."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def run_async(body: Callable[[], Awaitable[T]], *, timeout_s: float = 20.0) -> T:
    """Run `body()` on a fresh event loop, failing with TimeoutError after `timeout_s`."""

    async def guarded() -> T:
        async with asyncio.timeout(timeout_s):
            return await body()

    return asyncio.run(guarded())
