"""`WS /v1/ws` against uvicorn, with the `websockets` client library: the protocol as a client sees it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin

from app.http.ws import CLOSE_FORBIDDEN, CLOSE_UNAUTHORIZED, MAX_IN_FLIGHT
from app.settings import Secret
from providers.mock import MockProvider
from tests.app.conftest import AppFactory, LogCapture, ServeFactory
from tests.app.helpers import expected_tokens, user
from tests.support.timeouts import run_async

TERMINAL = ("done", "error")
Message = dict[str, Any]


async def receive(ws: ClientConnection) -> Message:
    message: Message = json.loads(await ws.recv())
    return message


async def send(ws: ClientConnection, message: Message) -> None:
    await ws.send(json.dumps(message))


def prompt(prompt_id: str, text: str, **fields: Any) -> Message:
    return {"type": "prompt", "id": prompt_id, "messages": user(text), **fields}


async def until_terminal(ws: ClientConnection, *prompt_ids: str) -> list[Message]:
    """Every message up to and including the terminal one of each of `prompt_ids`, in arrival order."""
    pending = set(prompt_ids)
    received: list[Message] = []
    while pending:
        message = await receive(ws)
        received.append(message)
        if message["type"] in TERMINAL:
            pending.discard(message.get("id"))
    return received


def of(messages: list[Message], prompt_id: str) -> list[Message]:
    return [m for m in messages if m.get("id") == prompt_id]


def text_of(messages: list[Message]) -> str:
    return "".join(m["text"] for m in messages if m["type"] == "delta")


def run_with_socket(
    make_app: AppFactory,
    serve: ServeFactory,
    body: Callable[[ClientConnection], Awaitable[None]],
    *,
    provider: MockProvider | None = None,
    query: str = "",
    headers: dict[str, str] | None = None,
    origin: str | None = None,
    **settings: Any,
) -> None:
    with serve(make_app(provider, **settings)) as server:

        async def main() -> None:
            async with connect(
                f"{server.ws_url}/v1/ws{query}",
                additional_headers=headers,
                origin=None if origin is None else Origin(origin.format(server=server.base_url)),
                proxy=None,
                open_timeout=5,
            ) as ws:
                await body(ws)

        run_async(main, timeout_s=20)


def test_a_prompt_streams_start_deltas_and_done_with_its_id(
    make_app: AppFactory, serve: ServeFactory, log_capture: LogCapture
) -> None:
    async def body(ws: ClientConnection) -> None:
        await send(ws, prompt("q1", "hello"))
        messages = await until_terminal(ws, "q1")
        start, *middle, done = messages
        assert start["type"] == "start"
        assert start["model"] == "mock"
        assert {m["type"] for m in middle} == {"delta"}
        assert [m["text"] for m in middle] == expected_tokens("hello")
        assert done["type"] == "done"
        assert done["finish_reason"] == "stop"
        assert done["outcome"] == "completed"
        assert done["usage"]["completion_tokens"] == len(middle)
        assert all(m["id"] == "q1" for m in messages)
        (end,) = await asyncio.to_thread(log_capture.wait_for, "stream_end", 1)
        assert end["dialect"] == "ws"
        assert end["outcome"] == "completed"
        assert end["request_id"] == start["stream_id"]

    run_with_socket(make_app, serve, body)


def test_several_prompts_run_concurrently_over_one_socket(make_app: AppFactory, serve: ServeFactory) -> None:
    async def body(ws: ClientConnection) -> None:
        paced = {"delay_ms": 5}
        await send(ws, prompt("a", "first question", mock=paced))
        await send(ws, prompt("b", "second question", mock=paced))
        messages = await until_terminal(ws, "a", "b")
        assert text_of(of(messages, "a")) == "".join(expected_tokens("first question"))
        assert text_of(of(messages, "b")) == "".join(expected_tokens("second question"))
        order = [m["id"] for m in messages if m["type"] == "delta"]
        # Interleaved, not one after the other: b's first delta comes before a's last.
        assert order.index("b") < len(order) - 1 - order[::-1].index("a")
        # A finished id can be used again, on the same socket.
        await send(ws, prompt("a", "third question", max_tokens=3))
        again = await until_terminal(ws, "a")
        assert [m["type"] for m in again] == ["start", "delta", "delta", "delta", "done"]
        assert again[-1]["outcome"] == "max_tokens"

    run_with_socket(make_app, serve, body)


def test_cancel_stops_the_provider_mid_generation_and_the_socket_stays_usable(
    make_app: AppFactory, serve: ServeFactory, log_capture: LogCapture
) -> None:
    provider = MockProvider(token_delay_s=0.02)

    async def body(ws: ClientConnection) -> None:
        await send(ws, prompt("long", "tell me everything"))
        assert (await receive(ws))["type"] == "start"
        for _ in range(3):
            assert (await receive(ws))["type"] == "delta"
        await send(ws, {"type": "cancel", "id": "long"})
        tail = await until_terminal(ws, "long")
        error = tail[-1]
        assert error["type"] == "error"
        assert error["error"]["code"] == "cancelled"
        # The server replies only once the session has closed: the provider is already released.
        assert provider.active_streams == 0
        emitted = provider.tokens_emitted
        ends = log_capture.stream_ends
        assert [(e["outcome"], e["dialect"]) for e in ends] == [("cancelled", "ws")]
        # Another prompt on the same socket: nothing more for "long", and the provider emitted only its 3.
        await send(ws, prompt("short", "next", max_tokens=3))
        after = await until_terminal(ws, "short")
        assert of(after, "long") == []
        assert after[-1]["type"] == "done"
        assert provider.tokens_emitted == emitted + 3

    run_with_socket(make_app, serve, body, provider=provider)


def test_closing_the_socket_cancels_every_prompt_in_flight(
    make_app: AppFactory, serve: ServeFactory, log_capture: LogCapture
) -> None:
    provider = MockProvider(token_delay_s=0.02)

    async def body(ws: ClientConnection) -> None:
        await send(ws, prompt("a", "one"))
        await send(ws, prompt("b", "two"))
        seen: set[str] = set()
        while seen != {"a", "b"}:
            message = await receive(ws)
            if message["type"] == "delta":
                seen.add(message["id"])
        await ws.close()
        ends = await asyncio.to_thread(log_capture.wait_for, "stream_end", 2)
        assert [e["outcome"] for e in ends] == ["cancelled", "cancelled"]
        assert provider.active_streams == 0

    run_with_socket(make_app, serve, body, provider=provider)


def test_a_failure_before_the_first_token_is_an_error_without_start(
    make_app: AppFactory, serve: ServeFactory
) -> None:
    async def body(ws: ClientConnection) -> None:
        await send(ws, prompt("r", "hi", mock={"error": "rate_limit"}))
        (error,) = await until_terminal(ws, "r")
        assert error == {
            "type": "error",
            "id": "r",
            "error": {
                "message": "mock rate limit: slow down and retry",
                "type": "rate_limit_error",
                "code": "rate_limit_exceeded",
                "param": None,
            },
        }

    run_with_socket(make_app, serve, body)


def test_a_failure_mid_stream_ends_with_an_error_after_the_deltas(
    make_app: AppFactory, serve: ServeFactory, log_capture: LogCapture
) -> None:
    async def body(ws: ClientConnection) -> None:
        await send(ws, prompt("f", "hi", mock={"fail_after": 3}))
        messages = await until_terminal(ws, "f")
        assert [m["type"] for m in messages] == ["start", "delta", "delta", "delta", "error"]
        assert messages[-1]["error"]["code"] == "upstream_stream_error"
        (end,) = await asyncio.to_thread(log_capture.wait_for, "stream_end", 1)
        assert end["outcome"] == "error"

    run_with_socket(make_app, serve, body)


MALFORMED: list[tuple[str, str | bytes, str | None, str, str | None]] = [
    # (case, raw message, id the error is addressed to, code, param)
    ("not json", "hello?", None, "invalid_json", None),
    ("not utf-8", b'{"type": "cancel", "id": "\xff"}', None, "invalid_encoding", None),
    ("not an object", "[1, 2]", None, "invalid_value", None),
    ("no type", '{"id": "m1"}', "m1", "invalid_value", "type"),
    ("unknown type", '{"type": "launch", "id": "m1"}', "m1", "invalid_value", "type"),
    ("no messages", '{"type": "prompt", "id": "m1"}', "m1", "invalid_value", "messages"),
    ("empty messages", '{"type": "prompt", "id": "m1", "messages": []}', "m1", "invalid_value", "messages"),
    (
        "unknown role",
        '{"type": "prompt", "id": "m1", "messages": [{"role": "wizard", "content": "hi"}]}',
        "m1",
        "invalid_value",
        "messages[0].role",
    ),
    (
        "unknown field",
        '{"type": "prompt", "id": "m1", "messages": [{"role": "user", "content": "hi"}], "temperature": 1}',
        "m1",
        "invalid_value",
        "temperature",
    ),
    (
        "id not a string",
        '{"type": "prompt", "id": 7, "messages": [{"role": "user", "content": "hi"}]}',
        None,
        "invalid_value",
        "id",
    ),
    (
        "unknown model",
        '{"type": "prompt", "id": "m1", "messages": [{"role": "user", "content": "hi"}], "model": "gpt-9"}',
        "m1",
        "model_not_found",
        "model",
    ),
    (
        "bad mock directive",
        '{"type": "prompt", "id": "m1", "messages": [{"role": "user", "content": "hi"}], "mock": {"nap": 1}}',
        "m1",
        "invalid_value",
        "mock.nap",
    ),
    ("cancel of an unknown id", '{"type": "cancel", "id": "m1"}', "m1", "stream_not_found", "id"),
]


@pytest.mark.parametrize(
    ("raw", "prompt_id", "code", "param"),
    [case[1:] for case in MALFORMED],
    ids=[case[0] for case in MALFORMED],
)
def test_a_malformed_message_gets_an_error_and_the_socket_stays_usable(
    make_app: AppFactory,
    serve: ServeFactory,
    raw: str | bytes,
    prompt_id: str | None,
    code: str,
    param: str | None,
) -> None:
    async def body(ws: ClientConnection) -> None:
        await ws.send(raw)
        error = await receive(ws)
        assert error["type"] == "error"
        assert error.get("id") == prompt_id
        assert error["error"]["code"] == code
        assert error["error"]["type"] == "invalid_request_error"
        assert error["error"]["param"] == param
        await send(ws, prompt("ok", "still there?", max_tokens=2))
        messages = await until_terminal(ws, "ok")
        assert messages[-1]["type"] == "done"

    run_with_socket(make_app, serve, body)


def test_a_message_over_the_size_limit_is_refused(make_app: AppFactory, serve: ServeFactory) -> None:
    async def body(ws: ClientConnection) -> None:
        await send(ws, prompt("big", "x" * 2000))
        error = await receive(ws)
        assert (error["id"], error["error"]["code"]) == ("big", "request_too_large")

    run_with_socket(make_app, serve, body, max_body_bytes=1024)


def test_a_prompt_reusing_an_id_in_flight_is_refused_and_the_first_continues(
    make_app: AppFactory, serve: ServeFactory
) -> None:
    async def body(ws: ClientConnection) -> None:
        await send(ws, prompt("dup", "first", max_tokens=5, mock={"delay_ms": 20}))
        assert (await receive(ws))["type"] == "start"
        await send(ws, prompt("dup", "second"))
        messages = await until_terminal(ws, "dup")
        errors = [m for m in messages if m["type"] == "error"]
        assert [e["error"]["code"] for e in errors] == ["duplicate_id"]
        if messages[-1]["type"] == "error":  # the refusal came last: the first prompt is still going
            messages += await until_terminal(ws, "dup")
        assert messages[-1]["type"] == "done"
        assert text_of(messages) == "".join(expected_tokens("first")[:5])

    run_with_socket(make_app, serve, body)


def test_prompts_in_flight_per_socket_are_bounded(make_app: AppFactory, serve: ServeFactory) -> None:
    async def body(ws: ClientConnection) -> None:
        for index in range(MAX_IN_FLIGHT + 1):
            await send(ws, prompt(f"p{index}", "wait", mock={"stall_ms": 10_000}))
        error = await receive(ws)
        assert (error["id"], error["error"]["code"]) == (f"p{MAX_IN_FLIGHT}", "too_many_streams")

    run_with_socket(make_app, serve, body)


API_KEYS = (Secret("sesame"),)


@pytest.mark.parametrize(
    ("query", "headers", "first"),
    [
        ("?api_key=sesame", None, None),
        ("", {"Authorization": "Bearer sesame"}, None),
        ("", None, {"type": "auth", "api_key": "sesame"}),
    ],
    ids=["query parameter", "authorization header", "first message"],
)
def test_a_valid_api_key_opens_the_socket(
    make_app: AppFactory,
    serve: ServeFactory,
    query: str,
    headers: dict[str, str] | None,
    first: Message | None,
) -> None:
    async def body(ws: ClientConnection) -> None:
        if first is not None:
            await send(ws, first)
        await send(ws, prompt("k", "hi", max_tokens=2))
        messages = await until_terminal(ws, "k")
        assert messages[-1]["type"] == "done"

    run_with_socket(make_app, serve, body, query=query, headers=headers, api_keys=API_KEYS)


@pytest.mark.parametrize(
    ("query", "first", "reason"),
    [
        ("?api_key=wrong", None, "invalid API key"),
        ("", {"type": "auth", "api_key": "wrong"}, "invalid API key"),
        ("", {"type": "prompt", "id": "x", "messages": user("hi")}, "missing API key"),
        ("", "not json", "missing API key"),
    ],
    ids=["wrong query parameter", "wrong first message", "prompt before auth", "garbage before auth"],
)
def test_a_missing_or_wrong_api_key_closes_the_socket_with_4401(
    make_app: AppFactory,
    serve: ServeFactory,
    provider: MockProvider,
    query: str,
    first: Message | str | None,
    reason: str,
) -> None:
    async def body(ws: ClientConnection) -> None:
        if isinstance(first, dict):
            await send(ws, first)
        elif first is not None:
            await ws.send(first)
        error = await receive(ws)
        assert error["type"] == "error"
        assert error["error"]["type"] == "authentication_error"
        assert error["error"]["message"].startswith(reason)
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == CLOSE_UNAUTHORIZED
        assert closed.value.rcvd.reason.startswith(reason)
        assert provider.tokens_emitted == 0

    run_with_socket(make_app, serve, body, query=query, api_keys=API_KEYS)


def test_a_binary_frame_holding_json_is_a_message_too(make_app: AppFactory, serve: ServeFactory) -> None:
    async def body(ws: ClientConnection) -> None:
        await ws.send(json.dumps(prompt("bin", "hi", max_tokens=2)).encode())
        messages = await until_terminal(ws, "bin")
        assert [m["type"] for m in messages] == ["start", "delta", "delta", "done"]

    run_with_socket(make_app, serve, body)


def test_a_page_of_the_same_origin_may_open_the_socket(make_app: AppFactory, serve: ServeFactory) -> None:
    async def body(ws: ClientConnection) -> None:
        await send(ws, prompt("o", "hi", max_tokens=2))
        assert (await until_terminal(ws, "o"))[-1]["type"] == "done"

    run_with_socket(make_app, serve, body, origin="{server}")


def test_a_page_of_another_origin_is_refused_with_4403(
    make_app: AppFactory, serve: ServeFactory, provider: MockProvider
) -> None:
    async def body(ws: ClientConnection) -> None:
        error = await receive(ws)
        assert error["error"]["code"] == "cross_origin"
        assert error["error"]["type"] == "permission_error"
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == CLOSE_FORBIDDEN
        assert provider.active_streams == 0

    run_with_socket(make_app, serve, body, origin="http://attacker.example")


def test_every_prompt_cancelled_even_before_it_starts_logs_one_stream_end(
    make_app: AppFactory, serve: ServeFactory, log_capture: LogCapture
) -> None:
    # A prompt and its cancel in one write: the server often reads the cancel before the prompt's task has
    # run a single step. One `stream_end` line per accepted prompt, on every path.
    count = 60

    async def body(ws: ClientConnection) -> None:
        for index in range(count):
            await ws.send(json.dumps(prompt(f"p{index}", "hello")))
            await ws.send(json.dumps({"type": "cancel", "id": f"p{index}"}))
        ids = [f"p{index}" for index in range(count)]
        replies = await until_terminal(ws, *ids)
        assert {reply["id"] for reply in replies if reply["type"] == "error"} == set(ids)

    run_with_socket(make_app, serve, body, provider=MockProvider(token_delay_s=0.01))

    ends = log_capture.wait_for("stream_end", count)
    assert len(ends) == count
    assert {end["outcome"] for end in ends} == {"cancelled"}
