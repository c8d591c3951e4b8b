"""Resumable prompts over `WS /v1/ws` (uvicorn, the `websockets` client): a dropped socket only detaches,
and a `resume` on a new socket gets the rest of the same answer, with the log's event ids."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from app.settings import Secret
from tests.app.conftest import AppFactory, LogCapture, ServeFactory
from tests.app.helpers import user
from tests.app.http.test_ws import Message, prompt, receive, send, text_of, until_terminal
from tests.support.server import RunningServer
from tests.support.sse import parse_frames
from tests.support.timeouts import run_async

PROMPT = "Explain server-sent events"
# 3 x the answer: well over 120 deltas, 5 ms apart.
PACED = {"delay_ms": 5, "repeat": 3}


def _socket(server: RunningServer, query: str = "") -> Any:
    return connect(f"{server.ws_url}/v1/ws{query}", proxy=None, open_timeout=5)


async def _read_deltas(ws: ClientConnection, prompt_id: str, count: int) -> list[Message]:
    """Messages of `prompt_id` until `count` deltas arrived."""
    received: list[Message] = []
    while sum(m["type"] == "delta" for m in received) < count:
        message = await receive(ws)
        assert message["type"] not in ("done", "error"), message
        received.append(message)
    return received


def _resume(prompt_id: str, stream_id: str, last_event_id: int) -> Message:
    return {"type": "resume", "id": prompt_id, "stream_id": stream_id, "last_event_id": last_event_id}


async def _uninterrupted(server: RunningServer) -> str:
    """The answer's text, from a plain prompt of the same request read to its end."""
    async with _socket(server) as ws:
        await send(ws, prompt("whole", PROMPT, mock=PACED))
        return text_of(await until_terminal(ws, "whole"))


def _run(server_body: Callable[[RunningServer], Awaitable[Any]], serve: ServeFactory, app: Any) -> Any:
    with serve(app) as server:
        return run_async(lambda: server_body(server), timeout_s=30)


def test_a_dropped_socket_resumed_on_a_new_one_gets_the_rest_of_the_same_answer(
    make_app: AppFactory, serve: ServeFactory, log_capture: LogCapture
) -> None:
    async def body(server: RunningServer) -> tuple[list[Message], list[Message], str]:
        async with _socket(server) as first:
            await send(first, prompt("q1", PROMPT, resumable=True, mock=PACED))
            before = await _read_deltas(first, "q1", 5)
        async with _socket(server) as second:
            await send(second, _resume("r1", before[0]["stream_id"], before[-1]["event_id"]))
            after = await until_terminal(second, "r1")
        return before, after, await _uninterrupted(server)

    before, after, answer = _run(body, serve, make_app())
    end, _ = log_capture.wait_for("stream_end", 2)

    start = before[0]
    assert start["type"] == "start"
    assert start["resumable"] is True
    assert {m["id"] for m in before} == {"q1"}
    assert {m["id"] for m in after} == {"r1"}
    messages = before + after
    # No gap, no duplicate: the log's ids count 1, 2, … across both sockets.
    assert [m["event_id"] for m in messages] == list(range(1, len(messages) + 1))
    assert text_of(messages) == answer
    assert after[-1]["type"] == "done"
    assert after[-1]["outcome"] == "completed"
    # One generation: the drop did not cancel it, the resume did not start another.
    assert end["outcome"] == "completed"
    assert end["dialect"] == "ws"
    [resume] = log_capture.wait_for("stream_resume", 1)
    assert (resume["request_id"], resume["dialect"]) == (start["stream_id"], "ws")


def test_a_plain_prompt_carries_no_event_ids(make_app: AppFactory, serve: ServeFactory) -> None:
    async def body(server: RunningServer) -> list[Message]:
        async with _socket(server) as ws:
            await send(ws, prompt("q1", "hello"))
            return await until_terminal(ws, "q1")

    messages = _run(body, serve, make_app())
    assert all("event_id" not in m for m in messages)
    assert "resumable" not in messages[0]


def test_a_resumed_prompt_can_be_cancelled_and_the_generation_stops(
    make_app: AppFactory, serve: ServeFactory, log_capture: LogCapture
) -> None:
    async def body(server: RunningServer) -> list[Message]:
        async with _socket(server) as first:
            await send(first, prompt("q1", PROMPT, resumable=True, mock={"delay_ms": 20, "repeat": 20}))
            before = await _read_deltas(first, "q1", 2)
        async with _socket(server) as second:
            await send(second, _resume("r1", before[0]["stream_id"], before[-1]["event_id"]))
            await _read_deltas(second, "r1", 1)
            await send(second, {"type": "cancel", "id": "r1"})
            return await until_terminal(second, "r1")

    after = _run(body, serve, make_app())
    [end] = log_capture.wait_for("stream_end", 1)

    assert after[-1]["type"] == "error"
    assert after[-1]["error"]["code"] == "cancelled"
    # The terminal event is the log's own: numbered after the deltas, as a later resume would read it.
    assert after[-1]["event_id"] == after[-2]["event_id"] + 1
    assert end["outcome"] == "cancelled"


def test_a_cancel_on_the_first_socket_stops_a_resumable_prompt_at_once(
    make_app: AppFactory, serve: ServeFactory, log_capture: LogCapture
) -> None:
    async def body(server: RunningServer) -> list[Message]:
        async with _socket(server) as ws:
            await send(ws, prompt("q1", PROMPT, resumable=True, mock={"delay_ms": 20, "repeat": 20}))
            await _read_deltas(ws, "q1", 2)
            await send(ws, {"type": "cancel", "id": "q1"})
            return await until_terminal(ws, "q1")

    messages = _run(body, serve, make_app())
    [end] = log_capture.wait_for("stream_end", 1)
    assert messages[-1]["error"]["code"] == "cancelled"
    assert [m for m in messages if m["type"] == "error"] == [messages[-1]]
    assert end["outcome"] == "cancelled"


def test_a_socket_prompt_is_resumable_over_sse_too(make_app: AppFactory, serve: ServeFactory) -> None:
    async def body(server: RunningServer) -> tuple[list[Message], httpx.Response, str]:
        async with _socket(server) as ws:
            await send(ws, prompt("q1", PROMPT, resumable=True, mock=PACED))
            before = await _read_deltas(ws, "q1", 3)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
            resumed = await client.get(
                f"/v1/streams/{before[0]['stream_id']}/events",
                headers={"Last-Event-ID": str(before[-1]["event_id"])},
            )
        return before, resumed, await _uninterrupted(server)

    before, resumed, answer = _run(body, serve, make_app())
    frames = [frame for frame in parse_frames(resumed.content) if not frame.is_comment]
    assert resumed.status_code == 200
    assert int(frames[0].id or 0) == before[-1]["event_id"] + 1
    assert frames[-1].event == "done"
    deltas = [frame.json()["text"] for frame in frames if frame.event == "delta"]
    assert text_of(before) + "".join(deltas) == answer


def test_a_socket_left_alone_abandons_the_prompt_after_the_grace(
    make_app: AppFactory, serve: ServeFactory, log_capture: LogCapture
) -> None:
    async def body(server: RunningServer) -> list[dict[str, Any]]:
        async with _socket(server) as ws:
            await send(ws, prompt("q1", PROMPT, resumable=True, mock={"delay_ms": 20, "repeat": 50}))
            await _read_deltas(ws, "q1", 1)
        # The server still runs: the stream ends itself, not by the shutdown.
        return await asyncio.to_thread(log_capture.wait_for, "stream_end", 1)

    [end] = _run(body, serve, make_app(resume_grace_s=0.2))
    assert end["outcome"] == "abandoned"


@pytest.mark.parametrize(
    ("resume", "code"),
    [
        (_resume("r1", "no-such-stream", 0), "stream_not_found"),
        ({"type": "resume", "id": "r1", "stream_id": "x", "last_event_id": -1}, "invalid_value"),
        ({"type": "resume", "id": "r1"}, "invalid_value"),
    ],
)
def test_a_bad_resume_is_an_error_for_its_id_and_the_socket_stays_usable(
    make_app: AppFactory, serve: ServeFactory, resume: Message, code: str
) -> None:
    async def body(server: RunningServer) -> tuple[Message, list[Message]]:
        async with _socket(server) as ws:
            await send(ws, resume)
            error = await receive(ws)
            await send(ws, prompt("q2", "hello"))
            return error, await until_terminal(ws, "q2")

    error, later = _run(body, serve, make_app())
    assert error["type"] == "error"
    assert error["id"] == "r1"
    assert error["error"]["code"] == code
    assert later[-1]["type"] == "done"


def test_a_stream_of_another_dialect_is_resumed_over_sse_not_the_socket(
    make_app: AppFactory, serve: ServeFactory
) -> None:
    async def body(server: RunningServer) -> Message:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
            chat = {"messages": user("hi"), "stream": True, "resumable": True}
            response = await client.post("/v1/chat/completions", json=chat)
            stream_id = response.headers["x-stream-id"]
        async with _socket(server) as ws:
            await send(ws, _resume("r1", stream_id, 0))
            return await receive(ws)

    error = _run(body, serve, make_app())
    assert error["error"]["code"] is None
    assert error["error"]["param"] == "stream_id"
    assert "GET /v1/streams/" in error["error"]["message"]


def test_another_keys_stream_is_not_found(make_app: AppFactory, serve: ServeFactory) -> None:
    async def body(server: RunningServer) -> Message:
        async with _socket(server, "?api_key=sk-a") as first:
            await send(first, prompt("q1", PROMPT, resumable=True, mock=PACED))
            start = await receive(first)
        async with _socket(server, "?api_key=sk-b") as second:
            await send(second, _resume("r1", start["stream_id"], 0))
            return await receive(second)

    error = _run(body, serve, make_app(api_keys=(Secret("sk-a"), Secret("sk-b"))))
    assert error["error"]["code"] == "stream_not_found"


def test_a_resume_while_its_prompt_id_runs_is_a_duplicate(make_app: AppFactory, serve: ServeFactory) -> None:
    async def body(server: RunningServer) -> Message:
        async with _socket(server) as ws:
            await send(ws, prompt("q1", PROMPT, resumable=True, mock=PACED))
            start = await receive(ws)
            await send(ws, _resume("q1", start["stream_id"], 0))
            while (message := await receive(ws))["type"] != "error":
                pass
            await asyncio.sleep(0)
            return message

    error = _run(body, serve, make_app())
    assert error["error"]["code"] == "duplicate_id"
