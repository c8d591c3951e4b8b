"""Buffered Lambda invocations through Mangum: API Gateway, ALB, function URLs in BUFFERED mode, `sam local`.

Two things differ from a bare `Mangum(app)`. Lifespan startup runs once per instance, at cold start:
Mangum's own lifespan support would run startup and shutdown around every invocation. And the handler
owns its event loop and makes it current before each call, because Mangum finds its loop with
`asyncio.get_event_loop()`, which warns on Python 3.12+ when none is set (an error under `-W error`).

A buffered event stream is still a complete one: the client gets every event, terminal event included,
at once when the invocation ends.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any

from mangum import Mangum
from mangum.protocols.lifespan import LifespanCycle

from app.lambda_.context import configured_app, with_invocation_deadline


class BufferedHandler:
    """A Lambda handler for buffered HTTP events, around an ASGI app that starts once per instance."""

    def __init__(self, app: Any, *, deadline_margin_s: float) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        app = with_invocation_deadline(app, deadline_margin_s)
        self._lifespan = LifespanCycle(app, "on")
        self._lifespan.__enter__()
        self._mangum = Mangum(app, lifespan="off")

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        # Something else in the process (a test, a library) may have replaced the current loop.
        asyncio.set_event_loop(self._loop)
        return self._mangum(event, context)

    def close(self) -> None:
        """Run lifespan shutdown and close the loop (Lambda never does; tests and scripts do)."""
        if self._loop.is_closed():
            return
        asyncio.set_event_loop(self._loop)
        self._lifespan.__exit__(None, None, None)
        self._loop.close()
        asyncio.set_event_loop(None)


def build_handler(environ: Mapping[str, str] | None = None) -> BufferedHandler:
    """The buffered handler for this instance, configured from the environment (and its secret)."""
    app, settings = configured_app(os.environ if environ is None else environ)
    return BufferedHandler(app, deadline_margin_s=settings.lambda_deadline_margin_s)
