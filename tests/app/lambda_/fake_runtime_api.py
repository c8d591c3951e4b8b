"""A stand-in for Lambda's Runtime API on 127.0.0.1 that records every request, chunk by chunk, with times.

It is written independently of the runtime's own client (stdlib `http.server`, chunked bodies and
trailers parsed by hand here), so that a framing mistake in the client cannot hide behind the same
mistake in the test. Each chunk of a streamed response is stamped with `time.monotonic()` when its last
byte arrives: tests compare those stamps to prove that bytes left the function while it was still working.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

PREFIX = "/2018-06-01/runtime"
DELIMITER = b"\0" * 8
FUNCTION_ARN = "arn:aws:lambda:eu-west-1:123456789012:function:tokenrelay"


@dataclass(frozen=True)
class Chunk:
    data: bytes
    at: float


@dataclass
class Request:
    """One request as the fake received it: raw header pairs in order, body, and when it arrived."""

    method: str
    path: str
    headers: list[tuple[str, str]]
    at: float
    body: bytes = b""
    chunks: list[Chunk] = field(default_factory=list)
    trailers: dict[str, str] = field(default_factory=dict)
    ended_at: float | None = None

    def header(self, name: str) -> str | None:
        values = [value for key, value in self.headers if key.lower() == name.lower()]
        return ", ".join(values) if values else None

    @property
    def streamed(self) -> bool:
        return (self.header("Transfer-Encoding") or "").lower() == "chunked"

    def split_prelude(self) -> tuple[dict[str, Any], bytes]:
        """The HTTP-integration prelude (decoded) and the body after the 8 NUL bytes."""
        prelude, sep, rest = self.body.partition(DELIMITER)
        assert sep, "no 8-NUL delimiter after the prelude"
        assert b"\0" not in prelude
        decoded: dict[str, Any] = json.loads(prelude)
        return decoded, rest

    def error_body(self) -> dict[str, Any]:
        """The decoded `Lambda-Runtime-Function-Error-Body` trailer."""
        decoded: dict[str, Any] = json.loads(base64.b64decode(self.trailers[_trailer_key("Error-Body")]))
        return decoded

    def json(self) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(self.body)
        return decoded


def _trailer_key(suffix: str) -> str:
    return f"lambda-runtime-function-{suffix.lower()}"


@dataclass(frozen=True)
class Invocation:
    request_id: str
    event: bytes
    deadline_ms: int
    trace_id: str | None
    chunked_event: bool


class FakeRuntimeApi:
    """Queue invocations, then wait for what the runtime posts back."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._pending: deque[Invocation] = deque()
        self._stopping = False
        self._restore_released = False
        self._counter = 0
        self.requests: list[Request] = []
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.fake = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-runtime-api", daemon=True
        )

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    def start(self) -> FakeRuntimeApi:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def invoke(
        self,
        event: dict[str, Any] | bytes,
        *,
        budget_s: float = 60.0,
        trace_id: str | None = "Root=1-00000000-000000000000000000000001;Sampled=0",
        chunked_event: bool = False,
    ) -> str:
        """Queue an event for the next `/next`; returns its request id."""
        with self._lock:
            self._counter += 1
            request_id = f"req-{self._counter:04d}"
            body = event if isinstance(event, bytes) else json.dumps(event).encode()
            deadline_ms = int((time.time() + budget_s) * 1000)
            self._pending.append(Invocation(request_id, body, deadline_ms, trace_id, chunked_event))
            self._lock.notify_all()
        return request_id

    def release_restore(self) -> None:
        with self._lock:
            self._restore_released = True
            self._lock.notify_all()

    def wait_for(self, predicate: Callable[[Request], bool], *, timeout_s: float = 10.0) -> Request:
        """The first recorded request matching `predicate` (complete: body and trailers read)."""
        with self._lock:
            found: list[Request] = []

            def match() -> bool:
                found[:] = [r for r in self.requests if r.ended_at is not None and predicate(r)]
                return bool(found)

            if not self._lock.wait_for(match, timeout_s):
                seen = [(r.method, r.path) for r in self.requests]
                raise AssertionError(f"no matching request within {timeout_s}s; seen: {seen}")
            return found[0]

    def wait_for_arrival(self, method_and_path: str, *, count: int = 1, timeout_s: float = 10.0) -> None:
        """Block until `count` requests (`"GET /path"`) have arrived, answered or not."""
        with self._lock:
            if not self._lock.wait_for(lambda: self._paths().count(method_and_path) >= count, timeout_s):
                raise AssertionError(f"not {count} x {method_and_path} within {timeout_s}s: {self._paths()}")

    def wait_for_chunk(self, request_id: str, needle: bytes, *, timeout_s: float = 10.0) -> Request:
        """Block until a streamed response of `request_id` has received a chunk containing `needle`."""
        path = f"{PREFIX}/invocation/{request_id}/response"
        with self._lock:

            def arrived() -> bool:
                return any(r.path == path and any(needle in c.data for c in r.chunks) for r in self.requests)

            if not self._lock.wait_for(arrived, timeout_s):
                raise AssertionError(f"no chunk with {needle!r} for {request_id} within {timeout_s}s")
            return next(r for r in self.requests if r.path == path)

    def response(self, request_id: str, *, timeout_s: float = 10.0) -> Request:
        path = f"{PREFIX}/invocation/{request_id}/response"
        return self.wait_for(lambda r: r.path == path, timeout_s=timeout_s)

    def error(self, request_id: str, *, timeout_s: float = 10.0) -> Request:
        path = f"{PREFIX}/invocation/{request_id}/error"
        return self.wait_for(lambda r: r.path == path, timeout_s=timeout_s)

    def paths(self) -> list[str]:
        """`"METHOD path"` of every request so far, in order of arrival."""
        with self._lock:
            return self._paths()

    def _paths(self) -> list[str]:
        return [f"{r.method} {r.path}" for r in self.requests]

    # Called from handler threads.

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)
            self._lock.notify_all()

    def _changed(self) -> None:
        with self._lock:
            self._lock.notify_all()

    def _next_invocation(self) -> Invocation | None:
        with self._lock:
            self._lock.wait_for(lambda: bool(self._pending) or self._stopping)
            return None if self._stopping else self._pending.popleft()

    def _wait_restore(self) -> bool:
        with self._lock:
            self._lock.wait_for(lambda: self._restore_released or self._stopping)
            return not self._stopping


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _request(self) -> Request:
        return Request(self.command, self.path, list(self.headers.items()), time.monotonic())

    def do_GET(self) -> None:
        fake: FakeRuntimeApi = self.server.fake
        request = self._request()
        fake._record(request)
        if self.path == f"{PREFIX}/invocation/next":
            invocation = fake._next_invocation()
            if invocation is None:
                self.close_connection = True
                return
            headers = {
                "Content-Type": "application/json",
                "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
                "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
                "Lambda-Runtime-Invoked-Function-Arn": FUNCTION_ARN,
            }
            if invocation.trace_id:
                headers["Lambda-Runtime-Trace-Id"] = invocation.trace_id
            self._respond(200, headers, invocation.event, chunked=invocation.chunked_event)
        elif self.path == f"{PREFIX}/restore/next":
            if not fake._wait_restore():
                self.close_connection = True
                return
            self._respond(200, {}, b"")
        else:
            self._respond(404, {"Content-Type": "application/json"}, b'{"errorType":"NotFound"}')
        request.ended_at = time.monotonic()
        fake._changed()

    def do_POST(self) -> None:
        fake: FakeRuntimeApi = self.server.fake
        request = self._request()
        fake._record(request)
        if request.streamed:
            self._read_chunked(request, fake)
        else:
            request.body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        request.ended_at = time.monotonic()
        fake._changed()
        self._respond(202, {"Content-Type": "application/json"}, b'{"status":"OK"}')

    def _read_chunked(self, request: Request, fake: FakeRuntimeApi) -> None:
        parts: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";", 1)[0].strip(), 16)
            if size == 0:
                break
            data = self.rfile.read(size)
            assert self.rfile.read(2) == b"\r\n", "a chunk must end with CRLF"
            parts.append(data)
            request.chunks.append(Chunk(data, time.monotonic()))
            fake._changed()
        while True:
            line = self.rfile.readline().decode("latin-1")
            if line in ("\r\n", "\n", ""):
                break
            name, _, value = line.partition(":")
            request.trailers[name.strip().lower()] = value.strip()
        request.body = b"".join(parts)

    def _respond(self, status: int, headers: dict[str, str], body: bytes, *, chunked: bool = False) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if chunked:  # as Go's server does for large bodies: the client must parse both framings
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            half = len(body) // 2
            for part in (body[:half], body[half:]):
                if part:
                    self.wfile.write(b"%x\r\n%b\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        self.wfile.flush()


@contextmanager
def running_fake() -> Iterator[FakeRuntimeApi]:
    fake = FakeRuntimeApi().start()
    try:
        yield fake
    finally:
        fake.stop()


ROOT = Path(__file__).resolve().parents[3]
WRAPPER = ROOT / "app" / "lambda_" / "bootstrap"


def lambda_environment(fake: FakeRuntimeApi, **overrides: str) -> dict[str, str]:
    """The variables Lambda sets for a python3.12 function with our wrapper, and only those."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "AWS_LAMBDA_RUNTIME_API": fake.address,
        "AWS_LAMBDA_EXEC_WRAPPER": str(WRAPPER),
        "LAMBDA_TASK_ROOT": str(ROOT),
        "LAMBDA_RUNTIME_DIR": "/var/runtime",
        "_HANDLER": "handler.handler",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
        "AWS_LAMBDA_FUNCTION_NAME": "tokenrelay-stream",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/tokenrelay-stream",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2026/11/24/[$LATEST]0123456789abcdef",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "HEARTBEAT_INTERVAL_S": "15",
    }
    env.update(overrides)
    return env
