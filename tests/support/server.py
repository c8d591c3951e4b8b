"""A real uvicorn server on 127.0.0.1 in a background thread, for tests that need a network peer.

The listening socket is bound before the server starts, so the port is known at once and early
connections wait in the backlog: no polling or sleeping to find out when the server is up.

It serves on the stack `SERVER_STACK` names, as `python -m app` does: `fast` (uvloop + httptools, the
default) or `h11` (asyncio + h11); CI runs the network tests once on each. Here `fast` never falls back:
a test run that asked for it and did not get it would prove nothing about it.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn
from litestar import Litestar

from app.http.server import Stack, server_stack
from app.settings import ServerStack


@dataclass(frozen=True)
class RunningServer:
    """Where a test server listens."""

    host: str
    port: int

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"


def requested_stack() -> ServerStack:
    """The server stack of this test run (`SERVER_STACK`, default `fast`)."""
    name = os.environ.get("SERVER_STACK", "fast")
    if name not in ("fast", "h11"):
        raise RuntimeError(f"SERVER_STACK={name!r} is not one of: fast, h11")
    return "fast" if name == "fast" else "h11"


def test_stack() -> Stack:
    """The resolved stack of this test run; `fast` without uvloop or httptools is an error, not h11."""
    stack = server_stack(requested_stack())
    if stack.fallback_reason is not None:
        raise RuntimeError(f"SERVER_STACK=fast, but {stack.fallback_reason}")
    return stack


def free_port() -> int:
    """A loopback port nothing listens on now, for a server started in another process."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def serve(
    app: Litestar, *, config: uvicorn.Config | None = None, join_timeout_s: float = 10.0
) -> Iterator[RunningServer]:
    """Serve `app` with uvicorn on an ephemeral loopback port until the block exits (`config`: another
    uvicorn configuration of it, such as `python -m app`'s)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    port = sock.getsockname()[1]
    if config is None:
        stack = test_stack()
        config = uvicorn.Config(
            app,
            loop=stack.loop,
            http=stack.parser,
            lifespan="on",
            access_log=False,
            log_config=None,
            timeout_graceful_shutdown=2,
            backlog=2048,
        )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn-test", daemon=True)
    thread.start()
    try:
        yield RunningServer("127.0.0.1", port)
    finally:
        server.should_exit = True
        thread.join(join_timeout_s)
        sock.close()
        if thread.is_alive():
            raise RuntimeError("the test server did not stop in time")
