"""Over a real socket: uvicorn on 127.0.0.1 in a thread, asyncio httpx (and the openai SDK) as clients.

Timing, disconnects and concurrency can only be seen here: in-process test clients buffer the response.
Every test waits on real events (a frame arriving, a log record, a counter) under a timeout guard.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import msgspec
import pytest
from httpx_sse import aconnect_sse

from app.settings import Secret
from providers.mock import MockProvider
from providers.protocol import ChatRequest, StreamItem
from tests.app.conftest import AppFactory, LogCapture, ServeFactory
from tests.app.helpers import expected_prompt_tokens, expected_tokens, user
from tests.support.server import RunningServer
from tests.support.timeouts import run_async

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionChunk

_PROMPT = "How does a token relay stay responsive?"


async def _stream_ended(log: LogCapture) -> dict[str, Any]:
    """Wait (off the loop) for the server's one `stream_end` line.

    The session writes it after the provider's generator has been closed, so by then the mock's
    `active_streams` and `tokens_emitted` are final.
    """
    [end] = await asyncio.to_thread(log.wait_for, "stream_end", 1)
    return end


@dataclass
class Arrival:
    """When each native event reached the client, and how far the provider was at that moment."""

    kind: str
    data: dict[str, Any]
    at: float
    tokens_emitted: int


@dataclass
class Trace:
    arrivals: list[Arrival] = field(default_factory=list)

    def of(self, kind: str) -> list[Arrival]:
        return [arrival for arrival in self.arrivals if arrival.kind == kind]


# --- first byte, no buffering ---


def test_the_first_token_arrives_long_before_the_provider_finishes(
    make_app: AppFactory, serve: ServeFactory, provider: MockProvider
) -> None:
    tokens = expected_tokens(_PROMPT)
    trace = Trace()

    async def body() -> float:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
            started = time.perf_counter()
            request = {"messages": user(_PROMPT), "mock": {"delay_ms": 10}}
            async with aconnect_sse(client, "POST", "/v1/stream", json=request) as source:
                async for event in source.aiter_sse():
                    trace.arrivals.append(
                        Arrival(
                            event.event,
                            msgspec.json.decode(event.data),
                            time.perf_counter(),
                            provider.tokens_emitted,
                        )
                    )
            return started

    with serve(make_app()) as server:
        started = run_async(body, timeout_s=20)

    deltas, [done] = trace.of("delta"), trace.of("done")
    assert [arrival.data["text"] for arrival in deltas] == tokens
    # The provider had made only a few of its tokens when the first one reached the client...
    assert deltas[0].tokens_emitted <= 5
    # ...and the tokens kept arriving while later ones were still being made: nothing was held back.
    assert all(arrival.tokens_emitted < len(tokens) for arrival in deltas[: len(tokens) - 10])
    first_ms, done_ms = (deltas[0].at - started) * 1000, (done.at - started) * 1000
    assert done_ms >= len(tokens) * 10  # the pacing really happened (a lower bound: load cannot break it)
    print(
        f"\nfirst delta after {first_ms:.1f} ms, done after {done_ms:.1f} ms ({len(tokens)} tokens at 10 ms)"
    )


def test_the_first_chat_chunk_arrives_before_the_provider_finishes(
    make_app: AppFactory, serve: ServeFactory, provider: MockProvider
) -> None:
    total = len(expected_tokens(_PROMPT))

    async def body() -> tuple[int, int]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
            request = {"messages": user(_PROMPT), "stream": True, "mock": {"delay_ms": 10}}
            async with aconnect_sse(client, "POST", "/v1/chat/completions", json=request) as source:
                emitted_at_first_content: int | None = None
                async for event in source.aiter_sse():
                    if event.data == "[DONE]":
                        return emitted_at_first_content or -1, provider.tokens_emitted
                    content = msgspec.json.decode(event.data)["choices"][0]["delta"].get("content")
                    if content and emitted_at_first_content is None:
                        emitted_at_first_content = provider.tokens_emitted
        raise AssertionError("the stream ended without [DONE]")

    with serve(make_app()) as server:
        at_first, at_done = run_async(body, timeout_s=20)

    assert 1 <= at_first <= 5
    assert at_done == total


# --- disconnects ---


def _is_token(data: dict[str, Any]) -> bool:
    """A native `delta`, a Responses text delta, or a chat chunk with content (not the role-only one)."""
    if data.get("type") in ("delta", "response.output_text.delta"):
        return True
    choices = data.get("choices") or [{}]
    return bool(choices[0].get("delta", {}).get("content"))


@pytest.mark.parametrize(
    ("path", "request_body"),
    [
        ("/v1/stream", {"messages": user(_PROMPT), "mock": {"delay_ms": 20}}),
        ("/v1/chat/completions", {"messages": user(_PROMPT), "stream": True, "mock": {"delay_ms": 20}}),
        ("/v1/responses", {"input": _PROMPT, "stream": True, "mock": {"delay_ms": 20}}),
    ],
)
def test_a_client_that_disconnects_mid_stream_cancels_the_generation(
    make_app: AppFactory,
    serve: ServeFactory,
    provider: MockProvider,
    log_capture: LogCapture,
    path: str,
    request_body: dict[str, Any],
) -> None:
    total = len(expected_tokens(_PROMPT))

    async def body() -> tuple[int, int]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
            received = 0
            async with client.stream("POST", path, json=request_body) as response:
                assert response.status_code == 200
                async for line in response.aiter_lines():
                    if line.startswith("data: {") and _is_token(msgspec.json.decode(line[6:])):
                        received += 1
                        if received == 5:
                            break
            # Leaving the block closes the connection mid-body.
            at_close = provider.tokens_emitted
            await _stream_ended(log_capture)
            return at_close, received

    with serve(make_app()) as server:
        at_close, received = run_async(body, timeout_s=20)
        [end] = log_capture.stream_ends
        after_end = provider.tokens_emitted

    assert received == 5
    assert end["outcome"] == "cancelled"
    assert provider.active_streams == 0
    assert after_end - at_close <= 2  # at most the token in the making when the client left
    assert after_end < total / 2
    print(f"\ndisconnect after {received} deltas: provider stopped at {after_end} of {total} tokens")


def test_a_client_that_leaves_during_heartbeats_cancels_a_silent_provider(
    make_app: AppFactory, serve: ServeFactory, provider: MockProvider, log_capture: LogCapture
) -> None:
    async def body() -> None:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
            request = {"messages": user(_PROMPT), "mock": {"stall_ms": 60_000}}
            async with client.stream("POST", "/v1/stream", json=request) as response:
                assert response.status_code == 200
                async for line in response.aiter_lines():
                    if line == ": ping":
                        break
            await _stream_ended(log_capture)

    with serve(make_app(heartbeat_interval_s=0.05)) as server:
        run_async(body, timeout_s=20)
        [end] = log_capture.stream_ends

    assert (end["outcome"], provider.tokens_emitted, provider.active_streams) == ("cancelled", 0, 0)


async def _leave_before_the_answer(
    client: httpx.AsyncClient, request: httpx.Request, provider: MockProvider
) -> None:
    """Send the request, then hang up while the server is still silent (no status line yet).

    It hangs up once the provider is generating, not after a fixed time: on a loaded machine a fixed
    time could end before the server has even read the request, and then there is nothing to cancel.
    """
    sending = asyncio.create_task(client.send(request, stream=True))
    async with asyncio.timeout(10):
        while provider.active_streams == 0:
            assert not sending.done(), "the server answered before the provider started"
            await asyncio.sleep(0.01)
    sending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sending


@pytest.mark.parametrize(
    ("method", "path", "request_body"),
    [
        ("POST", "/v1/stream", {"messages": user(_PROMPT), "mock": {"stall_ms": 8000}}),
        ("GET", "/v1/stream?prompt=hi&mock=%7B%22stall_ms%22%3A8000%7D", None),
        (
            "POST",
            "/v1/chat/completions",
            {"messages": user(_PROMPT), "stream": True, "mock": {"stall_ms": 8000}},
        ),
    ],
)
def test_a_disconnect_before_the_first_token_cancels_the_generation(
    make_app: AppFactory,
    serve: ServeFactory,
    provider: MockProvider,
    log_capture: LogCapture,
    method: str,
    path: str,
    request_body: dict[str, Any] | None,
) -> None:
    # The mock stays silent for 8 s, longer than `_stream_ended` waits: only a noticed disconnect ends it.
    async def body() -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
            await _leave_before_the_answer(
                client, client.build_request(method, path, json=request_body), provider
            )
            return await _stream_ended(log_capture)

    with serve(make_app()) as server:
        end = run_async(body, timeout_s=20)

    assert end["outcome"] == "cancelled"
    assert (provider.tokens_emitted, provider.active_streams) == (0, 0)


def test_a_non_streamed_completion_is_cancelled_when_its_client_leaves(
    make_app: AppFactory, serve: ServeFactory, provider: MockProvider, log_capture: LogCapture
) -> None:
    # 2,000 tokens at 20 ms would take 40 s: only a noticed disconnect ends it within `_stream_ended`.
    request_body = {"messages": user(_PROMPT), "mock": {"delay_ms": 20, "repeat": 20}, "max_tokens": 2000}

    async def body() -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
            request = client.build_request("POST", "/v1/chat/completions", json=request_body)
            await _leave_before_the_answer(client, request, provider)
            return await _stream_ended(log_capture)

    with serve(make_app()) as server:
        end = run_async(body, timeout_s=20)

    assert end["outcome"] == "cancelled"
    assert provider.active_streams == 0
    assert provider.tokens_emitted < 100


def test_a_stream_can_be_cancelled_only_with_the_key_that_started_it(
    make_app: AppFactory, serve: ServeFactory, log_capture: LogCapture
) -> None:
    owner, other = {"authorization": "Bearer key-a"}, {"authorization": "Bearer key-b"}

    async def body() -> tuple[int, int, str]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
            request = {"messages": user(_PROMPT), "mock": {"delay_ms": 20}}
            async with aconnect_sse(client, "POST", "/v1/stream", json=request, headers=owner) as source:
                events = source.aiter_sse()
                stream_id = msgspec.json.decode((await anext(events)).data)["stream_id"]
                refused = await client.post(f"/v1/streams/{stream_id}/cancel", headers=other)
                accepted = await client.post(f"/v1/streams/{stream_id}/cancel", headers=owner)
                last = [event async for event in events][-1]
            return refused.status_code, accepted.status_code, msgspec.json.decode(last.data)["error"]["code"]

    with serve(make_app(api_keys=(Secret("key-a"), Secret("key-b")))) as server:
        refused, accepted, code = run_async(body, timeout_s=20)
        [end] = log_capture.wait_for("stream_end", 1)

    assert (refused, accepted, code) == (404, 202, "cancelled")  # another key's stream: as if unknown
    assert end["outcome"] == "cancelled"


def test_an_explicit_cancel_stops_a_running_stream_with_a_terminal_event(
    make_app: AppFactory, serve: ServeFactory, provider: MockProvider, log_capture: LogCapture
) -> None:
    async def body() -> tuple[list[str], dict[str, Any], int, int]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
            kinds: list[str] = []
            request = {"messages": user(_PROMPT), "mock": {"delay_ms": 20}}
            async with aconnect_sse(client, "POST", "/v1/stream", json=request) as source:
                stream_id = ""
                accepted: dict[str, Any] = {}
                async for event in source.aiter_sse():
                    kinds.append(event.event)
                    data = msgspec.json.decode(event.data)
                    if event.event == "start":
                        stream_id = data["stream_id"]
                    if kinds.count("delta") == 2 and not accepted:
                        answer = await client.post(f"/v1/streams/{stream_id}/cancel")
                        assert answer.status_code == 202
                        accepted = answer.json()
                    if event.event == "error":
                        assert data["error"]["code"] == "cancelled"
            again = await client.post(f"/v1/streams/{stream_id}/cancel")
            return kinds, accepted, again.status_code, provider.tokens_emitted

    with serve(make_app()) as server:
        kinds, accepted, again, emitted = run_async(body, timeout_s=20)
        [end] = log_capture.wait_for("stream_end", 1)

    assert accepted["status"] == "cancelling"
    assert kinds[0] == "start"
    assert kinds[-1] == "error"
    assert "done" not in kinds
    assert again == 404  # the stream is gone from the registry
    assert emitted < len(expected_tokens(_PROMPT)) / 2
    assert end["outcome"] == "cancelled"
    assert provider.active_streams == 0


@pytest.mark.parametrize("path", ["/v1/stream", "/v1/chat/completions"])
def test_an_in_band_error_ends_the_http_response_cleanly(
    make_app: AppFactory, serve: ServeFactory, path: str
) -> None:
    async def body() -> tuple[bytes, bytes]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
            request = {"messages": user(_PROMPT), "stream": True, "mock": {"fail_after": 2}}
            if path == "/v1/stream":
                del request["stream"]
            # A truncated chunked body would raise here (httpx.RemoteProtocolError).
            failed = await client.post(path, json=request)
            assert failed.status_code == 200
            # ...and the connection is still good for the next request.
            healthy = await client.get("/healthz")
            return failed.content, healthy.content

    with serve(make_app()) as server:
        failed, healthy = run_async(body, timeout_s=20)

    last = failed.rstrip(b"\n").rsplit(b"\n\n", 1)[-1]
    assert b'"code":"upstream_stream_error"' in last
    assert b"[DONE]" not in failed
    assert msgspec.json.decode(healthy)["status"] == "ok"


# --- concurrency ---


class GatedMock(MockProvider):
    """The mock, holding every stream back until `expected` of them are open at once.

    Opening the gate proves the server held all the streams simultaneously; were it serving them one at
    a time, the gate would never open and the test would time out.
    """

    def __init__(self, expected: int) -> None:
        super().__init__(token_delay_s=0)
        self.expected = expected
        self.waiting = 0
        self.peak_active = 0
        self._gate: asyncio.Event | None = None

    async def stream_chat(self, request: ChatRequest) -> AsyncIterator[StreamItem]:
        if self._gate is None:
            self._gate = asyncio.Event()  # created on the server's loop
        self.waiting += 1
        if self.waiting == self.expected:
            self._gate.set()
        await self._gate.wait()
        async for item in super().stream_chat(request):
            self.peak_active = max(self.peak_active, self.active_streams)
            yield item


_STREAMS = 300


def test_hundreds_of_simultaneous_streams_deliver_every_token_in_order(
    make_app: AppFactory, serve: ServeFactory, log_capture: LogCapture
) -> None:
    gated = GatedMock(_STREAMS)
    prompts = [f"Question {index}: what keeps stream {index} alive?" for index in range(_STREAMS)]

    async def one(client: httpx.AsyncClient, index: int) -> tuple[list[str], dict[str, Any]]:
        prompt = prompts[index]
        texts: list[str] = []
        if index % 2 == 0:
            async with aconnect_sse(client, "POST", "/v1/stream", json={"messages": user(prompt)}) as source:
                async for event in source.aiter_sse():
                    data = msgspec.json.decode(event.data)
                    if event.event == "delta":
                        texts.append(data["text"])
                    elif event.event == "done":
                        return texts, data["usage"]
        else:
            request = {"messages": user(prompt), "stream": True, "stream_options": {"include_usage": True}}
            async with aconnect_sse(client, "POST", "/v1/chat/completions", json=request) as source:
                usage: dict[str, Any] = {}
                async for event in source.aiter_sse():
                    if event.data == "[DONE]":
                        return texts, usage
                    chunk = msgspec.json.decode(event.data)
                    if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                        texts.append(chunk["choices"][0]["delta"]["content"])
                    if chunk.get("usage"):
                        usage = chunk["usage"]
        raise AssertionError(f"stream {index} ended without its terminal event")

    async def body() -> tuple[list[tuple[list[str], dict[str, Any]]], float]:
        limits = httpx.Limits(max_connections=_STREAMS + 50, max_keepalive_connections=_STREAMS + 50)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30, limits=limits) as client:
            started = time.perf_counter()
            results = await asyncio.gather(*(one(client, index) for index in range(_STREAMS)))
            return results, time.perf_counter() - started

    with serve(make_app(gated)) as server:
        results, elapsed_s = run_async(body, timeout_s=50)
        ends = log_capture.wait_for("stream_end", _STREAMS)

    for index, (texts, usage) in enumerate(results):
        expected = expected_tokens(prompts[index])
        assert texts == expected, f"stream {index} lost or reordered tokens"
        assert usage["completion_tokens"] == len(expected)
        assert usage["prompt_tokens"] == expected_prompt_tokens(prompts[index])
    assert gated.peak_active == _STREAMS
    assert gated.active_streams == 0
    assert gated.tokens_emitted == sum(len(expected_tokens(prompt)) for prompt in prompts)
    assert len(ends) == _STREAMS
    assert {end["outcome"] for end in ends} == {"completed"}
    assert len({end["request_id"] for end in ends}) == _STREAMS
    print(
        f"\n{_STREAMS} simultaneous streams, {gated.tokens_emitted} tokens, all intact in {elapsed_s:.2f} s"
    )


# --- the official openai SDK as the client ---


@pytest.fixture
def openai_server(make_app: AppFactory, serve: ServeFactory) -> Iterator[RunningServer]:
    with serve(make_app()) as server:
        yield server


def test_openai_sdk_streams_a_chat_completion(openai_server: RunningServer) -> None:
    import openai

    with openai.OpenAI(
        base_url=f"{openai_server.base_url}/v1", api_key="x", max_retries=0, timeout=10
    ) as client:
        stream = client.chat.completions.create(
            model="mock",
            messages=[{"role": "user", "content": _PROMPT}],
            stream=True,
            stream_options={"include_usage": True},
        )
        with stream:
            chunks = list(stream)

    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert texts == expected_tokens(_PROMPT)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "stop"
    ]
    usage = chunks[-1].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (expected_prompt_tokens(_PROMPT), len(texts))


def test_openai_sdk_gets_a_whole_completion_and_lists_models(openai_server: RunningServer) -> None:
    import openai

    with openai.OpenAI(
        base_url=f"{openai_server.base_url}/v1", api_key="x", max_retries=0, timeout=10
    ) as client:
        completion = client.chat.completions.create(
            model="mock", messages=[{"role": "user", "content": _PROMPT}], max_tokens=12
        )
        models = client.models.list()

    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "".join(expected_tokens(_PROMPT)[:12])
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 12
    assert [model.id for model in models] == ["mock"]


def _contents(chunks: Iterable[ChatCompletionChunk]) -> Iterator[str]:
    for chunk in chunks:
        if chunk.choices and chunk.choices[0].delta.content:
            yield chunk.choices[0].delta.content


def test_openai_sdk_raises_api_error_for_a_mid_stream_failure(openai_server: RunningServer) -> None:
    import openai

    received: list[str] = []
    with openai.OpenAI(
        base_url=f"{openai_server.base_url}/v1", api_key="x", max_retries=0, timeout=10
    ) as client:
        stream = client.chat.completions.create(
            model="mock",
            messages=[{"role": "user", "content": _PROMPT}],
            stream=True,
            extra_body={"mock": {"fail_after": 3}},
        )
        with stream, pytest.raises(openai.APIError) as caught:
            received.extend(_contents(stream))

    assert received == expected_tokens(_PROMPT)[:3]
    assert not isinstance(caught.value, openai.APIStatusError)  # in-band, after a 200
    assert "mock failure" in caught.value.message


@pytest.mark.parametrize("stream", [True, False])
def test_openai_sdk_raises_rate_limit_error_before_the_first_token(
    openai_server: RunningServer, stream: bool
) -> None:
    import openai

    with (
        openai.OpenAI(
            base_url=f"{openai_server.base_url}/v1", api_key="x", max_retries=0, timeout=10
        ) as client,
        pytest.raises(openai.RateLimitError) as caught,
    ):
        client.chat.completions.create(
            model="mock",
            messages=[{"role": "user", "content": _PROMPT}],
            stream=stream,
            extra_body={"mock": {"error": "rate_limit"}},
        )

    assert caught.value.status_code == 429
    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.response.headers["retry-after"] == "1"


def test_async_openai_sdk_streams_with_mock_pacing(openai_server: RunningServer) -> None:
    import openai

    async def body() -> list[str]:
        async with openai.AsyncOpenAI(
            base_url=f"{openai_server.base_url}/v1", api_key="x", max_retries=0, timeout=10
        ) as client:
            stream = await client.chat.completions.create(
                model="mock",
                messages=[{"role": "user", "content": _PROMPT}],
                stream=True,
                max_tokens=10,
                extra_body={"mock": {"delay_ms": 5}},
            )
            async with stream:
                return [
                    c.choices[0].delta.content
                    async for c in stream
                    if c.choices and c.choices[0].delta.content
                ]

    assert run_async(body, timeout_s=20) == expected_tokens(_PROMPT)[:10]


def test_openai_sdk_with_api_keys(make_app: AppFactory, serve: ServeFactory) -> None:
    import openai

    with serve(make_app(api_keys=(Secret("tr-key-1"),))) as server:
        base_url = f"{server.base_url}/v1"
        with openai.OpenAI(base_url=base_url, api_key="tr-key-1", max_retries=0, timeout=10) as client:
            assert [model.id for model in client.models.list()] == ["mock"]
        with (
            openai.OpenAI(base_url=base_url, api_key="wrong", max_retries=0, timeout=10) as client,
            pytest.raises(openai.AuthenticationError) as caught,
        ):
            client.chat.completions.create(model="mock", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "invalid_api_key"


# --- a client that stops reading ---


def _request_and_stop_reading(server: RunningServer, body: dict[str, Any]) -> socket.socket:
    """POST a long stream, read nothing, stay connected: with a small receive buffer, the server's writes
    soon wait on this client. The caller closes the socket."""
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect((server.host, server.port))
    payload = msgspec.json.encode(body)
    head = (
        f"POST /v1/stream HTTP/1.1\r\nHost: {server.host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode()
    client.sendall(head + payload)
    return client


_FLOOD = {"messages": user(_PROMPT), "max_tokens": 100_000, "mock": {"repeat": 1000}}


@pytest.mark.parametrize(
    ("limits", "outcome"),
    [
        ({"stream_deadline_s": 1.0}, "deadline"),
        ({"stream_send_timeout_s": 0.5}, "stalled"),
    ],
    ids=["the deadline", "the send timeout"],
)
def test_budgets_hold_against_a_client_that_stops_reading(
    make_app: AppFactory,
    serve: ServeFactory,
    provider: MockProvider,
    log_capture: LogCapture,
    limits: dict[str, Any],
    outcome: str,
) -> None:
    # Without a bound on the writer, the session (blocked behind it) would wait on this client forever:
    # `log_capture.wait_for` would then fail after its 5 s.
    with serve(make_app(max_tokens_limit=100_000, **limits)) as server:
        client = _request_and_stop_reading(server, _FLOOD)
        try:
            [end] = log_capture.wait_for("stream_end", 1)
        finally:
            client.close()

    assert end["outcome"] == outcome
    assert provider.active_streams == 0
    assert provider.tokens_emitted < 100_000
