"""A resume on Lambda: the invocation that produces a resumable stream writes its log to DynamoDB while it
streams; the client's connection drops (here: the test reads what it was sent up to some event and no
further), and its `GET /v1/streams/{id}/events` reaches another instance, which replays the log from the
shared table and follows it to the terminal event.

Two runtimes in one process, each with its own fake Runtime API and its own stream log object, share only
the (moto) table, as two Lambda instances would.
"""

from __future__ import annotations

import asyncio

from litestar import Litestar

from app.factory import build_cancel_registry, build_stream_log, create_app
from app.lambda_.context import FunctionInfo, with_invocation_deadline
from app.lambda_.runtime_api import RuntimeApiClient
from app.lambda_.streaming import StreamingRuntime
from app.settings import Settings
from app.stream.log.dynamodb import DynamoDBStreamLog
from providers.mock import MockProvider
from tests.app.lambda_.conftest import function_url_event
from tests.app.lambda_.fake_runtime_api import DELIMITER, FakeRuntimeApi, running_fake
from tests.support.sse import Frame, events, parse_frames
from tests.support.timeouts import run_async


class Instance:
    """One Lambda instance: an app with its own stream log, and a runtime on its own Runtime API."""

    def __init__(self, settings: Settings, fake: FakeRuntimeApi) -> None:
        stream_log = build_stream_log(settings)
        assert isinstance(stream_log, DynamoDBStreamLog)  # STREAM_TABLE is set, as on Lambda
        app: Litestar = create_app(
            settings, MockProvider(), cancels=build_cancel_registry(settings), stream_log=stream_log
        )
        self.client = RuntimeApiClient(fake.address)
        self.runtime = StreamingRuntime(
            with_invocation_deadline(app, 30.0), self.client, FunctionInfo.from_environ({})
        )

    async def serve_one(self) -> None:
        await self.runtime.handle(await self.client.next_invocation())


def _sent(chunks: list[bytes]) -> list[Frame]:
    """The events in what an invocation has streamed so far (after its prelude)."""
    body = b"".join(chunks).partition(DELIMITER)[2]
    complete = body[: body.rfind(b"\n\n") + 2]
    return events(parse_frames(complete)) if complete else []


def test_a_resume_served_by_another_instance_reads_the_rest_from_the_table(cancel_table: str) -> None:
    settings = Settings(
        cancel_table=cancel_table,
        stream_table=cancel_table,
        stream_log_flush_s=0.05,
        stream_log_poll_s=0.05,
    )
    body = {
        "messages": [{"role": "user", "content": "Explain server-sent events"}],
        "resumable": True,
        "mock": {"delay_ms": 10, "repeat": 2},
    }

    with running_fake() as fake_a, running_fake() as fake_b:
        producing, other = Instance(settings, fake_a), Instance(settings, fake_b)
        stream_request = fake_a.invoke(function_url_event("POST", "/v1/stream", body))

        async def scenario() -> tuple[list[Frame], str]:
            serving = asyncio.create_task(producing.serve_one())
            # The client "drops" once it has the start event and a few deltas: it reads no further.
            seen = await asyncio.to_thread(fake_a.wait_for_chunk, stream_request, b"id: 6\n")
            received = [frame for frame in _sent([c.data for c in seen.chunks]) if int(frame.id or 0) <= 6]
            stream_id = received[0].json()["stream_id"]
            resume = fake_b.invoke(
                function_url_event("GET", f"/v1/streams/{stream_id}/events", query="last_event_id=6")
            )
            await other.serve_one()  # while the producer is still streaming, on instance A
            await serving
            return received, resume

        received, resume = run_async(scenario, timeout_s=60)
        resumed_prelude, resumed_body = fake_b.response(resume).split_prelude()
        produced = fake_a.response(stream_request)

    assert resumed_prelude["statusCode"] == 200
    resumed = events(parse_frames(resumed_body))
    whole = events(parse_frames(produced.split_prelude()[1]))
    # What the client had, then what the other instance replayed and followed: the whole stream, once.
    assert [frame.id for frame in received + resumed] == [str(n) for n in range(1, len(whole) + 1)]
    assert [frame.data for frame in received + resumed] == [frame.data for frame in whole]
    assert resumed[-1].event == "done"
