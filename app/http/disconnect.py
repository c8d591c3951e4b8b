"""Work done before a response starts, abandoned as soon as its client goes away.

Until the first byte the handler itself is waiting (for the model's first token, or for a whole
non-streamed completion), and nothing listens to the connection: a client that leaves would be noticed
only when its answer was ready. `unless_gone` races that wait against the ASGI `http.disconnect`, so the
session is closed, and the upstream request with it, the moment the client hangs up.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, TypeVar

from litestar.types import Receive

T = TypeVar("T")


class ClientGoneError(Exception):
    """Raised when the client disconnected before its response started; nobody is left to answer."""


async def wait_for_disconnect(receive: Receive) -> None:
    """Return when the client has gone (request body messages, if any are left, are skipped)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def unless_gone(receive: Receive, work: Coroutine[Any, Any, T]) -> T:
    """`work`'s result, or `ClientGoneError` once the client disconnects first (`work` is then cancelled)."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(wait_for_disconnect(receive))
    try:
        await asyncio.wait((task, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await gone
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        raise ClientGoneError
    return task.result()
