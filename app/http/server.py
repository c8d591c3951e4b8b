"""How the ASGI host (`python -m app`, containers) runs the app: uvicorn, on the fast stack, with the
timeouts it lacks.

The stack: uvloop's event loop and the httptools parser (`SERVER_STACK=fast`, the default), or asyncio and
h11 (`SERVER_STACK=h11`). Both are dependencies; where uvloop or httptools cannot be installed or imported
(no wheel for the platform, another interpreter), `fast` falls back to asyncio and h11 and says so in its
`server_start` log line. uvicorn's own `auto` picks the same pair, but only silently, and without the
head timeout below, which is why the protocol classes are chosen here.

uvicorn times out a keep-alive connection only once a response is complete: a connection that never sends
a whole request head (opened and left idle, or a slow client trickling headers) is held for ever, one file
descriptor each. Here the request head has a deadline too (`REQUEST_HEAD_TIMEOUT_S`), on either parser.
Slow request bodies are bounded by the app itself (`REQUEST_BODY_TIMEOUT_S`).
"""

from __future__ import annotations

import asyncio
import importlib
from dataclasses import dataclass
from typing import Any

import uvicorn

from app.settings import ServerStack, Settings


class _HeadTimeout(asyncio.Protocol):
    """Mixed into one of uvicorn's HTTP protocols: closes a connection whose request head is late."""

    head_timeout_s = 10.0
    # Set by the uvicorn protocol this is mixed into (both of them have these).
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    cycle: Any

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._head_timer: asyncio.TimerHandle | None = None
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._in_request():
            self._disarm_head_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]  # defined by the uvicorn protocol
        if not self._in_request():  # a pipelined request may have started already
            self._arm_head_timer()  # the next request on this connection gets the same deadline

    def handle_websocket_upgrade(self, *args: Any) -> None:
        # The socket now belongs to the WebSocket protocol, which has its own ping timeouts.
        self._disarm_head_timer()
        super().handle_websocket_upgrade(*args)  # type: ignore[misc]  # defined by the uvicorn protocol

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


@dataclass(frozen=True, slots=True)
class Stack:
    """The event loop and HTTP protocol uvicorn serves with, and why it is not the one asked for."""

    loop: str  # uvicorn's `loop` option
    parser: str  # "httptools" or "h11"
    http: type[asyncio.Protocol]
    fallback_reason: str | None = None

    @property
    def name(self) -> str:
        return f"{self.loop} + {self.parser}"


def _protocol(parser: str, head_timeout_s: float) -> type[asyncio.Protocol]:
    if parser == "httptools":
        base: type[asyncio.Protocol] = importlib.import_module(
            "uvicorn.protocols.http.httptools_impl"
        ).HttpToolsProtocol
    else:
        base = importlib.import_module("uvicorn.protocols.http.h11_impl").H11Protocol
    return type(f"HeadTimeout{base.__name__}", (_HeadTimeout, base), {"head_timeout_s": head_timeout_s})


def server_stack(requested: ServerStack, *, head_timeout_s: float = 10.0) -> Stack:
    """The stack for `SERVER_STACK`: uvloop + httptools when they import, else asyncio + h11."""
    if requested == "fast":
        try:
            importlib.import_module("uvloop")
            return Stack("uvloop", "httptools", _protocol("httptools", head_timeout_s))
        except ImportError as exc:  # no wheel for this platform or interpreter: the portable pair
            reason = f"{exc.name or 'uvloop/httptools'} cannot be imported ({exc})"
            return Stack("asyncio", "h11", _protocol("h11", head_timeout_s), fallback_reason=reason)
    return Stack("asyncio", "h11", _protocol("h11", head_timeout_s))


def uvicorn_config(
    app: Any, settings: Settings, *, stack: Stack | None = None, **overrides: Any
) -> uvicorn.Config:
    """The server `python -m app` runs: no access log (query strings can carry prompts), our timeouts, the
    stack `settings.server_stack` selects (or `stack`, already resolved)."""
    if stack is None:
        stack = server_stack(settings.server_stack, head_timeout_s=settings.request_head_timeout_s)
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "access_log": False,
        "log_config": None,
        "loop": stack.loop,
        "http": stack.http,
        "timeout_keep_alive": settings.keep_alive_timeout_s,
        **overrides,
    }
    return uvicorn.Config(app, **options)
