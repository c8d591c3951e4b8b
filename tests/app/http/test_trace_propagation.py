"""A request's `traceparent` reaches the OpenAI upstream (the SDK faked at its HTTP transport only) and
every log line of its stream, and no other request's."""

from __future__ import annotations

from litestar.testing import TestClient

from tests.app.conftest import AppFactory, LogCapture
from tests.app.helpers import user
from tests.app.metrics.support import formatted_lines
from tests.providers.fake_upstream import FakeUpstream, echo_stream

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_the_traceparent_goes_upstream_and_onto_the_streams_log_lines(
    make_app: AppFactory, log_capture: LogCapture
) -> None:
    upstream = FakeUpstream(echo_stream)
    app = make_app(upstream.provider(), log_prompts=True)
    body = {"model": "gpt-4o-mini", "messages": user("hello"), "stream": True}
    with TestClient(app) as client:
        traced = client.post("/v1/chat/completions", json=body, headers={"traceparent": PARENT})
        untraced = client.post("/v1/chat/completions", json=body)

    assert (traced.status_code, untraced.status_code) == (200, 200)
    first, second = upstream.requests
    assert first.headers["traceparent"] == PARENT
    assert "traceparent" not in second.headers
    prompts = formatted_lines(log_capture.records, "stream_prompt")
    ends = formatted_lines(log_capture.records, "stream_end")
    assert [line.get("traceparent") for line in prompts] == [PARENT, None]
    assert [line.get("traceparent") for line in ends] == [PARENT, None]


def test_a_malformed_traceparent_is_not_sent_upstream_and_fails_nothing(make_app: AppFactory) -> None:
    upstream = FakeUpstream(echo_stream)
    body = {"model": "gpt-4o-mini", "messages": user("hello"), "stream": True}
    with TestClient(make_app(upstream.provider())) as client:
        response = client.post("/v1/chat/completions", json=body, headers={"traceparent": "garbage"})

    assert response.status_code == 200
    assert "traceparent" not in upstream.requests[0].headers
