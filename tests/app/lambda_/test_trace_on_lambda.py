"""On the streaming runtime, each invocation's X-Ray trace id reaches the provider and the stream's log
lines; the next invocation's lines never carry the previous one's."""

from __future__ import annotations

from app.factory import create_app
from app.lambda_.context import FunctionInfo, with_invocation_deadline
from app.lambda_.runtime_api import RuntimeApiClient
from app.lambda_.streaming import StreamingRuntime
from app.settings import Settings
from tests.app.conftest import LogCapture
from tests.app.helpers import ScriptedProvider, deltas, finish
from tests.app.lambda_.conftest import function_url_event
from tests.app.lambda_.fake_runtime_api import FakeRuntimeApi
from tests.app.metrics.support import assert_valid_emf, formatted_lines
from tests.support.timeouts import run_async

XRAY = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"


def test_each_invocation_traces_its_own_stream(fake: FakeRuntimeApi, log_capture: LogCapture) -> None:
    provider = ScriptedProvider([*deltas("a", "b"), finish(2)], name="scripted")
    app = create_app(Settings(metrics_emf=True), provider)
    event = function_url_event("GET", "/v1/stream", query="prompt=hi")
    first = fake.invoke(event, trace_id=XRAY)
    second = fake.invoke(event, trace_id=None)

    async def body() -> None:
        client = RuntimeApiClient(fake.address)
        runtime = StreamingRuntime(
            with_invocation_deadline(app, 2.0),
            client,
            FunctionInfo.from_environ({"AWS_LAMBDA_FUNCTION_NAME": "f"}),
        )
        await runtime.handle(await client.next_invocation())
        await runtime.handle(await client.next_invocation())

    run_async(body, timeout_s=10)

    assert fake.response(first).split_prelude()[0]["statusCode"] == 200
    assert fake.response(second).split_prelude()[0]["statusCode"] == 200
    traced, untraced = provider.requests
    assert traced.trace is not None
    assert traced.trace.xray == XRAY
    # The second came without one from the runtime: only the header its function URL added is left.
    header = event["headers"]["x-amzn-trace-id"]
    assert untraced.trace is not None
    assert untraced.trace.xray == header != XRAY
    ends = formatted_lines(log_capture.records, "stream_end")
    assert [line.get("xray_trace_id") for line in ends] == [XRAY, header]
    invocation_ends = formatted_lines(log_capture.records, "lambda_invocation_end")
    assert [line.get("xray_trace_id") for line in invocation_ends] == [XRAY, header]
    for line in ends:  # and each is the EMF record CloudWatch extracts the stream's metrics from
        assert_valid_emf(line)
        assert (line["Outcome"], line["StreamsEnded"], line["CompletionTokens"]) == ("completed", 1, 2)
