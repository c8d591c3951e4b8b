"""A stream id the client chooses (`X-Stream-Id`): it can cancel the stream while it waits for the first
token, before any header of the response has come back (on Lambda a closed connection is never seen)."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import httpx
import pytest

from app.http.state import services_of
from tests.app.conftest import AppFactory, LogCapture, ServeFactory
from tests.app.helpers import user
from tests.support.server import RunningServer
from tests.support.timeouts import run_async

# Silent for a minute before its first token: a cancel can only come while the client still waits.
STALLED = {"messages": user("hello"), "mock": {"stall_ms": 60_000}}


async def _cancel_once_registered(client: httpx.AsyncClient, stream_id: str) -> httpx.Response:
    """POST the cancel until the stream exists (the request that starts it may not have reached the
    server yet); a bounded number of tries."""
    for _ in range(200):
        response = await client.post(f"/v1/streams/{stream_id}/cancel")
        if response.status_code != 404:
            return response
        await asyncio.sleep(0.01)
    return response


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/stream", {**STALLED, "resumable": True}),
        ("/v1/stream", STALLED),
        ("/v1/chat/completions", {**STALLED, "stream": True}),
    ],
)
def test_a_stream_is_cancelled_by_its_chosen_id_before_its_first_token(
    make_app: AppFactory, serve: ServeFactory, log_capture: LogCapture, path: str, body: dict[str, Any]
) -> None:
    stream_id = secrets.token_hex(16)

    async def main(server: RunningServer) -> tuple[httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
            streaming = asyncio.create_task(client.post(path, json=body, headers={"X-Stream-Id": stream_id}))
            cancelled = await _cancel_once_registered(client, stream_id)
            return cancelled, await streaming

    with serve(make_app()) as server:
        cancelled, response = run_async(lambda: main(server), timeout_s=30)
        [end] = log_capture.wait_for("stream_end", 1)

    assert cancelled.status_code == 202, cancelled.text
    assert end["request_id"] == stream_id
    assert end["outcome"] == "cancelled"
    assert end["completion_tokens"] == 0
    # Cancelled before its first token: answered as any failure before it is, a status with its reason.
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "cancelled"


def test_the_chosen_id_is_the_streams_id_everywhere(make_app: AppFactory, serve: ServeFactory) -> None:
    stream_id = "page-" + secrets.token_hex(16)
    with serve(make_app()) as server:
        body = {"messages": user("hello"), "resumable": True}
        response = httpx.post(f"{server.base_url}/v1/stream", json=body, headers={"X-Stream-Id": stream_id})
        resumed = httpx.get(f"{server.base_url}/v1/streams/{stream_id}/events")

    assert response.headers["x-stream-id"] == stream_id
    assert f'"stream_id":"{stream_id}"' in response.text
    assert resumed.status_code == 200
    assert resumed.text == response.text


@pytest.mark.parametrize("chosen", ["", "short", "has spaces in it, 16+", "x" * 129, "ünïcode-ünïcode-ü"])
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/stream", {"messages": user("hello")}),
        ("/v1/chat/completions", {"messages": user("hello")}),  # a whole answer: named all the same
        ("/v1/responses", {"input": "hello", "stream": True}),
    ],
)
def test_a_malformed_chosen_id_is_a_400_naming_the_header(
    make_app: AppFactory, serve: ServeFactory, chosen: str, path: str, body: dict[str, Any]
) -> None:
    with serve(make_app()) as server:
        response = httpx.post(
            f"{server.base_url}{path}", json=body, headers={b"X-Stream-Id": chosen.encode()}
        )

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "X-Stream-Id"


def test_an_id_still_running_cannot_be_chosen_again(make_app: AppFactory, serve: ServeFactory) -> None:
    stream_id = secrets.token_hex(16)
    app = make_app()
    cancels = services_of(app.state).cancels

    async def main(server: RunningServer) -> httpx.Response:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
            headers = {"X-Stream-Id": stream_id}
            first = asyncio.create_task(client.post("/v1/stream", json=STALLED, headers=headers))
            for _ in range(200):  # until the first stream runs
                if cancels.is_live(stream_id):
                    break
                await asyncio.sleep(0.01)
            second = await client.post("/v1/stream", json=STALLED, headers=headers)
            await client.post(f"/v1/streams/{stream_id}/cancel")
            await first
            return second

    with serve(app) as server:
        second = run_async(lambda: main(server), timeout_s=30)

    assert second.status_code == 400
    assert second.json()["error"]["code"] == "duplicate_id"
    assert second.json()["error"]["param"] == "X-Stream-Id"
