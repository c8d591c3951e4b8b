"""The streaming runtime in-process with hand-written ASGI apps: the edges a well-behaved app never shows.

Apps that crash before or after the first byte, send empty chunks, set cookies or send nothing at all;
the scope each invocation gets (deadline, body, context); the trace id in the environment.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from mangum.types import Message, Receive, Scope, Send

from app.errors import DEADLINE, IDLE_TIMEOUT, UPSTREAM_STREAM_ERROR, cancelled_error
from app.lambda_.context import FunctionInfo, with_invocation_deadline
from app.lambda_.runtime_api import RuntimeApiClient
from app.lambda_.streaming import StreamingRuntime, http_integration_prelude
from app.stream.limits import host_deadline
from app.stream.session import Failed, Outcome
from app.stream.trailers import outcome_trailers
from tests.app.lambda_.conftest import function_url_event, load_event
from tests.app.lambda_.fake_runtime_api import DELIMITER, PREFIX, FakeRuntimeApi
from tests.support.sse import parse_frames
from tests.support.timeouts import run_async

App = Callable[[Scope, Receive, Send], Awaitable[None]]


def serve_one(fake: FakeRuntimeApi, app: App, event: dict[str, Any] | None = None, **invoke: Any) -> str:
    """Queue one invocation and let a fresh runtime serve it; returns the request id."""
    request_id = fake.invoke(event or function_url_event("POST", "/echo", {"hello": "world"}), **invoke)

    async def body() -> None:
        client = RuntimeApiClient(fake.address)
        runtime = StreamingRuntime(
            with_invocation_deadline(app, 2.0),
            client,
            FunctionInfo.from_environ({"AWS_LAMBDA_FUNCTION_NAME": "f"}),
        )
        await runtime.handle(await client.next_invocation())

    run_async(body, timeout_s=10)
    return request_id


def start(status: int = 200, headers: list[tuple[bytes, bytes]] | None = None) -> Message:
    return {"type": "http.response.start", "status": status, "headers": headers or []}


def body(data: bytes, *, more: bool) -> Message:
    return {"type": "http.response.body", "body": data, "more_body": more}


def test_the_prelude_joins_repeated_headers_and_moves_cookies_out() -> None:
    prelude = http_integration_prelude(
        201,
        [(b"Content-Type", b"text/plain"), (b"vary", b"a"), (b"Vary", b"b"), (b"set-cookie", b"s=1; Path=/")],
    )

    document, sep, rest = prelude.partition(DELIMITER)
    assert (sep, rest) == (DELIMITER, b"")
    assert json.loads(document) == {
        "statusCode": 201,
        "headers": {"content-type": "text/plain", "vary": "a,b"},
        "cookies": ["s=1; Path=/"],
    }


def test_a_nul_in_a_header_value_cannot_end_the_prelude_early() -> None:
    prelude = http_integration_prelude(200, [(b"x-odd", b"a\x00b")])

    assert prelude.count(b"\0") == 8
    assert prelude.endswith(DELIMITER)


def test_the_app_gets_the_request_the_deadline_and_the_context(fake: FakeRuntimeApi) -> None:
    seen: dict[str, Any] = {}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen["request"] = await receive()
        deadline = host_deadline(scope)
        assert deadline is not None
        seen["deadline_left_s"] = deadline.remaining_s()
        seen["since_queued_s"] = time.monotonic() - queued_at
        seen["remaining_ms"] = scope["aws.context"].get_remaining_time_in_millis()
        seen["request_id"] = scope["aws.context"].aws_request_id
        seen["path"], seen["method"] = scope["path"], scope["method"]
        await send(start())
        await send(body(b"", more=False))

    queued_at = time.monotonic()
    request_id = serve_one(fake, app, budget_s=30)

    assert seen["request"] == {"type": "http.request", "body": b'{"hello": "world"}', "more_body": False}
    assert (seen["method"], seen["path"]) == ("POST", "/echo")
    assert seen["request_id"] == request_id
    assert 0 < seen["remaining_ms"] <= 30_000
    # The deadline handed to streams is Lambda's minus the 2 s margin.
    # Lambda's deadline is 30 s after the invocation was queued; the stream's is 2 s before it.
    assert 28 - seen["since_queued_s"] - 0.01 <= seen["deadline_left_s"] <= 28 + 0.01


def test_empty_body_messages_do_not_end_the_chunked_body(fake: FakeRuntimeApi) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start(200, [(b"content-type", b"text/plain")]))
        for part in (b"one ", b"", b"two ", b"", b"three"):
            await send(body(part, more=True))
        await send(body(b"", more=False))

    request_id = serve_one(fake, app)

    response = fake.response(request_id)
    assert [c.data for c in response.chunks[1:]] == [b"one ", b"two ", b"three"]
    assert response.split_prelude()[1] == b"one two three"


def test_a_response_without_a_body_still_sends_prelude_and_delimiter(fake: FakeRuntimeApi) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start(204, [(b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")]))
        await send(body(b"", more=False))

    request_id = serve_one(fake, app)

    prelude, rest = fake.response(request_id).split_prelude()
    assert prelude == {"statusCode": 204, "headers": {}, "cookies": ["a=1", "b=2"]}
    assert rest == b""


def test_an_app_that_crashes_before_responding_fails_the_invocation(fake: FakeRuntimeApi) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise LookupError("secret detail from the app")

    request_id = serve_one(fake, app)

    error = fake.error(request_id)
    assert error.header("Lambda-Runtime-Function-Error-Type") == "Function.LookupError"
    assert "secret detail" not in error.body.decode()
    assert f"POST {PREFIX}/invocation/{request_id}/response" not in fake.paths()


def test_an_app_that_sends_nothing_fails_the_invocation(fake: FakeRuntimeApi) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        return None

    request_id = serve_one(fake, app)

    assert fake.error(request_id).json()["errorType"] == "Function.NoResponse"


def test_an_app_that_crashes_mid_stream_ends_with_error_trailers_and_nothing_added(
    fake: FakeRuntimeApi,
) -> None:
    # The in-band `error` event is the app's own response layer's to write (tests/app/http/test_responses.py
    # shows it for our app, on every host): this host only reports the failure to Lambda.
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start(200, [(b"content-type", b"text/event-stream; charset=utf-8")]))
        await send(body(b"event: start\ndata: {}\n\n", more=True))
        raise KeyError("secret detail from the app")

    request_id = serve_one(fake, app)

    response = fake.response(request_id)
    assert [f.event for f in parse_frames(response.split_prelude()[1])] == ["start"]
    assert response.trailers["lambda-runtime-function-error-type"] == "Function.StreamError"
    assert response.error_body()["errorType"] == "KeyError"
    assert "secret detail" not in json.dumps(response.error_body())


def _announcing_trailers(trailers: list[tuple[bytes, bytes]]) -> App:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert "http.response.trailers" in scope["extensions"]  # the host advertises the extension
        await send({**start(200, [(b"content-type", b"text/event-stream")]), "trailers": True})
        await send(body(b"event: start\ndata: {}\n\n", more=True))
        await send(body(b"event: error\ndata: {}\n\n", more=False))
        await send({"type": "http.response.trailers", "headers": trailers, "more_trailers": False})

    return app


def test_a_failure_the_app_reports_in_trailers_becomes_lambdas_error_trailers(fake: FakeRuntimeApi) -> None:
    failed = Failed(UPSTREAM_STREAM_ERROR("the upstream broke"), Outcome.ERROR)

    request_id = serve_one(fake, _announcing_trailers(outcome_trailers(failed)))

    response = fake.response(request_id)
    assert [f.event for f in parse_frames(response.split_prelude()[1])] == ["start", "error"]
    assert response.trailers["lambda-runtime-function-error-type"] == "Function.StreamError"
    assert response.error_body() == {
        "errorType": "upstream_stream_error",
        "errorMessage": "the upstream broke",
        "stackTrace": [],
    }


@pytest.mark.parametrize(
    "failed",
    [
        Failed(cancelled_error(), Outcome.CANCELLED),
        Failed(DEADLINE("the stream ran longer than 1s"), Outcome.DEADLINE),
        Failed(IDLE_TIMEOUT("no token arrived for 1s"), Outcome.IDLE_TIMEOUT),
    ],
    ids=["cancelled", "deadline", "idle_timeout"],
)
def test_a_cancel_or_a_budget_reported_in_trailers_is_no_function_error(
    fake: FakeRuntimeApi, failed: Failed
) -> None:
    # Expected endings: CloudWatch's `Errors` should count faults (upstream, app), not clients and budgets.
    request_id = serve_one(fake, _announcing_trailers(outcome_trailers(failed)))

    response = fake.response(request_id)
    assert "lambda-runtime-function-error-type" not in response.trailers


def test_trailers_that_report_nothing_leave_the_invocation_successful(fake: FakeRuntimeApi) -> None:
    request_id = serve_one(fake, _announcing_trailers(outcome_trailers(None)))

    assert "lambda-runtime-function-error-type" not in fake.response(request_id).trailers


def test_a_crash_mid_way_through_a_non_sse_body_adds_no_event(fake: FakeRuntimeApi) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start(200, [(b"content-type", b"application/json")]))
        await send(body(b'{"partial": ', more=True))
        raise ValueError("boom")

    request_id = serve_one(fake, app)

    response = fake.response(request_id)
    assert response.split_prelude()[1] == b'{"partial": '
    assert response.error_body()["errorType"] == "ValueError"


def test_the_trace_id_of_each_invocation_is_in_the_environment(
    fake: FakeRuntimeApi, monkeypatch: Any
) -> None:
    monkeypatch.setenv("_X_AMZN_TRACE_ID", "left over")
    seen: list[str | None] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(os.environ.get("_X_AMZN_TRACE_ID"))
        await send(start())
        await send(body(b"", more=False))

    serve_one(fake, app, trace_id="Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1")
    serve_one(fake, app, trace_id=None)

    assert seen == ["Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1", None]


def test_an_http_api_event_is_refused_not_streamed_into_a_buffering_integration(fake: FakeRuntimeApi) -> None:
    # Payload 2.0 like a function URL's, but HTTP APIs buffer: a streamed prelude would reach the client as
    # a 500. The invocation fails before any byte, saying what to use instead.
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("the app must not be called")

    request_id = serve_one(fake, app, load_event("http-api.json"))

    report = fake.error(request_id).json()
    assert report["errorType"] == "Function.UnsupportedEvent"
    assert "HTTP API" in report["errorMessage"]
    assert "handler.handler" in report["errorMessage"]
