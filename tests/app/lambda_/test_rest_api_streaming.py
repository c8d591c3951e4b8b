"""The streaming runtime behind an API Gateway REST API (payload 1.0, `responseTransferMode: STREAM`).

The events are the captured-format sample `events/api-gateway-rest-stream.json`; what API Gateway reads of a
streamed response is its prelude (`statusCode`, `headers`, `multiValueHeaders`, `cookies`, then 8 NUL bytes
within the first 16 KB) and then the raw body. The fake Runtime API records both, chunk by chunk.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from mangum.types import Receive, Scope, Send

from app.factory import create_app
from app.lambda_.context import FunctionInfo, with_invocation_deadline
from app.lambda_.runtime_api import RuntimeApiClient
from app.lambda_.streaming import (
    REST_PRELUDE_LIMIT,
    PreludeTooLargeError,
    StreamingRuntime,
    rest_api_prelude,
)
from app.settings import Secret, Settings
from providers.mock import MockProvider
from tests.app.lambda_.conftest import load_event
from tests.app.lambda_.fake_runtime_api import DELIMITER, FakeRuntimeApi
from tests.support.sse import events, parse_frames
from tests.support.timeouts import run_async

App = Any  # Litestar's ASGI signature is narrower than Mangum's, which hand-written apps follow


def rest_event(**body: Any) -> dict[str, Any]:
    """The captured REST sample, asking `POST /v1/stream` with `body` (the mock's directives included)."""
    request = {"messages": [{"role": "user", "content": "Explain server-sent events"}], **body}
    return load_event("api-gateway-rest-stream.json", body=json.dumps(request))


def serve(fake: FakeRuntimeApi, app: App, event: dict[str, Any]) -> str:
    request_id = fake.invoke(event)

    async def body() -> None:
        client = RuntimeApiClient(fake.address)
        runtime = StreamingRuntime(with_invocation_deadline(app, 2.0), client, FunctionInfo.from_environ({}))
        await runtime.handle(await client.next_invocation())

    run_async(body, timeout_s=15)
    return request_id


def our_app(**settings: Any) -> App:
    return create_app(Settings(**settings), MockProvider())


def test_the_prelude_puts_repeated_headers_in_multi_value_headers_and_cookies_apart() -> None:
    prelude = rest_api_prelude(
        200,
        [
            (b"Content-Type", b"text/event-stream"),
            (b"vary", b"origin"),
            (b"Vary", b"accept-encoding"),
            (b"set-cookie", b"a=1; Path=/"),
            (b"Set-Cookie", b"b=2; Path=/"),
        ],
    )

    document, delimiter, rest = prelude.partition(DELIMITER)
    assert (delimiter, rest) == (DELIMITER, b"")
    # Only the four keys API Gateway supports; a single-value header in `headers`, a repeated one whole in
    # `multiValueHeaders` (never comma-joined: a value may itself hold a comma).
    assert json.loads(document) == {
        "statusCode": 200,
        "headers": {"content-type": "text/event-stream"},
        "multiValueHeaders": {"vary": ["origin", "accept-encoding"]},
        "cookies": ["a=1; Path=/", "b=2; Path=/"],
    }


def test_a_prelude_beyond_16_kb_is_refused_before_any_byte(fake: FakeRuntimeApi) -> None:
    huge = b"x" * REST_PRELUDE_LIMIT
    with pytest.raises(PreludeTooLargeError, match="API Gateway reads at most 16384"):
        rest_api_prelude(200, [(b"x-huge", huge)])

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-huge", huge)]})
        await send({"type": "http.response.body", "body": b"never sent", "more_body": False})

    request_id = serve(fake, app, rest_event())

    report = fake.error(request_id).json()
    assert report["errorType"] == "Function.PreludeTooLargeError"
    assert "16384" in report["errorMessage"]
    assert not [r for r in fake.requests if r.path.endswith(f"/{request_id}/response")]


def test_a_rest_event_streams_our_app_behind_the_rest_prelude(fake: FakeRuntimeApi) -> None:
    request_id = serve(fake, our_app(), rest_event(max_tokens=6))

    response = fake.response(request_id)
    # The prelude is the first chunk on the wire, alone: API Gateway starts the client's response from it.
    first = response.chunks[0].data
    assert first.endswith(DELIMITER)
    assert first.count(b"\0") == 8
    prelude = json.loads(first[: -len(DELIMITER)])
    assert set(prelude) == {"statusCode", "headers", "multiValueHeaders", "cookies"}
    assert prelude["statusCode"] == 200
    assert prelude["headers"]["content-type"] == "text/event-stream; charset=utf-8"
    assert "x-stream-id" in prelude["headers"]
    # Then the SSE events, whole in every HTTP chunk (events already queued may share one), ending with
    # the terminal `done`.
    frames = events(parse_frames(response.split_prelude()[1]))
    assert [f.event for f in frames] == ["start"] + ["delta"] * 6 + ["done"]
    assert all(c.data.endswith(b"\n\n") for c in response.chunks[1:])


def test_each_chunk_reaches_api_gateway_before_the_app_writes_the_next(fake: FakeRuntimeApi) -> None:
    # The app waits, for each chunk, until the fake Runtime API has received the previous one: a host that
    # held chunks back would never see that happen, and the test would time out.
    request_id = fake.invoke(rest_event())
    seen: list[bytes] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        for word in (b"one ", b"two ", b"three"):
            await send({"type": "http.response.body", "body": word, "more_body": True})
            received = await asyncio.to_thread(fake.wait_for_chunk, request_id, word, timeout_s=5)
            seen.append(received.chunks[-1].data)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def body() -> None:
        client = RuntimeApiClient(fake.address)
        runtime = StreamingRuntime(with_invocation_deadline(app, 2.0), client, FunctionInfo.from_environ({}))
        await runtime.handle(await client.next_invocation())

    run_async(body, timeout_s=20)

    assert seen == [b"one ", b"two ", b"three"]
    assert fake.response(request_id).split_prelude()[1] == b"one two three"


def test_a_429_before_the_first_token_is_the_status_api_gateway_returns(fake: FakeRuntimeApi) -> None:
    request_id = serve(fake, our_app(), rest_event(mock={"error": "rate_limit"}))

    response = fake.response(request_id)
    prelude, body = response.split_prelude()
    assert prelude["statusCode"] == 429
    assert prelude["headers"]["retry-after"] == "1"
    assert prelude["headers"]["content-type"].startswith("application/json")
    assert json.loads(body)["error"]["code"] == "rate_limit_exceeded"
    # A status the client can act on, not a failed invocation.
    assert "lambda-runtime-function-error-type" not in response.trailers


def test_a_wrong_bearer_key_is_a_401_before_the_first_token(fake: FakeRuntimeApi) -> None:
    event = rest_event()
    event["headers"]["authorization"] = event["multiValueHeaders"]["authorization"][0] = "Bearer wrong"

    request_id = serve(fake, our_app(api_keys=(Secret("key-1"),)), event)

    prelude, body = fake.response(request_id).split_prelude()
    assert prelude["statusCode"] == 401
    assert prelude["headers"]["www-authenticate"].startswith("Bearer")
    assert json.loads(body)["error"]["code"] == "invalid_api_key"
    # The sample's own key passes: the gateway's x-api-key header and ours travel side by side.
    accepted = serve(fake, our_app(api_keys=(Secret("key-1"),)), rest_event(max_tokens=2))
    assert fake.response(accepted).split_prelude()[0]["statusCode"] == 200


def test_a_failure_after_the_first_token_is_an_in_band_error_and_error_trailers(fake: FakeRuntimeApi) -> None:
    request_id = serve(fake, our_app(), rest_event(max_tokens=10, mock={"fail_after": 3}))

    response = fake.response(request_id)
    prelude, body = response.split_prelude()
    assert prelude["statusCode"] == 200  # already sent when the upstream broke
    frames = events(parse_frames(body))
    assert [f.event for f in frames] == ["start", "delta", "delta", "delta", "error"]
    assert frames[-1].json()["error"]["code"] == "upstream_stream_error"
    assert response.trailers["lambda-runtime-function-error-type"] == "Function.StreamError"
