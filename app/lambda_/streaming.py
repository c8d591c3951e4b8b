"""Streamed invocations: a function-URL or REST API event in, the ASGI app's response out as it is made.

Mangum's event handlers turn the event into the ASGI scope and request body; Mangum's HTTP cycle buffers,
so this module plays the server instead. At `http.response.start` it opens the streamed response and
writes the HTTP-integration prelude (JSON status, headers and cookies, then 8 NUL bytes), in the shape the
event's front door reads; every `http.response.body` chunk follows as its own HTTP chunk, at once.

Failures: before the response started, the invocation is reported on `/invocation/{id}/error` (the client
gets a 502 from Lambda). After it started, the status is gone, so the stream ends with Lambda's error
trailers; the client learns about it from the in-band `error` event the app wrote. The app tells this host
how a stream ended through ASGI response trailers (`app/stream/trailers.py`), which this host advertises.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import msgspec
from mangum.handlers import APIGateway, HTTPGateway
from mangum.types import LambdaConfig, Message

from app.lambda_.context import ASGIApp, FunctionInfo, InvocationContext
from app.lambda_.runtime_api import (
    Connection,
    ErrorReport,
    Invocation,
    ResponseStream,
    RuntimeApiClient,
    RuntimeApiError,
)
from app.logs import bind_log_context, log_event, reset_log_context
from app.stream.session import Outcome
from app.stream.trailers import ASGI_EXTENSION, read_failure

PRELUDE_DELIMITER: Final = b"\0" * 8
# API Gateway's streaming integration answers 500 unless the delimiter arrives within the first 16 KB.
REST_PRELUDE_LIMIT: Final = 16 * 1024

# Event sources whose integrations can stream, in Mangum's order of inference: function URLs (payload 2.0,
# which HTTP APIs share but cannot stream: those are refused first) and API Gateway REST APIs.
_STREAMING_SOURCES: Final = (HTTPGateway, APIGateway)
_CONFIG: Final = LambdaConfig(api_gateway_base_path="/", text_mime_types=[], exclude_headers=[])
_encode = msgspec.json.Encoder().encode


class UnsupportedEventError(Exception):
    """Raised when an event does not come from an HTTP integration that can stream (ALB, direct invoke)."""


class PreludeTooLargeError(Exception):
    """Raised when a response's status and headers do not fit where its front door looks for them."""


Prelude = Callable[[int, list[tuple[bytes, bytes]]], bytes]


@dataclass(frozen=True, slots=True)
class StreamedRequest:
    """What one invocation asks the app, and how its front door wants the response's status and headers."""

    scope: dict[str, Any]
    body: bytes
    prelude: Prelude


def request_for_event(event: Any, context: Any) -> StreamedRequest:
    """The ASGI scope, request body and prelude format of a function-URL or REST API event."""
    if isinstance(event, dict):
        if HTTPGateway.infer(event, context, _CONFIG) and not _from_function_url(event):
            raise UnsupportedEventError(
                "this event comes from an API Gateway HTTP API, which buffers responses (a streamed one "
                "reaches its client as a 500): route HTTP APIs to the buffered handler (handler.handler), "
                "or stream through the function URL or a REST API with response streaming"
            )
        for source in _STREAMING_SOURCES:
            if source.infer(event, context, _CONFIG):
                handler = source(event, context, _CONFIG)
                prelude = rest_api_prelude if source is APIGateway else http_integration_prelude
                return StreamedRequest(dict(handler.scope), handler.body, prelude)
    raise UnsupportedEventError(
        "this function streams: invoke it through its function URL or an API Gateway REST API "
        "with response streaming (ALB, HTTP APIs and direct invokes need the buffered handler)"
    )


def _from_function_url(event: dict[str, Any]) -> bool:
    """Function URL events and HTTP API events share payload format 2.0; only the domain tells them apart
    (`<url-id>.lambda-url.<region>.on.aws`, against `<api-id>.execute-api....` or an API's custom domain)."""
    context = event.get("requestContext")
    domain = context.get("domainName", "") if isinstance(context, dict) else ""
    return isinstance(domain, str) and ".lambda-url." in domain


def http_integration_prelude(status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
    """The metadata Lambda sends to the client as status and headers, then the 8-NUL delimiter.

    Repeated headers are comma-joined and `set-cookie` goes to `cookies` (the rule of payload 2.0, as Mangum
    applies it to buffered responses).
    JSON escapes control characters, so the prelude itself never contains a NUL byte.
    """
    combined: dict[str, str] = {}
    cookies: list[str] = []
    for raw_name, raw_value in headers:
        name, value = raw_name.decode().lower(), raw_value.decode()
        if name == "set-cookie":
            cookies.append(value)
        elif name in combined:
            combined[name] = f"{combined[name]},{value}"
        else:
            combined[name] = value
    return _encode({"statusCode": status, "headers": combined, "cookies": cookies}) + PRELUDE_DELIMITER


def rest_api_prelude(status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
    """The prelude of a REST API's streaming Lambda proxy integration (payload 1.0), then the delimiter.

    The format, from "Lambda proxy integration format for response streaming"
    (https://docs.aws.amazon.com/apigateway/latest/developerguide/response-transfer-mode-lambda.html):
    `headers` holds single-value headers only, `multiValueHeaders` any header (its values win where both
    name one), `cookies` the cookies, `statusCode` the status; no other key; and the 8-NUL delimiter must
    arrive within the first 16 KB of the stream. So a repeated header goes whole into `multiValueHeaders`
    (nothing is comma-joined: `vary: a` twice stays two values), every other one into `headers`.
    """
    values: dict[str, list[str]] = {}
    cookies: list[str] = []
    for raw_name, raw_value in headers:
        name, value = raw_name.decode().lower(), raw_value.decode()
        if name == "set-cookie":
            cookies.append(value)
        else:
            values.setdefault(name, []).append(value)
    single = {name: found[0] for name, found in values.items() if len(found) == 1}
    multi = {name: found for name, found in values.items() if len(found) > 1}
    document = {"statusCode": status, "headers": single, "multiValueHeaders": multi, "cookies": cookies}
    prelude = _encode(document) + PRELUDE_DELIMITER
    if len(prelude) > REST_PRELUDE_LIMIT:
        # Failing before the first byte gives Lambda's 502 and a logged reason, not API Gateway's bare 500.
        raise PreludeTooLargeError(
            f"the response's status and headers take {len(prelude)} bytes; API Gateway reads at most "
            f"{REST_PRELUDE_LIMIT}"
        )
    return prelude


class StreamingCycle:
    """Plays the ASGI server for one invocation, writing its response to the Runtime API as it comes."""

    def __init__(
        self,
        client: RuntimeApiClient,
        request_id: str,
        scope: dict[str, Any],
        body: bytes,
        prelude: Prelude = http_integration_prelude,
    ) -> None:
        self._client = client
        self._request_id = request_id
        self._scope = scope
        self._body = body
        self._prelude = prelude
        self._request_sent = False
        self._stream: ResponseStream | None = None
        self._done = False
        self._completed = asyncio.Event()
        self._status = 0
        self._trailers = False
        self._failure: ErrorReport | None = None
        self._started_at = time.perf_counter()
        self._connection: asyncio.Task[Connection] | None = None

    async def run(self, app: ASGIApp) -> None:
        """Run the app for this invocation; `RuntimeApiError` escapes, the app's own errors do not."""
        extensions = self._scope.get("extensions") or {}
        extensions[ASGI_EXTENSION] = {}
        self._scope["extensions"] = extensions
        # Connect while the app waits for the model's first token, so that token goes out without a
        # connection setup in front of it.
        self._connection = asyncio.create_task(self._client.connect())
        try:
            await app(self._scope, self._receive, self._send)
        except RuntimeApiError:
            raise  # the Runtime API connection broke: nothing more can be told to Lambda on it
        except Exception as exc:
            await self._fail(exc)
            return
        finally:
            await self._drop_unused_connection()
        if self._stream is None:
            await self._client.report_invocation_error(
                self._request_id,
                ErrorReport(error_type="Function.NoResponse", error_message="the app sent no response"),
            )
        elif not self._done:  # the app returned without its final body message
            await self._end()

    async def _receive(self) -> Message:
        if not self._request_sent:
            self._request_sent = True
            return {"type": "http.request", "body": self._body, "more_body": False}
        # Lambda never reports a client that went away; the only disconnect is the end of the response.
        await self._completed.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self._stream is not None:
                raise RuntimeError("http.response.start sent twice")
            headers = [(bytes(name), bytes(value)) for name, value in message.get("headers", ())]
            status = int(message["status"])
            prelude = self._prelude(status, headers)  # before the stream opens: a misfit fails it cleanly
            self._status = status
            self._trailers = bool(message.get("trailers", False))
            connection, self._connection = self._connection, None
            self._stream = await self._client.open_response_stream(
                self._request_id, await connection if connection is not None else None
            )
            await self._stream.write(prelude)
        elif kind == "http.response.body":
            if self._stream is None or self._done:
                raise RuntimeError("http.response.body outside a response")
            await self._stream.write(message.get("body", b""))
            if not message.get("more_body", False) and not self._trailers:
                await self._end()
        elif kind == "http.response.trailers":
            if self._stream is None or self._done or not self._trailers:
                raise RuntimeError("http.response.trailers without a response that announced them")
            self._on_trailers(message.get("headers", ()))
            if not message.get("more_trailers", False):
                await self._end()
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r}")

    async def _drop_unused_connection(self) -> None:
        """Close the early connection when no streamed response used it (errors before the first byte)."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        connection.cancel()
        try:
            _, writer = await connection
        except (asyncio.CancelledError, RuntimeApiError):
            return
        writer.close()

    def _on_trailers(self, headers: Any) -> None:
        failure = read_failure(headers)
        # Only a fault (the upstream's, the app's) fails the invocation: a cancel is the client's wish and a
        # budget (deadline, idle timeout) an expected ending, so that CloudWatch's `Errors` means something.
        if failure is None or failure.outcome != Outcome.ERROR:
            return
        self._failure = ErrorReport(error_type=failure.code or failure.type, error_message=failure.message)

    async def _fail(self, exc: Exception) -> None:
        log_event("lambda_app_error", logging.ERROR, request_id=self._request_id, exc_type=type(exc).__name__)
        # The app's own messages may carry request data; only this host's own error explains itself.
        message = str(exc) if isinstance(exc, PreludeTooLargeError) else "the app raised an exception"
        report = ErrorReport(error_type=type(exc).__name__, error_message=message)
        if self._stream is None:
            await self._client.report_invocation_error(
                self._request_id,
                ErrorReport(error_type=f"Function.{report.error_type}", error_message=report.error_message),
            )
            return
        if self._done:
            return
        # No in-band event from here: the app's own response layer writes its terminal `error` event, and
        # an app that died without one says nothing this host could add to a body it does not know.
        self._failure = report
        await self._end()

    async def _end(self) -> None:
        assert self._stream is not None
        self._done = True
        try:
            await self._stream.finish(self._failure)
        finally:
            self._completed.set()
        log_event(
            "lambda_invocation_end",
            request_id=self._request_id,
            status=self._status,
            bytes=self._stream.bytes_sent,
            stream_error=self._failure.error_type if self._failure else None,
            duration_ms=round((time.perf_counter() - self._started_at) * 1000, 2),
        )


class StreamingRuntime:
    """Serves invocations one at a time, each as a streamed response of the ASGI app."""

    def __init__(self, app: ASGIApp, client: RuntimeApiClient, function: FunctionInfo) -> None:
        self._app = app
        self._client = client
        self._function = function

    async def serve_forever(self) -> None:
        """Poll `/next` and stream each response; returns only by raising `RuntimeApiError` from `/next`."""
        while True:
            invocation = await self._client.next_invocation()
            try:
                await self.handle(invocation)
            except RuntimeApiError as exc:
                # This invocation is lost (Lambda times it out); the next one may well succeed.
                log_event(
                    "runtime_api_error", logging.ERROR, request_id=invocation.request_id, error=str(exc)
                )

    async def handle(self, invocation: Invocation) -> None:
        # The X-Ray SDK and the AWS SDKs read the current invocation's trace header from here (and so does
        # `app.trace`, for the upstream call of a stream).
        reset_log_context()  # invocations share this task: one's trace must not label the next one's lines
        if invocation.trace_id:
            os.environ["_X_AMZN_TRACE_ID"] = invocation.trace_id
            bind_log_context({"xray_trace_id": invocation.trace_id})
        else:
            os.environ.pop("_X_AMZN_TRACE_ID", None)
        context = InvocationContext(
            request_id=invocation.request_id,
            deadline_ms=invocation.deadline_ms,
            invoked_function_arn=invocation.function_arn,
            function=self._function,
            client_context=invocation.client_context,
            identity=invocation.cognito_identity,
        )
        try:
            request = request_for_event(json.loads(invocation.event), context)
        except (ValueError, UnsupportedEventError) as exc:
            report = ErrorReport(error_type="Function.UnsupportedEvent", error_message=str(exc))
            await self._client.report_invocation_error(invocation.request_id, report)
            return
        cycle = StreamingCycle(
            self._client, invocation.request_id, request.scope, request.body, request.prelude
        )
        await cycle.run(self._app)
