"""`python -m app`'s server: its stack, and connections that never finish a request, or its body, do not
stay open (on the stack `SERVER_STACK` names)."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import msgspec
import pytest
import uvloop
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from websockets.asyncio.client import connect

from app.factory import create_app
from app.http.server import server_stack, uvicorn_config
from app.settings import Settings
from providers.mock import MockProvider
from tests.support.server import RunningServer, requested_stack, serve
from tests.support.timeouts import run_async

_HEAD_TIMEOUT_S = 0.3


@contextmanager
def _served(**changes: float) -> Iterator[RunningServer]:
    settings = Settings(
        request_head_timeout_s=_HEAD_TIMEOUT_S,
        server_stack=requested_stack(),
        **changes,  # type: ignore[arg-type]
    )
    app = create_app(settings, MockProvider())
    config = uvicorn_config(app, settings, lifespan="on", timeout_graceful_shutdown=2)
    with serve(app, config=config) as server:
        yield server


def _connect(server: RunningServer) -> socket.socket:
    client = socket.create_connection((server.host, server.port))
    client.settimeout(5)  # a guard: the server must close long before
    return client


def _read_all(client: socket.socket) -> bytes:
    received = b""
    while chunk := client.recv(65536):
        received += chunk
    return received


def test_an_idle_or_half_sent_request_head_is_closed_by_the_server() -> None:
    with _served() as server:
        idle = _connect(server)
        trickling = _connect(server)
        trickling.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n")  # and never the blank line
        try:
            assert _read_all(idle) == b""
            assert _read_all(trickling) == b""
        finally:
            idle.close()
            trickling.close()


def test_a_request_sent_in_time_is_served_and_the_next_head_has_a_deadline_too() -> None:
    with _served() as server:
        client = _connect(server)
        try:
            client.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
            first = b""
            while not first.endswith(b"}"):  # the whole JSON body of /healthz
                first += client.recv(65536)
            assert first.startswith(b"HTTP/1.1 200 ")
            client.sendall(
                b"GET /healthz HTTP/1.1\r\n"
            )  # a second, unfinished head on the kept-alive connection
            assert _read_all(client) == b""
        finally:
            client.close()


def test_a_body_that_does_not_arrive_in_time_is_a_408() -> None:
    with _served(request_body_timeout_s=0.3) as server:
        client = _connect(server)
        try:
            client.sendall(
                b"POST /v1/stream HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                b'Content-Length: 100\r\n\r\n{"messages": '
            )
            response = _read_all(client)
        finally:
            client.close()

    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert msgspec.json.decode(body)["error"]["code"] == "request_timeout"


def test_a_websocket_outlives_the_request_head_deadline() -> None:
    """The head timer belongs to HTTP: once upgraded, the socket is the WebSocket protocol's."""

    async def main(server: RunningServer) -> list[dict[str, object]]:
        async with connect(f"{server.ws_url}/v1/ws", proxy=None, open_timeout=5) as ws:
            # 8 tokens 100 ms apart: the answer is still streaming well after the 0.3 s head deadline.
            prompt = {
                "type": "prompt",
                "id": "p",
                "messages": [{"role": "user", "content": "hello"}],
                "max_tokens": 8,
                "mock": {"delay_ms": 100},
            }
            await ws.send(msgspec.json.encode(prompt).decode())
            messages: list[dict[str, object]] = []
            while not messages or messages[-1]["type"] not in ("done", "error"):
                messages.append(msgspec.json.decode(await ws.recv()))
            return messages

    with _served() as server:
        messages = run_async(lambda: main(server), timeout_s=20)
    assert messages[-1]["type"] == "done"
    assert sum(m["type"] == "delta" for m in messages) == 8


def test_the_fast_stack_is_uvloop_and_httptools_with_the_head_timeout() -> None:
    stack = server_stack("fast", head_timeout_s=0.5)
    config = uvicorn_config(create_app(Settings(), MockProvider()), Settings(), stack=stack)
    config.load()
    assert (stack.name, stack.fallback_reason) == ("uvloop + httptools", None)
    assert issubclass(config.http_protocol_class, HttpToolsProtocol)
    assert config.http_protocol_class.head_timeout_s == 0.5  # type: ignore[attr-defined]
    loop_factory = config.get_loop_factory()
    assert loop_factory is not None
    loop = loop_factory()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()


def test_h11_is_asyncio_and_h11_and_the_fallback_when_uvloop_cannot_be_imported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert server_stack("h11").name == "asyncio + h11"
    assert issubclass(server_stack("h11").http, H11Protocol)
    monkeypatch.setitem(sys.modules, "uvloop", None)  # what `import uvloop` sees where it did not install
    fallback = server_stack("fast")
    assert fallback.name == "asyncio + h11"
    assert issubclass(fallback.http, H11Protocol)
    assert fallback.fallback_reason is not None
    assert "uvloop" in fallback.fallback_reason
