"""`python -m app`'s server: connections that never finish a request, or its body, do not stay open."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

import msgspec

from app.factory import create_app
from app.http.server import uvicorn_config
from app.settings import Settings
from providers.mock import MockProvider
from tests.support.server import RunningServer, serve

_HEAD_TIMEOUT_S = 0.3


@contextmanager
def _served(**changes: float) -> Iterator[RunningServer]:
    settings = Settings(request_head_timeout_s=_HEAD_TIMEOUT_S, **changes)  # type: ignore[arg-type]
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
