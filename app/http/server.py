"""How the ASGI host (`python -m app`, containers) runs the app: uvicorn, with the timeouts it lacks.

uvicorn times out a keep-alive connection only once a response is complete: a connection that never sends
a whole request head (opened and left idle, or a slow client trickling headers) is held for ever, one file
descriptor each. Here the request head has a deadline too (`REQUEST_HEAD_TIMEOUT_S`), on the h11 protocol
that `make run` serves with. Slow request bodies are bounded by the app itself (`REQUEST_BODY_TIMEOUT_S`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from app.settings import Settings


class _HeadTimeoutH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request head is not complete in time."""

    head_timeout_s = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer: asyncio.TimerHandle | None = None
        self._arm_head_timer()

    def handle_events(self) -> None:
        super().handle_events()
        if self._in_request():
            self._disarm_head_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_head_timer()  # the next request on this connection gets the same deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def _in_request(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _arm_head_timer(self) -> None:
        self._disarm_head_timer()
        if not self.transport.is_closing():
            self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._in_request() and not self.transport.is_closing():
            self.transport.close()


def uvicorn_config(app: Any, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """The server `python -m app` runs: no access log (query strings can carry prompts), our timeouts."""
    protocol = type(
        "HeadTimeoutH11Protocol",
        (_HeadTimeoutH11Protocol,),
        {"head_timeout_s": settings.request_head_timeout_s},
    )
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "access_log": False,
        "log_config": None,
        "http": protocol,
        "timeout_keep_alive": settings.keep_alive_timeout_s,
        **overrides,
    }
    return uvicorn.Config(app, **options)
