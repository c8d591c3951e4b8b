"""Drive an ASGI app in-process with a hand-written `receive` and a recording `send`.

TestClient and httpx's ASGI transport buffer whole responses; this calls the app directly, so the time
measured is the app's own, and nothing waits for a network.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from bench.workload import ASGIApp


@dataclass(slots=True)
class Recorded:
    """What an app sent for one request, and how long it took."""

    status: int = 0
    chunks: list[bytes] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


def http_scope(method: str, target: str, *, body: bytes = b"") -> dict[str, Any]:
    path, _, query = target.partition("?")
    headers = [(b"host", b"127.0.0.1:8000"), (b"accept", b"text/event-stream")]
    if body:
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
        "extensions": {},
    }


async def call(app: ASGIApp, method: str, target: str, *, body: bytes = b"") -> Recorded:
    """One request; the client stays connected until the response is complete."""
    recorded = Recorded()
    finished = asyncio.Event()
    delivered = False
    chunks = recorded.chunks

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                finished.set()
        elif message["type"] == "http.response.start":
            recorded.status = message["status"]

    started = time.perf_counter()
    await app(http_scope(method, target, body=body), receive, send)
    recorded.seconds = time.perf_counter() - started
    return recorded
