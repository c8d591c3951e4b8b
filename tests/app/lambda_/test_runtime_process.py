"""The streaming runtime as Lambda runs it: the wrapper script execs the interpreter on our loop, in a child
process with Lambda's environment, talking HTTP to a fake Runtime API on loopback.

What only a real process shows: the exact bytes and headers on the wire, chunks leaving while the
provider still works, one start-up for many invocations, and the init-error path of a process that
cannot even import the app.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.app.lambda_.conftest import StartRuntime, deadline_budget_s, function_url_event, load_event
from tests.app.lambda_.fake_runtime_api import DELIMITER, PREFIX, FakeRuntimeApi, Request
from tests.support.sse import Frame, events, parse_frames

PROMPT = "Explain server-sent events"


def stream_event(max_tokens: int, **mock: Any) -> dict[str, Any]:
    body = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": max_tokens, "mock": mock}
    return function_url_event("POST", "/v1/stream", body)


def frames_of(response: Request) -> list[Frame]:
    _, body = response.split_prelude()
    return events(parse_frames(body))


def test_a_stream_leaves_chunk_by_chunk_behind_the_prelude(
    fake: FakeRuntimeApi, start_runtime: StartRuntime
) -> None:
    start_runtime()
    request_id = fake.invoke(stream_event(15, delay_ms=40))

    response = fake.response(request_id, timeout_s=30)

    assert response.method == "POST"
    assert response.path == f"{PREFIX}/invocation/{request_id}/response"
    assert response.header("Lambda-Runtime-Function-Response-Mode") == "streaming"
    assert response.header("Transfer-Encoding") == "chunked"
    assert response.header("Content-Type") == "application/vnd.awslambda.http-integration-response"
    assert (
        response.header("Trailer") == "Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body"
    )
    assert response.header("Content-Length") is None
    # The prelude is the first chunk on its own, ends with exactly the delimiter, and holds no NUL.
    first = response.chunks[0].data
    assert first.endswith(DELIMITER)
    assert first.index(DELIMITER) == len(first) - 8
    prelude = json.loads(first[:-8])
    assert prelude["statusCode"] == 200
    assert prelude["headers"]["content-type"] == "text/event-stream; charset=utf-8"
    assert prelude["headers"]["cache-control"] == "no-cache, no-transform"
    assert prelude["headers"]["x-stream-id"]
    assert prelude["cookies"] == []

    frames = frames_of(response)
    assert [f.event for f in frames] == ["start"] + ["delta"] * 15 + ["done"]
    # Paced 40 ms apart, no two deltas were ever queued together: one HTTP chunk each, written when it was
    # made (the terminal event, queued right behind the last delta, may share that one's chunk).
    per_chunk = [c.data.count(b"event: delta") for c in response.chunks[1:]]
    assert [n for n in per_chunk if n] == [1] * 15
    first_delta = next(c for c in response.chunks if b"event: delta" in c.data)
    done = response.chunks[-1]
    assert b"event: done" in done.data
    # 15 tokens 40 ms apart: the first one arrived ~0.56 s before the provider finished.
    assert done.at - first_delta.at > 0.4
    assert response.trailers == {}


def test_one_process_serves_many_invocations_and_starts_once(
    fake: FakeRuntimeApi, start_runtime: StartRuntime
) -> None:
    runtime = start_runtime()
    stream_id = fake.invoke(load_event("function-url-stream.json"))
    chat_id = fake.invoke(load_event("function-url-chat.json"), chunked_event=True)
    models_id = fake.invoke(function_url_event("GET", "/v1/models"))
    rest_id = fake.invoke(load_event("api-gateway-rest.json"))

    stream = frames_of(fake.response(stream_id, timeout_s=30))
    chat = frames_of(fake.response(chat_id))
    models_prelude, models_body = fake.response(models_id).split_prelude()
    rest = frames_of(fake.response(rest_id))

    assert stream[0].event == "start"
    assert stream[-1].event == "done"
    assert chat[0].json()["object"] == "chat.completion.chunk"
    assert chat[-1].data == "[DONE]"
    assert models_prelude["statusCode"] == 200
    assert models_prelude["headers"]["content-type"].startswith("application/json")
    assert json.loads(models_body)["data"][0]["id"] == "mock"
    assert [f.event for f in rest][:: len(rest) - 1] == ["start", "done"]
    # Four invocations, then the poll that waits for a fifth: the same process throughout.
    fake.wait_for_arrival(f"GET {PREFIX}/invocation/next", count=5)
    assert runtime.process.poll() is None
    runtime.process.terminate()
    assert runtime.wait() == 0
    logs = runtime.logs()
    assert [entry["event"] for entry in logs].count("lambda_runtime_ready") == 1
    assert [entry["event"] for entry in logs].count("lambda_invocation_end") == 4


def test_a_mid_stream_failure_ends_with_an_in_band_error_and_error_trailers(
    fake: FakeRuntimeApi, start_runtime: StartRuntime
) -> None:
    start_runtime()
    request_id = fake.invoke(stream_event(40, fail_after=3))

    response = fake.response(request_id, timeout_s=30)

    frames = frames_of(response)
    assert [f.event for f in frames] == ["start", "delta", "delta", "delta", "error"]
    assert frames[-1].json()["error"]["code"] == "upstream_stream_error"
    assert response.trailers["lambda-runtime-function-error-type"] == "Function.StreamError"
    error = response.error_body()
    assert error["errorType"] == "upstream_stream_error"
    assert "mock failure injected after 3 deltas" in error["errorMessage"]
    assert error["stackTrace"] == []


def test_a_failure_before_the_first_byte_is_a_status_not_a_stream_error(
    fake: FakeRuntimeApi, start_runtime: StartRuntime
) -> None:
    start_runtime()
    request_id = fake.invoke(stream_event(10, error="rate_limit"))

    response = fake.response(request_id, timeout_s=30)

    prelude, body = response.split_prelude()
    assert prelude["statusCode"] == 429
    assert prelude["headers"]["retry-after"] == "1"
    assert json.loads(body)["error"]["code"] == "rate_limit_exceeded"
    assert response.trailers == {}


def test_events_that_cannot_stream_are_invocation_errors_and_the_runtime_carries_on(
    fake: FakeRuntimeApi, start_runtime: StartRuntime
) -> None:
    start_runtime()
    alb_id = fake.invoke(load_event("alb.json"))
    garbage_id = fake.invoke(b"{not json")
    good_id = fake.invoke(stream_event(3))

    for request_id in (alb_id, garbage_id):
        error = fake.error(request_id, timeout_s=30)
        assert error.header("Lambda-Runtime-Function-Error-Type") == "Function.UnsupportedEvent"
        assert error.header("Content-Type") == "application/json"
        document = error.json()
        assert set(document) == {"errorType", "errorMessage", "stackTrace"}
        assert document["errorType"] == "Function.UnsupportedEvent"
    assert "function URL" in fake.error(alb_id).json()["errorMessage"]
    assert frames_of(fake.response(good_id))[-1].event == "done"
    posted = [p for p in fake.paths() if p.startswith("POST")]
    assert f"POST {PREFIX}/invocation/{alb_id}/response" not in posted


def test_the_stream_ends_in_band_before_the_invocation_deadline(
    fake: FakeRuntimeApi, start_runtime: StartRuntime
) -> None:
    start_runtime(LAMBDA_DEADLINE_MARGIN_S="1.5")
    # Lambda would kill this invocation 2.5 s after it started; the stream must end 1.5 s earlier.
    request_id = fake.invoke(stream_event(1000, delay_ms=50), budget_s=2.5)

    response = fake.response(request_id, timeout_s=30)
    frames = frames_of(response)
    assert frames[0].event == "start"
    assert frames[-1].event == "error"
    error = frames[-1].json()["error"]
    assert error["code"] == "deadline"
    assert frames[1].event == "delta"  # some deltas, then the deadline
    # The budget that ran out is what was left of Lambda's 2.5 s less the margin, not STREAM_DEADLINE_S.
    assert 0 < deadline_budget_s(error["message"]) <= 1.0
    # A budget that ran out is an expected ending, not a fault of the function: no error trailers.
    assert "lambda-runtime-function-error-type" not in response.trailers


def test_a_configuration_error_goes_to_init_error_and_ends_the_process(
    fake: FakeRuntimeApi, start_runtime: StartRuntime
) -> None:
    runtime = start_runtime(PROVIDER="bogus")

    report = fake.wait_for(lambda r: r.path == f"{PREFIX}/init/error", timeout_s=30)

    assert runtime.wait() == 1
    assert report.header("Lambda-Runtime-Function-Error-Type") == "Runtime.ConfigurationError"
    assert "PROVIDER='bogus'" in report.json()["errorMessage"]
    assert not [p for p in fake.paths() if p.endswith("/invocation/next")]


def test_an_import_error_goes_to_init_error(
    fake: FakeRuntimeApi, start_runtime: StartRuntime, tmp_path: Path
) -> None:
    broken = tmp_path / "shadow" / "litestar"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('litestar is missing from the package')\n")
    runtime = start_runtime(PYTHONPATH=str(broken.parent))

    report = fake.wait_for(lambda r: r.path == f"{PREFIX}/init/error", timeout_s=30)

    assert runtime.wait() == 1
    assert report.header("Lambda-Runtime-Function-Error-Type") == "Runtime.ImportModuleError"
    document = report.json()
    assert "litestar is missing from the package" in document["errorMessage"]
    assert document["stackTrace"]


def test_snap_start_waits_for_the_restore_before_the_first_invocation(
    fake: FakeRuntimeApi, start_runtime: StartRuntime
) -> None:
    start_runtime(AWS_LAMBDA_INITIALIZATION_TYPE="snap-start")
    request_id = fake.invoke(stream_event(2))

    fake.wait_for_arrival(f"GET {PREFIX}/restore/next", timeout_s=30)
    # Init is done and the snapshot would be taken now: no invocation may be fetched before the restore.
    assert f"GET {PREFIX}/invocation/next" not in fake.paths()
    fake.release_restore()

    assert frames_of(fake.response(request_id))[-1].event == "done"
    paths = fake.paths()
    assert paths.index(f"GET {PREFIX}/restore/next") < paths.index(f"GET {PREFIX}/invocation/next")


def test_the_responses_api_streams_through_the_same_runtime(
    fake: FakeRuntimeApi, start_runtime: StartRuntime
) -> None:
    start_runtime(MOCK_TOKEN_DELAY_MS="40")
    request_id = fake.invoke(load_event("function-url-responses.json"))

    response = fake.response(request_id, timeout_s=30)

    prelude = json.loads(response.chunks[0].data[:-8])
    assert prelude["statusCode"] == 200
    assert prelude["headers"]["content-type"] == "text/event-stream; charset=utf-8"
    frames = frames_of(response)
    kinds = [f.event for f in frames]
    assert kinds.count("response.output_text.delta") == 24  # the event's max_output_tokens
    assert kinds[0] == "response.created"
    assert kinds[-1] == "response.incomplete"  # the token budget ended it
    # Each delta left as its own chunk, while the provider was still producing the next.
    deltas = [c for c in response.chunks if b"response.output_text.delta" in c.data]
    assert len(deltas) == 24
    assert deltas[-1].at - deltas[0].at > 0.2
