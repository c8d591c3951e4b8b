"""Resumable streams over a real server (uvicorn on 127.0.0.1): drop the connection mid-answer, resume
from another client by `Last-Event-ID`, and get the rest of the same answer, in every dialect."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import msgspec
import pytest

from app.settings import Secret
from providers.mock import MockProvider
from tests.app.conftest import AppFactory, LogCapture, ServeFactory
from tests.app.helpers import user
from tests.support.server import RunningServer
from tests.support.sse import Frame, parse_frames
from tests.support.timeouts import run_async

PROMPT = "Explain server-sent events"
# 3 x the answer: well over 120 deltas, 5 ms apart.
PACED = {"delay_ms": 5, "repeat": 3}


def _uninterrupted(server: RunningServer) -> str:
    """The answer's text, from a plain stream of the same request read to its end."""
    body = {"messages": user(PROMPT), "mock": PACED}
    response = httpx.post(f"{server.base_url}/v1/stream", json=body, timeout=10)
    return "".join(_text_of(frame) for frame in parse_frames(response.content))


def _text_of(frame: Frame) -> str:
    """The answer text an event carries, in whichever dialect it is."""
    if not frame.data_lines or frame.data == "[DONE]":
        return ""
    data = frame.json()
    kind = data.get("type")
    if kind == "delta":
        return str(data["text"])
    if kind in ("response.output_text.delta", "text-delta"):
        return str(data["delta"])
    if data.get("choices"):
        return str(data["choices"][0]["delta"].get("content") or "")
    return ""


# (how the stream is started, which frame is its last)
Start = tuple[str, str, dict[str, Any] | None]
DIALECTS: dict[str, Start] = {
    "stream POST": ("POST", "/v1/stream", {"messages": user(PROMPT), "resumable": True, "mock": PACED}),
    "stream GET": (
        "GET",
        "/v1/stream?prompt=Explain%20server-sent%20events&resumable=true&mock=%7B%22delay_ms%22%3A5%2C%22repeat%22%3A3%7D",
        None,
    ),
    "chat.completions": (
        "POST",
        "/v1/chat/completions",
        {"messages": user(PROMPT), "stream": True, "resumable": True, "mock": PACED},
    ),
    "responses": (
        "POST",
        "/v1/responses",
        {"input": PROMPT, "stream": True, "resumable": True, "mock": PACED},
    ),
    "ui-message-stream": (
        "POST",
        "/api/chat",
        {
            "id": "chat-1",
            "messages": [{"id": "m1", "role": "user", "parts": [{"type": "text", "text": PROMPT}]}],
            "mock": PACED,
        },
    ),
}
LAST: dict[str, Callable[[Frame], bool]] = {
    "stream POST": lambda f: f.event == "done",
    "stream GET": lambda f: f.event == "done",
    "chat.completions": lambda f: f.data == "[DONE]",
    "responses": lambda f: f.event == "response.completed",
    "ui-message-stream": lambda f: f.data == "[DONE]",
}


async def _read_some(client: httpx.AsyncClient, start: Start, *, texts: int) -> tuple[str, list[Frame]]:
    """Start a stream and read until `texts` events with text arrived; then drop the connection."""
    method, path, body = start
    frames: list[Frame] = []
    async with client.stream(method, path, json=body) as response:
        assert response.status_code == 200, await response.aread()
        stream_id = response.headers["x-stream-id"]
        buffer = b""
        async for chunk in response.aiter_bytes():
            buffer += chunk
            complete, _, buffer = buffer.rpartition(b"\n\n")
            if complete:
                frames += parse_frames(complete + b"\n\n")
            if sum(bool(_text_of(frame)) for frame in frames) >= texts:
                break
    return stream_id, frames


async def _resume(client: httpx.AsyncClient, stream_id: str, **request: Any) -> httpx.Response:
    return await client.get(f"/v1/streams/{stream_id}/events", **request)


def _ids(frames: list[Frame]) -> list[int]:
    return [int(frame.id) for frame in frames if frame.id is not None]


@pytest.mark.parametrize("dialect", list(DIALECTS))
def test_a_dropped_stream_resumed_by_last_event_id_is_the_whole_answer(
    make_app: AppFactory, serve: ServeFactory, log_capture: LogCapture, dialect: str
) -> None:
    async def body() -> tuple[list[Frame], list[Frame]]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as first:
            stream_id, before = await _read_some(first, DIALECTS[dialect], texts=5)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as second:
            resumed = await _resume(second, stream_id, headers={"Last-Event-ID": str(_ids(before)[-1])})
        assert resumed.status_code == 200
        assert resumed.headers["content-type"].startswith("text/event-stream")
        return before, parse_frames(resumed.content)

    with serve(make_app()) as server:
        before, after = run_async(body, timeout_s=30)
        [end] = log_capture.wait_for("stream_end", 1)
        answer = _uninterrupted(server)

    frames = [frame for frame in before + after if not frame.is_comment]
    # No gap, no duplicate: the ids count 1, 2, … across both connections.
    assert _ids(frames) == list(range(1, len(frames) + 1))
    assert "".join(_text_of(frame) for frame in frames) == answer
    assert LAST[dialect](frames[-1])
    assert end["outcome"] == "completed"


def test_the_start_event_says_the_stream_is_resumable(make_app: AppFactory, serve: ServeFactory) -> None:
    async def body() -> list[Frame]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
            _, frames = await _read_some(client, DIALECTS["stream POST"], texts=1)
            return frames

    with serve(make_app()) as server:
        frames = run_async(body)

    assert frames[0].event == "start"
    assert frames[0].json()["resumable"] is True
    assert frames[0].id == "1"


def test_the_query_id_resumes_and_the_header_wins_over_it(make_app: AppFactory, serve: ServeFactory) -> None:
    async def body() -> tuple[list[Frame], list[Frame]]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
            stream_id, _ = await _read_some(client, DIALECTS["stream POST"], texts=3)
            by_query = await _resume(client, stream_id, params={"last_event_id": "2"})
            both = await _resume(
                client, stream_id, params={"last_event_id": "2"}, headers={"Last-Event-ID": "7"}
            )
        return parse_frames(by_query.content), parse_frames(both.content)

    with serve(make_app()) as server:
        by_query, both = run_async(body, timeout_s=30)

    assert _ids(by_query)[0] == 3
    assert _ids(both)[0] == 8
    assert _ids(by_query)[-1] == _ids(both)[-1]


@pytest.mark.parametrize(
    ("request_fields", "status", "code"),
    [
        ({"params": {"last_event_id": "x"}}, 400, None),
        ({"headers": {"Last-Event-ID": "-1"}}, 400, None),
        ({"params": {"after": "1"}}, 400, None),
    ],
)
def test_a_bad_last_event_id_is_a_400(
    make_app: AppFactory, serve: ServeFactory, request_fields: dict[str, Any], status: int, code: str | None
) -> None:
    async def body() -> httpx.Response:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
            stream_id, _ = await _read_some(client, DIALECTS["stream POST"], texts=1)
            return await _resume(client, stream_id, **request_fields)

    with serve(make_app()) as server:
        response = run_async(body)

    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_an_unknown_an_expired_or_another_keys_stream_is_not_found(
    make_app: AppFactory, serve: ServeFactory
) -> None:
    keys = {"Authorization": "Bearer sk-a"}

    async def body() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10, headers=keys) as client:
            stream_id, _ = await _read_some(client, DIALECTS["stream POST"], texts=1)
            finished = await _resume(client, stream_id)  # to the end: the log is closed
            other = await _resume(client, stream_id, headers={"Authorization": "Bearer sk-b"})
            unknown = await _resume(client, "0" * 24)
            await asyncio.sleep(1.2)
            expired = await _resume(client, stream_id)
        return [finished, other, unknown, expired]

    app = make_app(api_keys=(Secret("sk-a"), Secret("sk-b")), stream_retention_s=1)
    with serve(app) as server:
        finished, other, unknown, expired = run_async(body, timeout_s=30)

    assert finished.status_code == 200
    for response in (other, unknown, expired):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "stream_not_found"


def test_a_stream_nobody_resumes_is_abandoned_after_the_grace_period(
    make_app: AppFactory, serve: ServeFactory, log_capture: LogCapture, provider: MockProvider
) -> None:
    slow = {"messages": user(PROMPT), "resumable": True, "mock": {"delay_ms": 20, "repeat": 20}}
    slow_start: Start = ("POST", "/v1/stream", slow)

    async def body() -> tuple[str, int, httpx.Response]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
            stream_id, _ = await _read_some(client, slow_start, texts=3)
            at_drop = provider.tokens_emitted
            await asyncio.to_thread(log_capture.wait_for, "stream_end", 1, timeout_s=10)
            late = await _resume(client, stream_id, headers={"Last-Event-ID": "1"})
        return stream_id, at_drop, late

    with serve(make_app(resume_grace_s=0.3)) as server:
        _, at_drop, late = run_async(body, timeout_s=30)
        [end] = log_capture.stream_ends

    assert end["outcome"] == "abandoned"
    assert provider.active_streams == 0
    # 0.3 s of grace at 20 ms a token: about 15 more, far from the 1,800 of the whole answer.
    assert provider.tokens_emitted - at_drop < 100
    # A late resume still reads a complete stream: its terminal event says why it ended.
    frames = [frame for frame in parse_frames(late.content) if not frame.is_comment]
    assert frames[-1].event == "error"
    assert frames[-1].json()["error"]["code"] == "abandoned"
    assert _ids(frames)[0] == 2


def test_a_resume_within_the_grace_period_keeps_the_stream_going(
    make_app: AppFactory, serve: ServeFactory, log_capture: LogCapture
) -> None:
    async def body() -> list[Frame]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
            stream_id, before = await _read_some(client, DIALECTS["stream POST"], texts=5)
            await asyncio.sleep(0.2)  # detached, within the grace
            resumed = await _resume(client, stream_id, headers={"Last-Event-ID": str(_ids(before)[-1])})
        return before + parse_frames(resumed.content)

    with serve(make_app(resume_grace_s=2)) as server:
        frames = run_async(body, timeout_s=30)
        [end] = log_capture.stream_ends
        answer = _uninterrupted(server)

    assert end["outcome"] == "completed"
    assert "".join(_text_of(frame) for frame in frames) == answer


def test_an_explicit_cancel_stops_a_resumable_stream_at_once(
    make_app: AppFactory, serve: ServeFactory, log_capture: LogCapture, provider: MockProvider
) -> None:
    async def body() -> list[Frame]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
            stream_id, _ = await _read_some(client, DIALECTS["stream POST"], texts=3)
            cancelled = await client.post(f"/v1/streams/{stream_id}/cancel")
            assert cancelled.status_code == 202
            await asyncio.to_thread(log_capture.wait_for, "stream_end", 1, timeout_s=10)
            resumed = await _resume(client, stream_id)
        return parse_frames(resumed.content)

    with serve(make_app(resume_grace_s=30)) as server:
        frames = run_async(body, timeout_s=30)
        [end] = log_capture.stream_ends

    assert end["outcome"] == "cancelled"
    assert frames[-1].event == "error"
    assert frames[-1].json()["error"]["code"] == "cancelled"
    assert provider.active_streams == 0


def test_a_follower_sends_heartbeats_while_the_provider_is_silent(
    make_app: AppFactory, serve: ServeFactory
) -> None:
    request = {"messages": user(PROMPT), "resumable": True, "mock": {"delay_ms": 300}, "max_tokens": 3}

    with serve(make_app(heartbeat_interval_s=0.05)) as server:
        response = httpx.post(f"{server.base_url}/v1/stream", json=request, timeout=10)

    kinds = ["ping" if frame.is_comment else str(frame.event) for frame in parse_frames(response.content)]
    assert kinds[0] == "start"
    assert "ping" in kinds[1:-1]
    assert kinds[-1] == "done"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"messages": user(PROMPT), "resumable": True}),
        ("/v1/responses", {"input": PROMPT, "resumable": True}),
    ],
)
def test_a_whole_answer_cannot_be_resumable(
    make_app: AppFactory, serve: ServeFactory, path: str, body: dict[str, Any]
) -> None:
    with serve(make_app()) as server:
        response = httpx.post(f"{server.base_url}{path}", json=body, timeout=10)

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "resumable"


def test_the_ai_sdk_resume_url_replays_the_chats_active_stream_or_says_204(
    make_app: AppFactory, serve: ServeFactory
) -> None:
    async def body() -> tuple[httpx.Response, list[Frame], httpx.Response]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
            none = await client.get("/api/chat/chat-1/stream")
            await _read_some(client, DIALECTS["ui-message-stream"], texts=3)
            resumed = await client.get("/api/chat/chat-1/stream")
            after = await client.get("/api/chat/chat-1/stream")
        return none, parse_frames(resumed.content), after

    with serve(make_app()) as server:
        none, resumed, after = run_async(body, timeout_s=30)
        answer = _uninterrupted(server)

    assert none.status_code == 204
    # From its start: the SDK rebuilds the message from the whole stream.
    frames = [frame for frame in resumed if not frame.is_comment]
    assert msgspec.json.decode(frames[0].data)["type"] == "start"
    assert "".join(_text_of(frame) for frame in frames) == answer
    assert frames[-1].data == "[DONE]"
    assert after.status_code == 204  # the stream has ended: nothing to resume
