"""The stream session without HTTP: a scripted provider, real timers, and the one `stream_end` line."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from app.stream.cancel.memory import InMemoryCancelRegistry
from app.stream.limits import Deadline, StreamLimits
from app.stream.session import (
    HEARTBEAT,
    Completed,
    Failed,
    Heartbeat,
    Outcome,
    SessionEvent,
    StreamSession,
)
from providers.errors import (
    ProviderAuthError,
    ProviderBadRequestError,
    ProviderError,
    ProviderModelNotFoundError,
    ProviderRateLimitError,
    ProviderStreamError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from providers.protocol import ChatRequest, StreamItem, TextDelta
from tests.app.conftest import LogCapture
from tests.app.helpers import Forever, Hang, ScriptedProvider, Step, WaitFor, deltas, finish, mock_request
from tests.support.timeouts import run_async


class FastCancels(InMemoryCancelRegistry):
    """The in-memory registry, polled often enough for a test to see a cancel at once."""

    @property
    def poll_interval_s(self) -> float:
        return 0.01


def _session(
    provider: ScriptedProvider | object,
    *,
    max_tokens: int = 1000,
    idle_s: float = 10.0,
    deadline_s: float = 10.0,
    heartbeat_s: float = 10.0,
    host_deadline: Deadline | None = None,
    cancels: InMemoryCancelRegistry | None = None,
    request: ChatRequest | None = None,
) -> StreamSession:
    return StreamSession(
        provider=provider,  # type: ignore[arg-type]
        request=request or mock_request("hello", model="m-1"),
        stream_id="stream-1",
        dialect="test",
        limits=StreamLimits(
            max_tokens=max_tokens,
            idle_timeout_s=idle_s,
            deadline_s=deadline_s,
            heartbeat_s=heartbeat_s,
            host_deadline=host_deadline,
        ),
        cancels=cancels or InMemoryCancelRegistry(),
    )


def _drain(session: StreamSession, *, timeout_s: float = 5.0) -> list[SessionEvent]:
    async def body() -> list[SessionEvent]:
        return [event async for event in session.events()]

    return run_async(body, timeout_s=timeout_s)


def _texts(events: Sequence[SessionEvent]) -> list[str]:
    return [event.text for event in events if isinstance(event, TextDelta)]


def test_a_generation_streams_every_delta_then_completes(log_capture: LogCapture) -> None:
    provider = ScriptedProvider([*deltas("a", "\nb", "c"), finish(3, prompt_tokens=7)], name="scripted")
    session = _session(provider)

    events = _drain(session)

    assert _texts(events) == ["a", "\nb", "c"]
    assert len(events) == 4
    last = events[-1]
    assert isinstance(last, Completed)
    assert (last.finish_reason, last.outcome) == ("stop", Outcome.COMPLETED)
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (7, 3)
    assert provider.finished == 1
    [end] = log_capture.stream_ends
    assert end["outcome"] == "completed"
    assert end["request_id"] == "stream-1"
    assert end["dialect"] == "test"
    assert end["provider"] == "scripted"
    assert end["model"] == "m-1"
    assert (end["completion_tokens"], end["prompt_tokens"]) == (3, 7)
    assert isinstance(end["ttft_ms"], float)
    assert end["duration_ms"] >= end["ttft_ms"] >= 0


def test_a_provider_that_ends_without_finish_completes_with_counted_tokens(log_capture: LogCapture) -> None:
    events = _drain(_session(ScriptedProvider(deltas("a", "b"))))

    assert events[-1] == Completed("stop", None, Outcome.COMPLETED)
    [end] = log_capture.stream_ends
    assert (end["outcome"], end["completion_tokens"], end["prompt_tokens"]) == ("completed", 2, None)


def test_a_length_finish_is_the_max_tokens_outcome(log_capture: LogCapture) -> None:
    events = _drain(_session(ScriptedProvider([*deltas("a", "b"), finish(2, reason="length")])))

    last = events[-1]
    assert isinstance(last, Completed)
    assert (last.finish_reason, last.outcome) == ("length", Outcome.MAX_TOKENS)
    assert log_capture.stream_ends[0]["outcome"] == "max_tokens"


def test_the_session_enforces_max_tokens_on_a_provider_that_ignores_it(log_capture: LogCapture) -> None:
    provider = ScriptedProvider([Forever(TextDelta("x"))])

    events = _drain(_session(provider, max_tokens=5))

    assert _texts(events) == ["x"] * 5
    assert events[-1] == Completed("length", None, Outcome.MAX_TOKENS)
    assert provider.active == 0
    assert provider.cancelled == 1
    [end] = log_capture.stream_ends
    assert (end["outcome"], end["completion_tokens"]) == ("max_tokens", 5)


def test_heartbeats_flow_while_the_provider_is_silent_even_before_the_first_token() -> None:
    async def body() -> list[SessionEvent]:
        before_first, mid_stream = asyncio.Event(), asyncio.Event()
        provider = ScriptedProvider([WaitFor(before_first), *deltas("a"), WaitFor(mid_stream), *deltas("b")])
        events = _session(provider, heartbeat_s=0.02).events()
        seen = [await anext(events)]
        before_first.set()  # only once a heartbeat has come: the order below is not a race
        while not isinstance(seen[-1], TextDelta):
            seen.append(await anext(events))
        seen.append(await anext(events))
        mid_stream.set()
        seen.extend([event async for event in events])
        return seen

    seen = run_async(body, timeout_s=5)

    assert seen[0] is HEARTBEAT
    first_delta = seen.index(TextDelta("a"))
    assert all(isinstance(event, Heartbeat) for event in seen[:first_delta])
    assert seen[first_delta + 1] is HEARTBEAT
    assert all(isinstance(event, Heartbeat) for event in seen[first_delta + 1 : seen.index(TextDelta("b"))])
    assert seen[-1] == Completed("stop", None, Outcome.COMPLETED)


def test_no_heartbeat_while_tokens_keep_coming() -> None:
    events = _drain(_session(ScriptedProvider(deltas(*"abcdefgh")), heartbeat_s=5))
    assert not any(isinstance(event, Heartbeat) for event in events)


def test_idle_timeout_ends_the_stream_and_cancels_the_provider(log_capture: LogCapture) -> None:
    provider = ScriptedProvider([*deltas("a"), Hang()])

    events = _drain(_session(provider, idle_s=0.05, heartbeat_s=0.02))

    assert _texts(events) == ["a"]
    failed = events[-1]
    assert isinstance(failed, Failed)
    assert failed.outcome is Outcome.IDLE_TIMEOUT
    assert failed.error.status_code == 504
    assert (failed.error.detail.type, failed.error.detail.code) == ("budget_exceeded", "idle_timeout")
    assert any(isinstance(event, Heartbeat) for event in events[1:-1])
    assert (provider.active, provider.cancelled) == (0, 1)
    [end] = log_capture.stream_ends
    assert end["outcome"] == "idle_timeout"


def test_idle_timeout_before_the_first_token_is_the_first_event() -> None:
    events = _drain(_session(ScriptedProvider([Hang()]), idle_s=0.03, heartbeat_s=10))

    assert len(events) == 1
    assert isinstance(events[0], Failed)
    assert events[0].outcome is Outcome.IDLE_TIMEOUT


def test_deadline_ends_a_stream_whose_provider_keeps_it_alive_with_rare_tokens(
    log_capture: LogCapture,
) -> None:
    async def body() -> list[SessionEvent]:
        gate = asyncio.Event()
        provider = ScriptedProvider([*deltas("a"), WaitFor(gate), *deltas("b")])
        events = _session(provider, idle_s=10, deadline_s=0.05, heartbeat_s=0.01).events()
        return [event async for event in events]

    events = run_async(body, timeout_s=5)

    assert _texts(events) == ["a"]
    failed = events[-1]
    assert isinstance(failed, Failed)
    assert failed.outcome is Outcome.DEADLINE
    assert (failed.error.status_code, failed.error.detail.code) == (504, "deadline")
    assert log_capture.stream_ends[0]["outcome"] == "deadline"


def test_deadline_holds_when_a_slow_reader_keeps_the_queue_full(log_capture: LogCapture) -> None:
    """Tokens are always waiting (the reader is slower than the provider), yet the deadline must fire."""
    provider = ScriptedProvider([Forever(TextDelta("x"))])

    async def body() -> list[SessionEvent]:
        seen: list[SessionEvent] = []
        async for event in _session(provider, max_tokens=10**9, deadline_s=0.05).events():
            seen.append(event)
            # A slow reader: the provider gets far ahead before the next event is asked for.
            for _ in range(100):
                if provider.yielded >= len(seen) + 32:
                    break
                await asyncio.sleep(0)
        return seen

    events = run_async(body, timeout_s=5)

    failed = events[-1]
    assert isinstance(failed, Failed)
    assert failed.outcome is Outcome.DEADLINE
    assert provider.active == 0
    assert log_capture.stream_ends[0]["outcome"] == "deadline"


def test_a_host_deadline_caps_the_configured_one() -> None:
    events = _drain(_session(ScriptedProvider([Hang()]), deadline_s=60, host_deadline=Deadline.after(0.05)))

    assert isinstance(events[0], Failed)
    assert events[0].outcome is Outcome.DEADLINE


def test_a_host_deadline_already_past_fails_at_once() -> None:
    provider = ScriptedProvider(deltas("a"))
    events = _drain(_session(provider, host_deadline=Deadline.after(-1)))

    assert len(events) == 1
    assert isinstance(events[0], Failed)
    assert events[0].outcome is Outcome.DEADLINE


def test_an_explicit_cancel_stops_a_running_stream(log_capture: LogCapture) -> None:
    cancels = FastCancels()
    provider = ScriptedProvider([Forever(TextDelta("x"))])

    async def body() -> tuple[list[SessionEvent], int, bool]:
        events = _session(provider, cancels=cancels, max_tokens=10**9).events()
        seen = [await anext(events)]
        live = cancels.live_streams
        accepted = await cancels.request_cancel("stream-1")
        seen.extend([event async for event in events])
        return seen, live, accepted

    seen, live, accepted = run_async(body, timeout_s=5)

    assert (live, accepted) == (1, True)
    failed = seen[-1]
    assert isinstance(failed, Failed)
    assert failed.outcome is Outcome.CANCELLED
    assert (failed.error.detail.type, failed.error.detail.code) == ("cancelled", "cancelled")
    assert provider.active == 0
    assert cancels.live_streams == 0
    assert log_capture.stream_ends[0]["outcome"] == "cancelled"


def test_an_explicit_cancel_reaches_a_silent_provider() -> None:
    cancels = FastCancels()
    provider = ScriptedProvider([*deltas("a"), Hang()])

    async def body() -> list[SessionEvent]:
        events = _session(provider, cancels=cancels, heartbeat_s=10).events()
        seen = [await anext(events)]
        assert await cancels.request_cancel("stream-1")
        seen.extend([event async for event in events])
        return seen

    seen = run_async(body, timeout_s=5)

    assert isinstance(seen[-1], Failed)
    assert seen[-1].outcome is Outcome.CANCELLED
    assert (provider.active, provider.cancelled) == (0, 1)


def test_cancelling_an_unknown_or_finished_stream_is_refused() -> None:
    cancels = InMemoryCancelRegistry()
    _drain(_session(ScriptedProvider(deltas("a")), cancels=cancels))

    assert not run_async(lambda: cancels.request_cancel("stream-1"))
    assert not run_async(lambda: cancels.request_cancel("no-such-stream"))


def test_closing_the_events_early_cancels_the_provider_and_logs_cancelled(log_capture: LogCapture) -> None:
    cancels = InMemoryCancelRegistry()
    provider = ScriptedProvider([Forever(TextDelta("x"))])

    async def body() -> tuple[int, int]:
        events = _session(provider, cancels=cancels, max_tokens=10**9).events()
        await anext(events)
        await anext(events)
        await events.aclose()
        return provider.active, len(log_capture.stream_ends)

    active_after_close, logged_after_close = run_async(body, timeout_s=5)

    assert (active_after_close, logged_after_close) == (0, 1)
    assert cancels.live_streams == 0
    [end] = log_capture.stream_ends
    assert (end["outcome"], end["completion_tokens"]) == ("cancelled", 2)


_ERRORS = [
    (ProviderAuthError("bad key"), 401, "authentication_error"),
    (ProviderRateLimitError("slow down", retry_after_s=2.4), 429, "rate_limit_error"),
    (ProviderModelNotFoundError("no such model"), 404, "invalid_request_error"),
    (ProviderBadRequestError("bad parameter"), 400, "invalid_request_error"),
    (ProviderTimeoutError("too slow"), 504, "timeout_error"),
    (ProviderUnavailableError("down"), 502, "upstream_error"),
    (ProviderStreamError("broke"), 502, "upstream_error"),
    (ProviderError("generic"), 502, "upstream_error"),
]


@pytest.mark.parametrize(("error", "status", "kind"), _ERRORS, ids=[type(e[0]).__name__ for e in _ERRORS])
def test_a_provider_error_before_the_first_token_is_the_first_event(
    error: ProviderError, status: int, kind: str, log_capture: LogCapture
) -> None:
    events = _drain(_session(ScriptedProvider([error])))

    [failed] = events
    assert isinstance(failed, Failed)
    assert failed.outcome is Outcome.ERROR
    assert (failed.error.status_code, failed.error.detail.type) == (status, kind)
    assert failed.error.detail.message == error.message
    assert log_capture.stream_ends[0]["outcome"] == "error"


def test_a_provider_error_after_tokens_follows_them() -> None:
    events = _drain(_session(ScriptedProvider([*deltas("a", "b"), ProviderStreamError("broke")])))

    assert _texts(events) == ["a", "b"]
    assert isinstance(events[-1], Failed)
    assert events[-1].error.detail.code == "upstream_stream_error"


@pytest.mark.parametrize("after_tokens", [0, 2])
def test_a_provider_bug_is_an_internal_error_that_reveals_nothing(
    after_tokens: int, log_capture: LogCapture
) -> None:
    provider = ScriptedProvider([*deltas(*"ab"[:after_tokens]), KeyError("sk-internal-detail")])

    events = _drain(_session(provider))

    assert len(_texts(events)) == after_tokens
    failed = events[-1]
    assert isinstance(failed, Failed)
    assert failed.outcome is Outcome.ERROR
    assert failed.error.status_code == 500
    assert (failed.error.detail.type, failed.error.detail.code) == ("server_error", "internal_error")
    assert "sk-internal-detail" not in repr(failed.error.detail)
    [bug] = log_capture.events("provider_bug")
    assert bug["exc_type"] == "KeyError"
    assert "sk-internal-detail" not in repr(bug)
    assert [end["outcome"] for end in log_capture.stream_ends] == ["error"]


class _EagerFailureProvider(ScriptedProvider):
    """`stream_chat` is a plain method that fails before it returns an iterator (the protocol allows it)."""

    def __init__(self, error: Exception) -> None:
        super().__init__([])
        self._error = error

    def stream_chat(self, request: ChatRequest) -> AsyncIterator[StreamItem]:
        raise self._error


@pytest.mark.parametrize(
    ("error", "status"), [(ProviderRateLimitError("slow down"), 429), (RuntimeError("bug"), 500)]
)
def test_a_provider_failing_before_returning_its_iterator_fails_the_stream_at_once(
    error: Exception, status: int, log_capture: LogCapture
) -> None:
    events = _drain(_session(_EagerFailureProvider(error), idle_s=10, heartbeat_s=10), timeout_s=3)

    [failed] = events
    assert isinstance(failed, Failed)
    assert failed.error.status_code == status
    assert [end["outcome"] for end in log_capture.stream_ends] == ["error"]


@pytest.mark.parametrize(
    "script",
    [
        pytest.param([*deltas("a"), finish(1)], id="completed"),
        pytest.param([ProviderUnavailableError("down")], id="error"),
        pytest.param([Forever(TextDelta("x"))], id="max_tokens"),
        pytest.param([Hang()], id="idle_timeout"),
    ],
)
def test_every_outcome_logs_exactly_one_stream_end(script: list[Step], log_capture: LogCapture) -> None:
    _drain(_session(ScriptedProvider(script), max_tokens=3, idle_s=0.03))

    assert len(log_capture.stream_ends) == 1
