"""A stream of each outcome, run by the real session: its increments in EMF (the `stream_end` line as it is
written) and in Prometheus (the exposition, parsed by the client's own parser)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import pytest

from app.errors import ABANDONED
from app.metrics.prometheus import PrometheusSink
from app.metrics.recorder import StreamMetrics
from app.stream.cancel.memory import InMemoryCancelRegistry
from app.stream.limits import StreamLimits
from app.stream.session import Outcome, SessionEvent, StreamSession
from providers.errors import ProviderRateLimitError, ProviderStreamError
from providers.protocol import TextDelta
from tests.app.conftest import LogCapture
from tests.app.helpers import Forever, Hang, ScriptedProvider, Step, deltas, finish, mock_request
from tests.app.metrics.support import assert_valid_emf, emf_metrics, formatted_lines, sample, samples
from tests.support.timeouts import run_async

Drive = Callable[[StreamSession], Coroutine[Any, Any, None]]


async def _drain(session: StreamSession) -> None:
    async for _ in session.events():
        pass


async def _close_after_first(session: StreamSession) -> None:
    events = session.events()
    await anext(events)
    await events.aclose()  # the client went away


async def _stall_after_first(session: StreamSession) -> None:
    events = session.events()
    await anext(events)
    session.stopping_as(Outcome.STALLED)  # as the writer does for a client that stopped reading
    await events.aclose()


async def _abandon_after_first(session: StreamSession) -> None:
    events = session.events()
    await anext(events)
    session.request_stop(ABANDONED("nobody came back"), Outcome.ABANDONED)  # as the resume grace does
    async for _ in events:
        pass


async def _never_started(session: StreamSession) -> None:
    session.end_unstarted()


@dataclass(frozen=True)
class Case:
    outcome: Outcome
    script: list[Step]
    drive: Drive = _drain
    tokens: int = 0
    first_token: bool = False
    upstream_error: str | None = None
    limits: dict[str, float] = field(default_factory=dict)


CASES = {
    "completed": Case(Outcome.COMPLETED, [*deltas("a", "b"), finish(2)], tokens=2, first_token=True),
    "upstream error before a token": Case(
        Outcome.ERROR, [ProviderRateLimitError("slow down")], upstream_error="rate_limit_exceeded"
    ),
    "upstream error after tokens": Case(
        Outcome.ERROR,
        [*deltas("a"), ProviderStreamError("cut")],
        tokens=1,
        first_token=True,
        upstream_error="upstream_stream_error",
    ),
    "provider bug": Case(Outcome.ERROR, [RuntimeError("bug")]),
    "max_tokens": Case(Outcome.MAX_TOKENS, [Forever(TextDelta("x"))], tokens=3, first_token=True),
    "idle_timeout": Case(Outcome.IDLE_TIMEOUT, [Hang()], limits={"idle_timeout_s": 0.03}),
    "deadline": Case(Outcome.DEADLINE, [Hang()], limits={"deadline_s": 0.03}),
    "cancelled (client gone)": Case(
        Outcome.CANCELLED, [*deltas("a"), Hang()], _close_after_first, tokens=1, first_token=True
    ),
    "stalled": Case(Outcome.STALLED, [*deltas("a"), Hang()], _stall_after_first, tokens=1, first_token=True),
    "abandoned": Case(
        Outcome.ABANDONED, [*deltas("a"), Hang()], _abandon_after_first, tokens=1, first_token=True
    ),
    "given up before it started": Case(Outcome.CANCELLED, [Hang()], _never_started),
}


def _run(case: Case, metrics: StreamMetrics) -> None:
    limits: dict[str, Any] = {
        "max_tokens": 3,
        "idle_timeout_s": 10.0,
        "deadline_s": 10.0,
        "heartbeat_s": 10.0,
    }
    limits.update(case.limits)
    session = StreamSession(
        provider=ScriptedProvider(case.script, name="scripted"),
        request=mock_request("hello", model="m-1"),
        stream_id="stream-1",
        dialect="openai",
        limits=StreamLimits(**limits),
        cancels=InMemoryCancelRegistry(),
        metrics=metrics,
    )
    run_async(lambda: case.drive(session), timeout_s=5)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_each_outcome_is_one_emf_record_in_its_stream_end_line(case: Case, log_capture: LogCapture) -> None:
    _run(case, StreamMetrics(emf=True))

    [line] = formatted_lines(log_capture.records, "stream_end")
    assert_valid_emf(line)
    assert (line["Outcome"], line["Dialect"], line["Provider"]) == (case.outcome.value, "openai", "scripted")
    assert line["outcome"] == case.outcome.value  # the log fields are still there, for reading
    metrics = emf_metrics(line)
    assert metrics["StreamsEnded"] == (1, "Count", [["Outcome", "Dialect", "Provider"], ["Outcome"], []])
    assert metrics["CompletionTokens"][:2] == (case.tokens, "Count")
    assert metrics["StreamDuration"][0] == line["duration_ms"]
    assert metrics["StreamDuration"][1] == "Milliseconds"
    if case.first_token:
        assert metrics["TimeToFirstToken"] == (line["ttft_ms"], "Milliseconds", [["Dialect", "Provider"], []])
    else:
        assert "TimeToFirstToken" not in metrics
    if case.upstream_error is not None:
        assert metrics["UpstreamErrors"] == (1, "Count", [["Provider", "UpstreamError"]])
        assert line["UpstreamError"] == case.upstream_error
    else:
        assert "UpstreamErrors" not in metrics
    # The model is a log field, never a dimension: clients choose it, and every value would be billed.
    assert "m-1" not in str(line["_aws"])


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_each_outcome_increments_the_prometheus_series(case: Case, log_capture: LogCapture) -> None:
    sink = PrometheusSink()
    _run(case, StreamMetrics(sinks=[sink]))

    parsed = samples(sink.exposition().decode())
    stream = {"dialect": "openai", "provider": "scripted", "model": "m-1"}
    # A session given up before it began ends without having started.
    assert sample(parsed, "tokenrelay_streams_started_total", **stream) == int(
        case.drive is not _never_started
    )
    assert sample(parsed, "tokenrelay_streams_ended_total", outcome=case.outcome.value, **stream) == 1
    assert sum(v for (name, _), v in parsed.items() if name == "tokenrelay_streams_ended_total") == 1
    assert sample(parsed, "tokenrelay_active_streams", dialect="openai", provider="scripted") == 0
    duration = {"outcome": case.outcome.value, "dialect": "openai", "provider": "scripted"}
    assert sample(parsed, "tokenrelay_stream_duration_seconds_count", **duration) == 1
    assert sample(parsed, "tokenrelay_time_to_first_token_seconds_count", **stream) == int(case.first_token)
    assert sample(parsed, "tokenrelay_completion_tokens_total", **stream) == case.tokens
    errors = {labels: v for (name, labels), v in parsed.items() if name == "tokenrelay_upstream_errors_total"}
    if case.upstream_error is not None:
        assert errors == {frozenset({"provider": "scripted", "type": case.upstream_error}.items()): 1}
    else:
        assert errors == {}
    # Without EMF the line is a plain log line.
    [line] = formatted_lines(log_capture.records, "stream_end")
    assert "_aws" not in line


def test_a_running_stream_is_an_active_one(log_capture: LogCapture) -> None:
    sink = PrometheusSink()
    session = StreamSession(
        provider=ScriptedProvider([*deltas("a"), Hang()]),
        request=mock_request("hello", model="m-1"),
        stream_id="stream-1",
        dialect="openai",
        limits=StreamLimits(max_tokens=3, idle_timeout_s=10, deadline_s=10, heartbeat_s=10),
        cancels=InMemoryCancelRegistry(),
        metrics=StreamMetrics(sinks=[sink]),
    )
    active: list[float] = []

    async def body() -> None:
        events = session.events()
        first: SessionEvent = await anext(events)
        assert isinstance(first, TextDelta)
        active.append(_active(sink))
        await events.aclose()
        active.append(_active(sink))

    run_async(body, timeout_s=5)

    assert active == [1, 0]


def _active(sink: PrometheusSink) -> float:
    parsed = samples(sink.exposition().decode())
    return sample(parsed, "tokenrelay_active_streams", dialect="openai", provider="scripted")
