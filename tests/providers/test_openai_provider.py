"""The OpenAI provider over a fake upstream at the SDK's HTTP transport: wire, errors, retries, cancel."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import msgspec
import pytest

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
from providers.openai import OpenAIProvider, parse_retry_after_s
from providers.protocol import (
    ChatMessage,
    ChatRequest,
    Finish,
    MockDirectives,
    Provider,
    StreamItem,
    TextDelta,
    TraceContext,
)
from tests.providers.fake_upstream import (
    BASE_URL,
    DONE_EVENT,
    FAKE_API_KEY,
    FakeUpstream,
    chunk_event,
    close_iterator,
    error_response,
    fixture_bytes,
    sse_events,
    streamed,
)
from tests.support.timeouts import run_async

PROJECT_ROOT = Path(__file__).resolve().parents[2]

FIXTURE_TEXT = (
    "Tokens stream as server-sent events, so the first words arrive while the rest is still being written"
    " — no waiting for the whole answer."
)

REQUEST = ChatRequest(
    model="gpt-4o-mini",
    messages=(
        ChatMessage(role="system", content="Answer in one sentence."),
        ChatMessage(role="user", content="Why stream tokens?"),
    ),
)


async def collect(items: AsyncIterator[StreamItem]) -> list[StreamItem]:
    return [item async for item in items]


async def collect_until_error(items: AsyncIterator[StreamItem]) -> tuple[list[StreamItem], ProviderError]:
    seen: list[StreamItem] = []
    try:
        async for item in items:
            seen.append(item)
    except ProviderError as exc:
        return seen, exc
    raise AssertionError(f"expected a ProviderError after {len(seen)} items")


def stream_and_close(provider: OpenAIProvider, request: ChatRequest = REQUEST) -> list[StreamItem]:
    async def body() -> list[StreamItem]:
        try:
            return await collect(provider.stream_chat(request))
        finally:
            await provider.aclose()

    return run_async(body)


def error_of(
    provider: OpenAIProvider, request: ChatRequest = REQUEST
) -> tuple[list[StreamItem], ProviderError]:
    async def body() -> tuple[list[StreamItem], ProviderError]:
        try:
            return await collect_until_error(provider.stream_chat(request))
        finally:
            await provider.aclose()

    return run_async(body)


def texts(items: list[StreamItem]) -> list[str]:
    return [item.text for item in items if isinstance(item, TextDelta)]


# --- the recorded stream ---


def test_replays_the_recorded_stream_as_deltas_then_one_finish_with_usage() -> None:
    upstream = FakeUpstream(streamed(sse_events(fixture_bytes("chat_completions_stream.sse"))))

    items = stream_and_close(upstream.provider())

    deltas = texts(items)
    assert len(deltas) == 27
    assert deltas[:3] == ["Tokens", " stream", " as"]
    assert "".join(deltas) == FIXTURE_TEXT
    finish = items[-1]
    assert isinstance(finish, Finish)
    assert finish.usage is not None
    assert (finish.usage.prompt_tokens, finish.usage.completion_tokens) == (24, 27)
    assert sum(isinstance(item, Finish) for item in items) == 1
    assert upstream.calls == 1
    assert upstream.open_bodies() == 0


@pytest.mark.parametrize("read_size", [1, 7, 64, 100_000])
def test_reassembles_events_split_across_network_reads(read_size: int) -> None:
    # Reads do not line up with events, nor with UTF-8 characters (the em dash is three bytes).
    raw = fixture_bytes("chat_completions_stream.sse")
    reads = [raw[i : i + read_size] for i in range(0, len(raw), read_size)]
    upstream = FakeUpstream(streamed(reads))

    items = stream_and_close(upstream.provider())

    assert "".join(texts(items)) == FIXTURE_TEXT
    assert isinstance(items[-1], Finish)


def test_every_delta_gives_other_tasks_a_turn_even_when_one_read_holds_the_whole_answer() -> None:
    # The SDK decodes all events of one network read without suspending; without a checkpoint of our
    # own, a fast upstream would starve every other stream on the event loop and delay cancellation.
    upstream = FakeUpstream(streamed([fixture_bytes("chat_completions_stream.sse")]))
    provider = upstream.provider()

    async def body() -> list[int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0)
                ticks += 1

        ticking = asyncio.create_task(ticker())
        seen_at: list[int] = []
        try:
            async for _ in provider.stream_chat(REQUEST):
                seen_at.append(ticks)
        finally:
            ticking.cancel()
            await provider.aclose()
        return seen_at

    seen_at = run_async(body)

    assert len(seen_at) == 28
    assert all(later > earlier for earlier, later in itertools.pairwise(seen_at))


def test_usage_may_arrive_on_the_finish_chunk() -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    # Some compatible servers put usage on the finish chunk instead of a chunk of its own.
    finish_with_usage = json.loads(chunk_event(finish_reason="stop")[len(b"data: ") :])
    finish_with_usage["usage"] = usage
    upstream = FakeUpstream(
        streamed(
            [
                chunk_event("Hi"),
                chunk_event("!"),
                b"data: " + json.dumps(finish_with_usage).encode() + b"\n\n",
                DONE_EVENT,
            ]
        )
    )

    items = stream_and_close(upstream.provider())

    finish = items[-1]
    assert isinstance(finish, Finish)
    assert finish.usage is not None
    assert (finish.usage.prompt_tokens, finish.usage.completion_tokens) == (3, 2)


def test_a_stream_without_usage_finishes_without_usage() -> None:
    upstream = FakeUpstream(streamed([chunk_event("Hi"), chunk_event(finish_reason="stop"), DONE_EVENT]))

    items = stream_and_close(upstream.provider())

    assert items == [TextDelta("Hi"), Finish(reason="stop", usage=None)]


@pytest.mark.parametrize(
    ("upstream_reason", "reason"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("content_filter", "content_filter"),
        ("tool_calls", "tool_calls"),
        ("function_call", "tool_calls"),  # the deprecated name of the same thing
        ("eos_token", "stop"),  # an unknown reason from a compatible server
    ],
)
def test_maps_finish_reasons(upstream_reason: str, reason: str) -> None:
    upstream = FakeUpstream(
        streamed([chunk_event("Hi"), chunk_event(finish_reason=upstream_reason), DONE_EVENT])
    )

    items = stream_and_close(upstream.provider())

    assert items[-1] == Finish(reason=reason, usage=None)  # type: ignore[arg-type]


def test_tolerates_sparse_chunks_from_compatible_servers() -> None:
    def event(choices: list[dict[str, object]]) -> bytes:
        body = {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": choices}
        return b"data: " + json.dumps(body).encode() + b"\n\n"

    upstream = FakeUpstream(
        streamed(
            [
                chunk_event("", role="assistant"),
                chunk_event("Hi"),
                chunk_event(""),
                event([{"delta": {"content": " there"}}]),  # no index
                event([{"index": 1, "delta": {"content": "second choice"}}]),  # not the choice we asked for
                event([{"index": 0, "finish_reason": "stop"}]),  # no delta
                DONE_EVENT,
            ]
        )
    )

    items = stream_and_close(upstream.provider())

    assert items == [TextDelta("Hi"), TextDelta(" there"), Finish(reason="stop", usage=None)]


# --- what goes upstream ---


def test_request_sent_upstream_streams_with_usage_and_passes_fields_through() -> None:
    upstream = FakeUpstream(streamed(sse_events(fixture_bytes("chat_completions_stream.sse"))))
    request = ChatRequest(
        model="my-org/llama-3.1-8b-instruct",
        messages=(
            ChatMessage(role="developer", content="Be brief."),
            ChatMessage(role="user", content="Hi"),
            ChatMessage(role="assistant", content="Hello!"),
            ChatMessage(role="user", content="Why stream?"),
        ),
        max_tokens=64,
        temperature=0.2,
        top_p=0.9,
        stop=("\n\n",),
        seed=7,
        user="user-123",
        mock=MockDirectives(error="auth"),
    )

    stream_and_close(upstream.provider(), request)

    (sent,) = upstream.requests
    assert sent.method == "POST"
    assert str(sent.url) == f"{BASE_URL}/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {FAKE_API_KEY}"
    assert json.loads(sent.content) == {
        "model": "my-org/llama-3.1-8b-instruct",
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Why stream?"},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 64,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["\n\n"],
        "seed": 7,
        "user": "user-123",
    }


def test_unset_fields_are_left_out_of_the_request() -> None:
    upstream = FakeUpstream(streamed(sse_events(fixture_bytes("chat_completions_stream.sse"))))

    stream_and_close(upstream.provider())

    (body,) = upstream.json_bodies()
    assert set(body) == {"model", "messages", "stream", "stream_options"}
    assert body["model"] == "gpt-4o-mini"


def test_connect_and_read_timeouts_reach_the_transport() -> None:
    upstream = FakeUpstream(streamed(sse_events(fixture_bytes("chat_completions_stream.sse"))))

    stream_and_close(upstream.provider(timeout_s=12.5, connect_timeout_s=1.5))

    timeout = upstream.requests[0].extensions["timeout"]
    assert timeout["connect"] == 1.5
    assert timeout["read"] == 12.5


# --- errors before the first token: mapped once, and retried when worth it ---


@pytest.mark.parametrize(
    ("status", "code", "error_type"),
    [
        (400, "invalid_value", ProviderBadRequestError),
        (401, "invalid_api_key", ProviderAuthError),
        (403, "unsupported_country_region_territory", ProviderAuthError),
        (404, "model_not_found", ProviderModelNotFoundError),
        (409, None, ProviderBadRequestError),
        (422, None, ProviderBadRequestError),
        (429, "rate_limit_exceeded", ProviderRateLimitError),
        (500, None, ProviderUnavailableError),
        (502, None, ProviderUnavailableError),
        (503, None, ProviderUnavailableError),
    ],
)
def test_maps_upstream_status_errors(status: int, code: str | None, error_type: type[ProviderError]) -> None:
    upstream = FakeUpstream(error_response(status, f"upstream says {status}", code=code))

    seen, exc = error_of(upstream.provider(max_retries=0))

    assert seen == []
    assert type(exc) is error_type
    assert f"HTTP {status}" in str(exc)
    assert f"upstream says {status}" in str(exc)
    assert exc.__cause__ is not None  # raised `from` the SDK error
    assert upstream.calls == 1


def test_rate_limit_carries_retry_after_from_the_headers() -> None:
    upstream = FakeUpstream(
        error_response(
            429,
            "Rate limit reached for gpt-4o-mini on requests per min (RPM): Limit 3, Used 3, Requested 1.",
            type="requests",
            code="rate_limit_exceeded",
            headers={"retry-after": "20"},
        )
    )

    _, exc = error_of(upstream.provider())

    assert isinstance(exc, ProviderRateLimitError)
    assert exc.retry_after_s == 20.0
    # 20 s is longer than we may wait (`max_retry_wait_s`): the client gets the 429 at once instead.
    assert upstream.calls == 1


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),  # a date in the past
        ({"retry-after": "soon"}, None),
        ({"retry-after": "-1"}, None),
        ({}, None),
    ],
)
def test_parses_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after_s(httpx2.Headers(headers)) == expected


def test_timeout_before_the_first_token_is_a_timeout_error() -> None:
    upstream = FakeUpstream(httpx2.ReadTimeout("timed out"))

    _, exc = error_of(upstream.provider(max_retries=0))

    assert isinstance(exc, ProviderTimeoutError)
    assert upstream.calls == 1


def test_connection_error_is_unavailable() -> None:
    upstream = FakeUpstream(httpx2.ConnectError("[Errno 111] Connection refused"))

    _, exc = error_of(upstream.provider(max_retries=0))

    assert type(exc) is ProviderUnavailableError
    assert upstream.calls == 1


def test_retries_server_errors_before_the_first_token() -> None:
    upstream = FakeUpstream(
        error_response(
            503, "The engine is currently overloaded, please try again later.", type="server_error"
        ),
        error_response(
            503, "The engine is currently overloaded, please try again later.", type="server_error"
        ),
        streamed(sse_events(fixture_bytes("chat_completions_stream.sse"))),
    )

    items = stream_and_close(upstream.provider(max_retries=2))

    assert "".join(texts(items)) == FIXTURE_TEXT
    assert upstream.calls == 3


@pytest.mark.parametrize(
    "failure",
    [
        httpx2.ConnectError("[Errno 111] Connection refused"),
        httpx2.ConnectTimeout("timed out"),
        error_response(500, "The server had an error while processing your request.", type="server_error"),
        error_response(429, "Rate limit reached", code="rate_limit_exceeded"),
    ],
    ids=["connect-error", "connect-timeout", "http-500", "http-429"],
)
def test_retries_transient_failures_then_succeeds(failure: object) -> None:
    upstream = FakeUpstream(failure, streamed(sse_events(fixture_bytes("chat_completions_stream.sse"))))  # type: ignore[arg-type]

    items = stream_and_close(upstream.provider(max_retries=1))

    assert isinstance(items[-1], Finish)
    assert upstream.calls == 2


def test_retries_are_bounded() -> None:
    upstream = FakeUpstream(error_response(503, "overloaded", type="server_error"))

    _, exc = error_of(upstream.provider(max_retries=2))

    assert type(exc) is ProviderUnavailableError
    assert upstream.calls == 3


def test_client_errors_are_not_retried() -> None:
    upstream = FakeUpstream(error_response(400, "Invalid value for 'temperature'", code="invalid_value"))

    _, exc = error_of(upstream.provider(max_retries=3))

    assert isinstance(exc, ProviderBadRequestError)
    assert upstream.calls == 1


def test_exhausted_quota_is_not_retried() -> None:
    upstream = FakeUpstream(
        error_response(
            429, "You exceeded your current quota.", type="insufficient_quota", code="insufficient_quota"
        )
    )

    _, exc = error_of(upstream.provider(max_retries=3))

    assert isinstance(exc, ProviderRateLimitError)
    assert upstream.calls == 1


def test_retry_waits_as_long_as_retry_after_says(caplog: pytest.LogCaptureFixture) -> None:
    upstream = FakeUpstream(
        error_response(
            429, "Rate limit reached", code="rate_limit_exceeded", headers={"retry-after-ms": "20"}
        ),
        streamed(sse_events(fixture_bytes("chat_completions_stream.sse"))),
    )

    with caplog.at_level(logging.WARNING, logger="providers.openai"):
        stream_and_close(upstream.provider(max_retries=1, retry_backoff_s=0.001, max_retry_wait_s=1.0))

    (retry,) = [record.getMessage() for record in caplog.records if record.name == "providers.openai"]
    assert "HTTP 429" in retry
    assert "retry 1 of 1 in 0.020 s" in retry
    assert upstream.calls == 2


# --- errors after the first token: never retried ---


def test_dropped_connection_mid_stream_is_a_stream_error_and_not_retried() -> None:
    events = sse_events(fixture_bytes("chat_completions_stream.sse"))
    upstream = FakeUpstream(
        streamed(
            events[:4],
            then_raise=httpx2.RemoteProtocolError(
                "peer closed connection without sending complete message body"
            ),
        ),
        streamed(events),
    )

    seen, exc = error_of(upstream.provider(max_retries=3))

    assert texts(seen) == ["Tokens", " stream", " as"]
    assert type(exc) is ProviderStreamError
    assert upstream.calls == 1
    assert upstream.open_bodies() == 0


def test_in_band_error_event_mid_stream_is_a_stream_error() -> None:
    upstream = FakeUpstream(streamed(sse_events(fixture_bytes("chat_completions_stream_server_error.sse"))))

    seen, exc = error_of(upstream.provider(max_retries=3))

    assert "".join(texts(seen)) == "Tokens stream as server-sent events"
    assert type(exc) is ProviderStreamError
    assert "The server had an error while processing your request" in str(exc)
    assert upstream.calls == 1


def test_stream_ending_without_finish_after_tokens_is_a_stream_error() -> None:
    upstream = FakeUpstream(streamed([chunk_event("Hi"), chunk_event(" there")]))

    seen, exc = error_of(upstream.provider())

    assert texts(seen) == ["Hi", " there"]
    assert type(exc) is ProviderStreamError


def test_in_band_error_before_any_token_is_still_a_pre_stream_error() -> None:
    # Nothing has reached the client, so the app can still answer with a status code.
    error = {"message": "The server had an error while processing your request.", "type": "server_error"}
    in_band = b"data: " + json.dumps({"error": error}).encode() + b"\n\n"
    upstream = FakeUpstream(streamed([chunk_event("", role="assistant"), in_band]))

    seen, exc = error_of(upstream.provider(max_retries=0))

    assert seen == []
    assert type(exc) is ProviderUnavailableError


# --- cancellation closes the upstream response at once ---


def test_closing_the_iterator_early_closes_the_upstream_response() -> None:
    upstream = FakeUpstream(streamed(sse_events(fixture_bytes("chat_completions_stream.sse"))))
    provider = upstream.provider()

    async def body() -> None:
        items = provider.stream_chat(REQUEST)
        assert await anext(items) == TextDelta("Tokens")
        assert await anext(items) == TextDelta(" stream")
        (response_body,) = upstream.bodies
        assert not response_body.is_closed

        await close_iterator(items)

        # Closed by the time `aclose()` returns, not whenever the garbage collector gets to it.
        assert response_body.is_closed
        assert response_body.chunks_sent < len(response_body.chunks)
        await provider.aclose()

    run_async(body)


def test_cancelling_the_consumer_while_it_waits_for_a_token_closes_the_upstream_response() -> None:
    events = sse_events(fixture_bytes("chat_completions_stream.sse"))
    upstream = FakeUpstream(streamed(events[:3], then_hang=True))
    provider = upstream.provider()

    async def body() -> None:
        two_deltas = asyncio.Event()
        seen: list[StreamItem] = []

        async def consume() -> None:
            async for item in provider.stream_chat(REQUEST):
                seen.append(item)
                if len(seen) == 2:
                    two_deltas.set()

        task = asyncio.create_task(consume())
        await two_deltas.wait()
        (response_body,) = upstream.bodies
        # Let the consumer reach the stalled upstream read, then cancel it there.
        for _ in range(5):
            await asyncio.sleep(0)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        assert response_body.is_closed
        assert texts(seen) == ["Tokens", " stream"]
        await provider.aclose()

    run_async(body)


def test_cancelling_during_retry_backoff_does_not_retry() -> None:
    upstream = FakeUpstream(error_response(503, "overloaded", type="server_error"))
    provider = upstream.provider(max_retries=5, retry_backoff_s=30.0, max_retry_wait_s=30.0)

    class BackoffStarted(logging.Handler):
        # The retry warning is logged right before the backoff sleep, with no await in between.
        def __init__(self) -> None:
            super().__init__(logging.WARNING)
            self.event = asyncio.Event()

        def emit(self, record: logging.LogRecord) -> None:
            self.event.set()

    async def body() -> None:
        backoff = BackoffStarted()
        logger = logging.getLogger("providers.openai")
        logger.addHandler(backoff)
        try:
            task = asyncio.create_task(collect(provider.stream_chat(REQUEST)))
            await backoff.event.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            logger.removeHandler(backoff)
            await provider.aclose()

    run_async(body, timeout_s=5)
    assert upstream.calls == 1


def test_aclose_closes_the_http_client() -> None:
    upstream = FakeUpstream(streamed([chunk_event("Hi"), chunk_event(finish_reason="stop"), DONE_EVENT]))
    client = upstream.http_client()
    provider = upstream.provider(http_client=client)

    run_async(provider.aclose)

    assert client.is_closed


# --- secrets ---


def test_api_key_never_appears_in_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    # A compatible server that echoes the whole key back in its error message.
    echoed = f"Incorrect API key provided: {FAKE_API_KEY}. You can find your API key in your settings."
    upstream = FakeUpstream(
        error_response(503, f"overloaded (key {FAKE_API_KEY})", type="server_error"),
        error_response(401, echoed, code="invalid_api_key"),
    )

    with caplog.at_level(logging.DEBUG):
        _, exc = error_of(upstream.provider(max_retries=1))

    assert isinstance(exc, ProviderAuthError)
    assert upstream.calls == 2
    assert "[redacted]" in str(exc)
    for text in (str(exc), repr(exc), exc.message, caplog.text):
        assert FAKE_API_KEY not in text
    assert all(FAKE_API_KEY not in str(record.args) for record in caplog.records)


def test_in_band_error_messages_are_redacted_and_short() -> None:
    long_message = f"upstream exploded with key {FAKE_API_KEY} " + "x" * 1000
    in_band = json.dumps({"error": {"message": long_message, "type": "server_error"}}).encode()
    upstream = FakeUpstream(streamed([chunk_event("Hi"), b"data: " + in_band + b"\n\n"]))

    _, exc = error_of(upstream.provider())

    assert isinstance(exc, ProviderStreamError)
    assert FAKE_API_KEY not in str(exc)
    assert len(str(exc)) < 250


def test_a_placeholder_key_does_not_mangle_upstream_messages() -> None:
    # Keyless compatible servers get any non-empty key, such as "x"; it is no secret to redact.
    upstream = FakeUpstream(
        error_response(400, "max_tokens exceeds the context window", code="invalid_value")
    )

    _, exc = error_of(upstream.provider(api_key="x"))

    assert "max_tokens exceeds the context window" in str(exc)


def test_constructor_rejects_bad_settings_without_echoing_them() -> None:
    with pytest.raises(ValueError, match="api_key") as empty:
        OpenAIProvider(api_key="")
    with pytest.raises(ValueError, match="max_retries") as negative:
        OpenAIProvider(api_key=FAKE_API_KEY, max_retries=-1)
    with pytest.raises(ValueError, match="timeout"):
        OpenAIProvider(api_key=FAKE_API_KEY, timeout_s=0)
    with pytest.raises(TypeError, match="models"):
        OpenAIProvider(api_key=FAKE_API_KEY, models="gpt-4o-mini")
    assert FAKE_API_KEY not in str(negative.value) + str(empty.value)


# --- identity ---


def test_is_a_provider_named_openai_serving_its_configured_models() -> None:
    async def body() -> None:
        configured = OpenAIProvider(api_key=FAKE_API_KEY, base_url=BASE_URL, models=["gpt-4o-mini", "gpt-4o"])
        passthrough = OpenAIProvider(api_key=FAKE_API_KEY, base_url=BASE_URL)
        assert isinstance(configured, Provider)
        assert configured.name == "openai"
        assert configured.models() == ("gpt-4o-mini", "gpt-4o")
        assert passthrough.models() == ()
        await configured.aclose()
        await passthrough.aclose()

    run_async(body)


# --- cold start ---


def test_importing_the_module_does_not_import_the_sdk() -> None:
    probe = (
        "import json, sys\n"
        "import providers.openai\n"
        "before = {name: name in sys.modules for name in ('openai', 'httpx2')}\n"
        "providers.openai.OpenAIProvider(api_key='sk-test', base_url='http://127.0.0.1:9/v1')\n"
        "after = 'openai' in sys.modules\n"
        "print(json.dumps({'before': before, 'after': after}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )

    report = json.loads(result.stdout)
    assert report["before"] == {"openai": False, "httpx2": False}
    assert report["after"] is True  # the SDK does load once a provider is built


# --- trace context ---


def test_the_trace_context_goes_upstream_as_headers() -> None:
    upstream = FakeUpstream(streamed(sse_events(fixture_bytes("chat_completions_stream.sse"))))
    traced = msgspec.structs.replace(
        REQUEST,
        trace=TraceContext(
            traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            tracestate="rojo=00f067aa0ba902b7",
            xray="Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1",
        ),
    )

    stream_and_close(upstream.provider(), traced)
    stream_and_close(upstream.provider(), REQUEST)

    with_trace, without = upstream.requests
    assert with_trace.headers["traceparent"] == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert with_trace.headers["tracestate"] == "rojo=00f067aa0ba902b7"
    assert with_trace.headers["x-amzn-trace-id"] == "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"
    assert not {"traceparent", "tracestate", "x-amzn-trace-id"} & set(without.headers.keys())
    # Metadata, not a generation parameter: nothing of it in the body.
    assert "trace" not in json.loads(with_trace.content)
