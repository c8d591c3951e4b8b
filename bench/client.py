"""A minimal HTTP/1.1 client over asyncio protocols, and the app-under-test server processes.

The client only timestamps and keeps what arrives (`data_received`); parsing happens after the run, so
a thousand streams cost the measuring process as little as possible.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class Server:
    """An app under test in its own process."""

    name: str
    port: int
    pid: int

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks


@contextmanager
def serve(name: str, *, stamp: bool = False) -> Iterator[Server]:
    """Run `python -m bench.serve NAME` until the block exits."""
    command = [sys.executable, "-m", "bench.serve", name, *(["--stamp"] if stamp else [])]
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            if not line.strip():
                raise RuntimeError(f"bench.serve {name} did not start (exit code {process.wait(10)})")
            yield Server(name, int(line), process.pid)
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def request_bytes(method: str, target: str, body: bytes = b"") -> bytes:
    head = (
        f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nConnection: close\r\n"
    )
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


class Recording(asyncio.Protocol):
    """One request; every read is kept with the `perf_counter_ns()` of its arrival."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.reads: list[tuple[int, bytes]] = []
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.reads.append((time.perf_counter_ns(), data))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def body(self) -> bytes:
        """The response body, de-chunked; reads are kept whole, so frame boundaries do not matter."""
        raw = b"".join(data for _, data in self.reads)
        head, _, body = raw.partition(b"\r\n\r\n")
        if b"transfer-encoding: chunked" not in head.lower():
            return body
        return dechunk(body)


def dechunk(body: bytes) -> bytes:
    out = bytearray()
    position = 0
    while True:
        line_end = body.index(b"\r\n", position)
        size = int(body[position:line_end].split(b";", 1)[0], 16)
        if size == 0:
            return bytes(out)
        start = line_end + 2
        out += body[start : start + size]
        position = start + size + 2


async def fetch(port: int, request: bytes) -> Recording:
    """One request over a fresh connection, read until the server closes it."""
    loop = asyncio.get_running_loop()
    recording = Recording(request)
    await loop.create_connection(lambda: recording, "127.0.0.1", port)
    await recording.done
    return recording
