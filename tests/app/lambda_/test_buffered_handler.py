"""`handler.handler`: the app behind Mangum for buffered invocations, with every sample event in events/.

Buffered or not, an event stream must be complete (terminal event included), lifespan startup must run
once per instance rather than around every invocation, and the invocation deadline must still end a
stream in-band before Lambda would kill it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from mangum.types import Receive, Scope, Send

from app.factory import create_app
from app.lambda_.buffered import BufferedHandler
from app.lambda_.context import FunctionInfo, InvocationContext
from app.settings import Settings
from tests.app.lambda_.conftest import deadline_budget_s, function_url_event, load_event
from tests.support.sse import Frame, events, parse_frames


def context(remaining_s: float = 30.0) -> InvocationContext:
    return InvocationContext(
        request_id="c0ffee00-0000-4000-8000-000000000001",
        deadline_ms=int((time.time() + remaining_s) * 1000),
        invoked_function_arn="arn:aws:lambda:eu-west-1:123456789012:function:tokenrelay-buffered",
        function=FunctionInfo.from_environ({"AWS_LAMBDA_FUNCTION_NAME": "tokenrelay-buffered"}),
    )


def body_of(response: dict[str, Any]) -> bytes:
    raw = response["body"]
    return base64.b64decode(raw) if response.get("isBase64Encoded") else raw.encode()


def frames_of(response: dict[str, Any]) -> list[Frame]:
    return events(parse_frames(body_of(response)))


def header(response: dict[str, Any], name: str) -> str:
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    multi = {k.lower(): v for k, v in (response.get("multiValueHeaders") or {}).items()}
    value = headers.get(name) or ",".join(multi.get(name, []))
    assert value, f"no {name} header in {response}"
    return value


class LifespanCounter:
    """An ASGI middleware that counts the lifespan messages the app receives."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.received: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def counting_receive() -> Any:
            message = await receive()
            self.received.append(message["type"])
            return message

        await self.app(scope, counting_receive, send)


@pytest.fixture
def buffered() -> Iterator[tuple[BufferedHandler, LifespanCounter]]:
    counter = LifespanCounter(create_app(Settings()))
    handler = BufferedHandler(counter, deadline_margin_s=2.0)
    yield handler, counter
    handler.close()


@pytest.mark.parametrize(
    "event_file",
    [
        "function-url-stream.json",
        "function-url-get-stream.json",
        "api-gateway-rest.json",
        "api-gateway-rest-stream.json",
        "http-api.json",
        "alb.json",
    ],
)
def test_every_sample_event_gets_a_complete_event_stream(
    buffered: tuple[BufferedHandler, LifespanCounter], event_file: str
) -> None:
    handler, _ = buffered

    response = handler(load_event(event_file), context())

    assert response["statusCode"] == 200
    assert header(response, "content-type") == "text/event-stream; charset=utf-8"
    frames = frames_of(response)
    assert frames[0].event == "start"
    assert [f.event for f in frames[1:-1]] == ["delta"] * 24
    assert frames[-1].event == "done"
    assert frames[-1].json()["outcome"] == "max_tokens"


def test_openai_chunks_end_with_done_when_buffered(buffered: tuple[BufferedHandler, LifespanCounter]) -> None:
    handler, _ = buffered

    response = handler(load_event("function-url-chat.json"), context())

    frames = frames_of(response)
    assert frames[0].json()["object"] == "chat.completion.chunk"
    assert frames[-2].json()["choices"][0]["finish_reason"] == "length"
    assert frames[-1].data == "[DONE]"


def test_lifespan_starts_once_per_instance_not_per_invocation(
    buffered: tuple[BufferedHandler, LifespanCounter],
) -> None:
    handler, counter = buffered

    for _ in range(3):
        assert handler(load_event("function-url-stream.json"), context())["statusCode"] == 200
    assert counter.received == ["lifespan.startup"]

    handler.close()
    assert counter.received == ["lifespan.startup", "lifespan.shutdown"]


def test_the_invocation_deadline_ends_a_buffered_stream_in_band(
    buffered: tuple[BufferedHandler, LifespanCounter],
) -> None:
    handler, _ = buffered
    event = function_url_event(
        "POST",
        "/v1/stream",
        {"messages": [{"role": "user", "content": "slow"}], "max_tokens": 1000, "mock": {"delay_ms": 50}},
    )

    started = time.monotonic()
    response = handler(event, context(remaining_s=2.6))  # 2 s margin: 0.6 s for the stream
    elapsed = time.monotonic() - started

    frames = frames_of(response)
    assert frames[0].event == "start"
    assert frames[-1].event == "error"
    error = frames[-1].json()["error"]
    assert error["code"] == "deadline"
    # Ended by the 0.6 s left before the margin, not by STREAM_DEADLINE_S (300 s): the error names the budget.
    assert 0 < deadline_budget_s(error["message"]) <= 0.6
    assert elapsed >= 0.5


def test_errors_keep_their_status_and_json_body(buffered: tuple[BufferedHandler, LifespanCounter]) -> None:
    handler, _ = buffered
    event = function_url_event("POST", "/v1/stream", {"messages": []})

    response = handler(event, context())

    assert response["statusCode"] == 400
    assert json.loads(body_of(response))["error"]["param"] == "messages"


def test_the_handler_survives_other_event_loops_coming_and_going(
    buffered: tuple[BufferedHandler, LifespanCounter],
) -> None:
    handler, _ = buffered

    async def elsewhere() -> None:
        await asyncio.sleep(0)

    # asyncio.run leaves no current loop behind; Mangum's get_event_loop() would then warn or fail.
    asyncio.run(elsewhere())

    assert handler(load_event("function-url-stream.json"), context())["statusCode"] == 200


def test_the_module_level_handler_serves_a_function_url_event() -> None:
    import handler

    response = handler.handler(load_event("function-url-get-stream.json"), context())

    assert response["statusCode"] == 200
    assert frames_of(response)[-1].event == "done"
