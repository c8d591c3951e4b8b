"""`GET /metrics`: off unless METRICS=true, behind API_KEYS when set, parsed by prometheus_client's parser;
and the client is never imported unless it is on (the Lambda cold start)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from litestar.routes import HTTPRoute
from litestar.testing import TestClient

from app.settings import Secret
from tests.app.conftest import AppFactory, LogCapture
from tests.app.helpers import user
from tests.app.metrics.support import assert_valid_emf, formatted_lines, sample, samples

ROOT = Path(__file__).resolve().parents[3]
MOCK = {"dialect": "stream", "provider": "mock", "model": "mock"}


def test_there_is_no_metrics_route_unless_it_is_turned_on(make_app: AppFactory) -> None:
    with TestClient(make_app()) as client:
        assert client.get("/metrics").status_code == 404


def test_the_openapi_document_has_the_route_when_it_is_served(make_app: AppFactory) -> None:
    with TestClient(make_app()) as off, TestClient(make_app(metrics=True, api_keys=(Secret("k"),))) as on:
        assert "/metrics" not in off.get("/schema/openapi.json").json()["paths"]
        document = on.get("/schema/openapi.json", headers={"Authorization": "Bearer k"}).json()

    # As for the other routes (tests/app/http/test_api.py): every one served is documented.
    served = {
        re.sub(r":\w+}", "}", route.path)
        for route in on.app.routes
        if isinstance(route, HTTPRoute)
        and any(handler.include_in_schema is not False for handler in route.route_handlers)
    }
    assert set(document["paths"]) == served
    operation = document["paths"]["/metrics"]["get"]
    assert operation["security"] == [{"bearer": []}]
    assert set(operation["responses"]) == {"200", "401"}


def test_a_stream_is_counted_in_the_exposition(make_app: AppFactory) -> None:
    with TestClient(make_app(metrics=True)) as client:
        before = client.get("/metrics")
        streamed = client.get("/v1/stream", params={"prompt": "hello"})
        after = client.get("/metrics")

    assert streamed.status_code == 200
    assert before.status_code == after.status_code == 200
    assert after.headers["content-type"].startswith("text/plain; version=")
    assert sample(samples(before.text), "tokenrelay_streams_ended_total", outcome="completed", **MOCK) == 0
    parsed = samples(after.text)
    assert sample(parsed, "tokenrelay_streams_started_total", **MOCK) == 1
    assert sample(parsed, "tokenrelay_streams_ended_total", outcome="completed", **MOCK) == 1
    assert sample(parsed, "tokenrelay_active_streams", dialect="stream", provider="mock") == 0
    assert sample(parsed, "tokenrelay_completion_tokens_total", **MOCK) > 0
    assert sample(parsed, "tokenrelay_time_to_first_token_seconds_count", **MOCK) == 1


def test_an_upstream_error_is_counted_by_its_code(make_app: AppFactory) -> None:
    body = {"messages": user("hello"), "mock": {"error": "rate_limit"}}
    with TestClient(make_app(metrics=True)) as client:
        refused = client.post("/v1/stream", json=body)
        parsed = samples(client.get("/metrics").text)

    assert refused.status_code == 429
    assert sample(parsed, "tokenrelay_streams_ended_total", outcome="error", **MOCK) == 1
    assert (
        sample(parsed, "tokenrelay_upstream_errors_total", provider="mock", type="rate_limit_exceeded") == 1
    )


def test_the_metrics_are_behind_the_api_keys_when_there_are_some(make_app: AppFactory) -> None:
    with TestClient(make_app(metrics=True, api_keys=(Secret("k-1"),))) as client:
        anonymous = client.get("/metrics")
        wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
        allowed = client.get("/metrics", headers={"Authorization": "Bearer k-1"})

    assert (anonymous.status_code, wrong.status_code) == (401, 401)
    assert anonymous.json()["error"]["message"]  # the API's own error body, not a bare 401
    assert allowed.status_code == 200
    assert "tokenrelay_streams_started_total" in allowed.text


def test_a_resume_is_counted_on_both_sinks(make_app: AppFactory, log_capture: LogCapture) -> None:
    with TestClient(make_app(metrics=True, metrics_emf=True)) as client:
        started = client.post("/v1/stream", json={"messages": user("hello"), "resumable": True})
        stream_id = started.headers["x-stream-id"]
        resumed = client.get(f"/v1/streams/{stream_id}/events", headers={"Last-Event-ID": "1"})
        parsed = samples(client.get("/metrics").text)

    assert (started.status_code, resumed.status_code) == (200, 200)
    assert sample(parsed, "tokenrelay_stream_resumes_total", dialect="stream") == 1
    [line] = formatted_lines(log_capture.records, "stream_resume")
    assert_valid_emf(line)
    assert (line["StreamResumes"], line["Dialect"], line["request_id"]) == (1, "stream", stream_id)
    [end] = formatted_lines(log_capture.records, "stream_end")
    assert_valid_emf(end)
    assert end["Outcome"] == "completed"


def test_client_chosen_models_cannot_grow_the_series_without_bound() -> None:
    from app.metrics.prometheus import MAX_PASSTHROUGH_MODELS, OTHER_MODEL, PrometheusSink
    from app.metrics.record import StreamLabels

    configured = PrometheusSink(models=["gpt-4o-mini"])
    passthrough = PrometheusSink()
    for index in range(MAX_PASSTHROUGH_MODELS + 5):
        for sink in (configured, passthrough):
            sink.stream_started(StreamLabels(dialect="stream", provider="openai", model=f"model-{index}"))
    configured.stream_started(StreamLabels(dialect="stream", provider="openai", model="gpt-4o-mini"))

    def models(sink: PrometheusSink) -> dict[str, float]:
        return {
            dict(labels)["model"]: value
            for (name, labels), value in samples(sink.exposition().decode()).items()
            if name == "tokenrelay_streams_started_total"
        }

    assert models(configured) == {OTHER_MODEL: MAX_PASSTHROUGH_MODELS + 5, "gpt-4o-mini": 1}
    by_model = models(passthrough)
    assert len(by_model) == MAX_PASSTHROUGH_MODELS + 1
    assert by_model[OTHER_MODEL] == 5
    assert by_model["model-0"] == 1


def _python(code: str, **env: str) -> str:
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("METRICS", "PROMETHEUS", "API_KEYS"))
    }
    environment.update({"PYTHONPATH": str(ROOT), "PROVIDER": "mock", "LOG_LEVEL": "WARNING", **env})
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


_IMPORTS_PROMETHEUS = """
    import sys
    from app.factory import create_app
    create_app()
    print("prometheus_client" in sys.modules)
"""


@pytest.mark.parametrize(("metrics", "imported"), [("", "False"), ("true", "True")])
def test_the_prometheus_client_is_imported_only_when_metrics_are_on(metrics: str, imported: str) -> None:
    assert _python(_IMPORTS_PROMETHEUS, METRICS=metrics).strip() == imported


_ONE_WORKER = """
    from litestar.testing import TestClient
    from app.factory import create_app
    with TestClient(create_app()) as client:
        assert client.get("/v1/stream", params={"prompt": "hello"}).status_code == 200
"""

_EXPOSITION = """
    import sys
    from litestar.testing import TestClient
    from app.factory import create_app
    with TestClient(create_app()) as client:
        sys.stdout.write(client.get("/metrics").text)
"""


def test_several_worker_processes_are_added_up_in_multiprocess_mode(tmp_path: Path) -> None:
    env = {"METRICS": "true", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    _python(_ONE_WORKER, **env)
    _python(_ONE_WORKER, **env)

    parsed = samples(_python(_EXPOSITION, **env))

    assert sample(parsed, "tokenrelay_streams_ended_total", outcome="completed", **MOCK) == 2
    # Each worker marked itself dead on shutdown, so its live gauge no longer counts.
    assert sample(parsed, "tokenrelay_active_streams", dialect="stream", provider="mock") == 0
