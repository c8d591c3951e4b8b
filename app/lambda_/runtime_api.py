"""A client for the Lambda Runtime API: plain HTTP/1.1 to `$AWS_LAMBDA_RUNTIME_API`, framed by hand.

Why not a library: the managed runtime's client (awslambdaric) always posts one buffered body, and the
stdlib's `http.client` writes chunked bodies but cannot end them with trailers, which is how Lambda
learns that a stream failed after its first byte. The requests are few and simple, so they are written
here over `asyncio` streams, one connection each, every body chunk on the wire as soon as it is given.

Standard library only: the runtime imports this before anything that could fail to import, so that
such a failure can still be reported to `/init/error`.
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass, field
from typing import Final

API_VERSION: Final = "2018-06-01"

# The only response mode Lambda accepts for a stream; any other value is `Runtime.InvalidResponseModeHeader`.
STREAMING_MODE: Final = "streaming"
HTTP_INTEGRATION_CONTENT_TYPE: Final = "application/vnd.awslambda.http-integration-response"
ERROR_TYPE_TRAILER: Final = "Lambda-Runtime-Function-Error-Type"
ERROR_BODY_TRAILER: Final = "Lambda-Runtime-Function-Error-Body"
# The trailer's error type must match `(Runtime|Function)\.[A-Z][a-zA-Z]+`; the details go in the body.
STREAM_ERROR_TYPE: Final = "Function.StreamError"

_MAX_HEADER_LINE: Final = 64 * 1024
_MAX_EVENT_BYTES: Final = 8 * 1024 * 1024  # events are capped at 6 MB by Lambda; leave room for framing


class RuntimeApiError(Exception):
    """Raised when the Runtime API cannot be reached or answers with an unexpected status."""


@dataclass(frozen=True, slots=True)
class ErrorReport:
    """The error document Lambda expects in `/error` bodies and in the error-body trailer."""

    error_type: str
    error_message: str
    stack_trace: tuple[str, ...] = ()

    def to_json(self) -> bytes:
        document = {
            "errorType": self.error_type,
            "errorMessage": self.error_message,
            "stackTrace": self.stack_trace,
        }
        return json.dumps(document).encode()


@dataclass(frozen=True, slots=True)
class Invocation:
    """One event to handle, with what the `/next` response headers say about it."""

    request_id: str
    deadline_ms: int
    function_arn: str
    trace_id: str | None
    client_context: str | None
    cognito_identity: str | None
    event: bytes


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A Runtime API answer; header names are lower-cased."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class RuntimeApiClient:
    """The calls a runtime makes: next event, streamed or failed responses, init and restore reports."""

    def __init__(self, address: str) -> None:
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise RuntimeApiError(f"AWS_LAMBDA_RUNTIME_API={address!r} is not host:port")
        self._host = host
        self._port = int(port)
        self._authority = address

    async def next_invocation(self) -> Invocation:
        """Long-poll for the next event: Lambda freezes the instance while this waits."""
        response = await self._request("GET", "/runtime/invocation/next", expect=(200,))
        headers = response.headers
        request_id = headers.get("lambda-runtime-aws-request-id")
        deadline = headers.get("lambda-runtime-deadline-ms", "")
        if not request_id or not deadline.isdigit():
            raise RuntimeApiError("the /next response lacks a request id or a deadline")
        return Invocation(
            request_id=request_id,
            deadline_ms=int(deadline),
            function_arn=headers.get("lambda-runtime-invoked-function-arn", ""),
            trace_id=headers.get("lambda-runtime-trace-id"),
            client_context=headers.get("lambda-runtime-client-context"),
            cognito_identity=headers.get("lambda-runtime-cognito-identity"),
            event=response.body,
        )

    async def connect(self) -> Connection:
        """A fresh connection, opened ahead of `open_response_stream` to take setup off the first byte."""
        return await self._connect()

    async def open_response_stream(
        self, request_id: str, connection: Connection | None = None
    ) -> ResponseStream:
        """Start the streamed response of an invocation; its body goes out chunk by chunk."""
        reader, writer = connection if connection is not None else await self._connect()
        head = self._head(
            "POST",
            f"/runtime/invocation/{request_id}/response",
            {
                "Lambda-Runtime-Function-Response-Mode": STREAMING_MODE,
                "Transfer-Encoding": "chunked",
                "Content-Type": HTTP_INTEGRATION_CONTENT_TYPE,
                "Trailer": f"{ERROR_TYPE_TRAILER}, {ERROR_BODY_TRAILER}",
            },
        )
        try:
            writer.write(head)
            await writer.drain()
        except OSError as exc:
            writer.close()
            raise RuntimeApiError(f"cannot start the streamed response: {exc}") from exc
        return ResponseStream(reader, writer)

    async def report_invocation_error(self, request_id: str, report: ErrorReport) -> None:
        """Fail an invocation that has not sent a byte of its response."""
        await self._post_error(f"/runtime/invocation/{request_id}/error", report)

    async def report_init_error(self, report: ErrorReport) -> None:
        """Fail the instance's initialisation; the runtime exits afterwards."""
        await self._post_error("/runtime/init/error", report)

    async def restore_next(self) -> None:
        """SnapStart: returns once the instance was restored from its snapshot.

        The runtime has no after-restore work (the key, settings and app are meant to be shared by every
        restored copy), so nothing is ever reported to `/runtime/restore/error`.
        """
        await self._request("GET", "/runtime/restore/next", expect=(200, 204))

    async def _post_error(self, path: str, report: ErrorReport) -> None:
        await self._request(
            "POST",
            path,
            {"Lambda-Runtime-Function-Error-Type": report.error_type, "Content-Type": "application/json"},
            report.to_json(),
            expect=(202,),
        )

    async def _request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        *,
        expect: tuple[int, ...],
    ) -> HttpResponse:
        reader, writer = await self._connect()
        try:
            writer.write(
                self._head(method, path, {**(headers or {}), "Content-Length": str(len(body))}) + body
            )
            await writer.drain()
            response = await read_response(reader)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            raise RuntimeApiError(f"{method} {path} failed: {type(exc).__name__}: {exc}") from exc
        finally:
            writer.close()
        if response.status not in expect:
            raise RuntimeApiError(f"{method} {path} answered {response.status}: {response.body[:200]!r}")
        return response

    async def _connect(self) -> Connection:
        try:
            # asyncio sets TCP_NODELAY on its sockets: small SSE chunks are not held back by Nagle.
            return await asyncio.open_connection(self._host, self._port, limit=_MAX_HEADER_LINE)
        except OSError as exc:
            raise RuntimeApiError(f"cannot connect to the Runtime API at {self._authority}: {exc}") from exc

    def _head(self, method: str, path: str, headers: dict[str, str]) -> bytes:
        lines = [f"{method} /{API_VERSION}{path} HTTP/1.1", f"Host: {self._authority}", "Connection: close"]
        lines.extend(f"{name}: {value}" for name, value in headers.items())
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class ResponseStream:
    """The chunked body of one streamed response: each `write` is one HTTP chunk, sent at once."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self.bytes_sent = 0
        self.finished = False

    async def write(self, data: bytes) -> None:
        if not data:
            return  # a zero-length chunk would end the body
        try:
            self._writer.write(b"%x\r\n%b\r\n" % (len(data), data))
            await self._writer.drain()  # backpressure: Lambda throttles streams beyond 6 MB to 2 MB/s
        except OSError as exc:
            self._writer.close()
            raise RuntimeApiError(f"the response stream broke: {exc}") from exc
        self.bytes_sent += len(data)

    async def finish(self, error: ErrorReport | None = None) -> HttpResponse:
        """End the body, with error trailers when the stream failed after its first byte."""
        self.finished = True
        trailer = b""
        if error is not None:
            encoded = base64.standard_b64encode(error.to_json()).decode("ascii")
            trailer = (
                f"{ERROR_TYPE_TRAILER}: {STREAM_ERROR_TYPE}\r\n{ERROR_BODY_TRAILER}: {encoded}\r\n".encode()
            )
        try:
            self._writer.write(b"0\r\n" + trailer + b"\r\n")
            await self._writer.drain()
            response = await read_response(self._reader)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            raise RuntimeApiError(f"the response stream did not end cleanly: {exc}") from exc
        finally:
            self._writer.close()
        if response.status != 202:
            raise RuntimeApiError(
                f"the streamed response was rejected: {response.status} {response.body[:200]!r}"
            )
        return response


async def read_response(reader: asyncio.StreamReader) -> HttpResponse:
    """Parse one HTTP/1.1 response: Content-Length, chunked, or read-to-close bodies."""
    status_line = await reader.readline()
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        raise ValueError(f"not an HTTP response: {status_line[:80]!r}")
    status = int(parts[1])
    headers: dict[str, str] = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _read_chunked(reader)
    elif "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    else:
        body = await reader.read(_MAX_EVENT_BYTES)
    return HttpResponse(status, headers, body)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size_line = await reader.readline()
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass  # trailers of a response carry nothing the runtime needs
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
