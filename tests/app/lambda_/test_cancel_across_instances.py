"""An explicit cancel on Lambda: the client's `POST /v1/streams/{id}/cancel` reaches another instance
(the streaming one is busy: one request per instance), which records it in DynamoDB; the streaming
instance sees it between chunks and ends the stream in-band with code `cancelled`.

Two runtimes in one process, each with its own fake Runtime API and its own registry object, share
only the (moto) table, as two Lambda instances would.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from litestar import Litestar

from app.factory import build_cancel_registry, create_app
from app.lambda_.context import FunctionInfo, with_invocation_deadline
from app.lambda_.runtime_api import RuntimeApiClient
from app.lambda_.streaming import StreamingRuntime
from app.settings import Settings
from app.stream.cancel.dynamodb import DynamoDBCancelRegistry
from providers.mock import MockProvider
from tests.app.lambda_.conftest import function_url_event
from tests.app.lambda_.fake_runtime_api import DELIMITER, FakeRuntimeApi, running_fake
from tests.support.sse import events, parse_frames
from tests.support.timeouts import run_async


class Instance:
    """One Lambda instance: an app with its own registry, and a runtime on its own Runtime API."""

    def __init__(self, settings: Settings, fake: FakeRuntimeApi) -> None:
        cancels = build_cancel_registry(settings)
        assert isinstance(cancels, DynamoDBCancelRegistry)  # CANCEL_TABLE is set, as on Lambda
        self.cancels = cancels
        app: Litestar = create_app(settings, MockProvider(), cancels=self.cancels)
        self.client = RuntimeApiClient(fake.address)
        self.runtime = StreamingRuntime(
            with_invocation_deadline(app, 2.0), self.client, FunctionInfo.from_environ({})
        )

    async def serve_one(self) -> None:
        await self.runtime.handle(await self.client.next_invocation())


def start_event(chunks: list[bytes]) -> dict[str, Any]:
    frame = next(f for f in events(parse_frames(b"".join(c for c in chunks if b"event: start" in c))))
    decoded: dict[str, Any] = frame.json()
    return decoded


def test_a_cancel_served_by_another_instance_ends_the_stream_in_band(cancel_table: str) -> None:
    settings = Settings(cancel_table=cancel_table, cancel_poll_interval_s=0.05)
    body = {
        "messages": [{"role": "user", "content": "a long answer"}],
        "max_tokens": 2000,
        "mock": {"delay_ms": 20},
    }

    with running_fake() as fake_a, running_fake() as fake_b:
        streaming, other = Instance(settings, fake_a), Instance(settings, fake_b)
        stream_request = fake_a.invoke(function_url_event("POST", "/v1/stream", body))

        async def scenario() -> tuple[str, str, str]:
            serving = asyncio.create_task(streaming.serve_one())
            started = await asyncio.to_thread(fake_a.wait_for_chunk, stream_request, b"event: start")
            stream_id = start_event([c.data for c in started.chunks])["stream_id"]
            await streaming.cancels.flush()  # the registration is in the table
            unknown = fake_b.invoke(function_url_event("POST", "/v1/streams/not-a-stream/cancel"))
            await other.serve_one()
            cancel = fake_b.invoke(function_url_event("POST", f"/v1/streams/{stream_id}/cancel"))
            await other.serve_one()
            await serving
            return stream_id, unknown, cancel

        stream_id, unknown, cancel = run_async(scenario, timeout_s=30)

        refused_prelude, refused_body = fake_b.response(unknown).split_prelude()
        accepted_prelude, accepted_body = fake_b.response(cancel).split_prelude()
        stream = fake_a.response(stream_request)

    assert refused_prelude["statusCode"] == 404
    assert json.loads(refused_body)["error"]["code"] == "stream_not_found"
    assert accepted_prelude["statusCode"] == 202
    assert json.loads(accepted_body)["stream_id"] == stream_id
    frames = events(parse_frames(stream.split_prelude()[1]))
    assert frames[-1].event == "error"
    assert frames[-1].json()["error"]["code"] == "cancelled"
    assert len(frames) < 500  # stopped long before the 2,000 tokens
    assert stream.trailers == {}  # a cancel is the client's wish, not a failure of the function


def test_the_ai_sdk_stream_cancelled_from_another_instance_ends_with_an_abort(cancel_table: str) -> None:
    # `useChat`'s Stop on Lambda: the function never hears of the closed connection, so the page's cancel
    # request (served by another instance) is what ends the stream, in the AI SDK's own words.
    settings = Settings(cancel_table=cancel_table, cancel_poll_interval_s=0.05)
    body = {
        "messages": [{"id": "u-1", "role": "user", "parts": [{"type": "text", "text": "a long answer"}]}],
        "max_tokens": 2000,
        "mock": {"delay_ms": 20},
    }

    with running_fake() as fake_a, running_fake() as fake_b:
        streaming, other = Instance(settings, fake_a), Instance(settings, fake_b)
        stream_request = fake_a.invoke(function_url_event("POST", "/api/chat", body))

        async def scenario() -> str:
            serving = asyncio.create_task(streaming.serve_one())
            started = await asyncio.to_thread(fake_a.wait_for_chunk, stream_request, b'"type":"text-delta"')
            await streaming.cancels.flush()
            sent = b"".join(chunk.data for chunk in started.chunks).partition(DELIMITER)[2]
            stream_id: str = events(parse_frames(sent))[0].json()["messageMetadata"]["stream_id"]
            cancel = fake_b.invoke(function_url_event("POST", f"/v1/streams/{stream_id}/cancel"))
            await other.serve_one()
            await serving
            return cancel

        cancel = run_async(scenario, timeout_s=30)
        accepted_prelude, _ = fake_b.response(cancel).split_prelude()
        stream = fake_a.response(stream_request)

    assert accepted_prelude["statusCode"] == 202
    frames = events(parse_frames(stream.split_prelude()[1]))
    assert frames[-1].data == "[DONE]"
    assert frames[-2].json() == {"type": "abort", "reason": "stream cancelled by request"}
    assert len(frames) < 500  # stopped long before the 2,000 tokens
    assert stream.trailers == {}
