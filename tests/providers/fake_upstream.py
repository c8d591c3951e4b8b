"""A fake OpenAI upstream behind the SDK's HTTP transport: scripted responses, recorded requests and bodies.

Only the transport is fake (`httpx2.MockTransport` passed through `http_client=`): the SDK builds, sends,
retries and parses exactly as it does against api.openai.com.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx2

from providers.openai import OpenAIProvider

FIXTURES = Path(__file__).parent / "fixtures"
BASE_URL = "http://upstream.test/v1"
# Recognisable, so that a leak anywhere (messages, logs) is easy to assert against.
FAKE_API_KEY = "sk-test-TOKENRELAY-FAKE-KEY-0123456789abcdef"

SSE_HEADERS = {
    "content-type": "text/event-stream; charset=utf-8",
    "openai-processing-ms": "212",
    "x-request-id": "req_0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e",
}


def fixture_bytes(name: str) -> bytes:
    """The bytes of a recorded-format stream from `fixtures/`."""
    return (FIXTURES / name).read_bytes()


def sse_events(body: bytes) -> list[bytes]:
    """Split an SSE body into its events, each with its blank-line terminator, as a server flushes them."""
    return [event + b"\n\n" for event in body.split(b"\n\n") if event]


def chunk_event(
    content: str | None = None,
    *,
    role: str | None = None,
    finish_reason: str | None = None,
    usage: Mapping[str, int] | None = None,
    model: str = "gpt-4o-mini-2024-07-18",
) -> bytes:
    """One `chat.completion.chunk` event in OpenAI's wire format."""
    choices: list[dict[str, Any]] = []
    if usage is None:
        delta: dict[str, str] = {} if role is None else {"role": role}
        if content is not None:
            delta["content"] = content
        choices.append({"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason})
    body = {
        "id": "chatcmpl-fake0000000000000000000000000",
        "object": "chat.completion.chunk",
        "created": 1749653210,
        "model": model,
        "system_fingerprint": "fp_34a54ae93c",
        "choices": choices,
        "usage": dict(usage) if usage is not None else None,
    }
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


DONE_EVENT = b"data: [DONE]\n\n"


async def close_iterator(items: AsyncIterator[Any]) -> None:
    """`aclose()` a provider's stream, as the app does: the protocol promises a closable iterator."""
    close = getattr(items, "aclose", None)
    assert close is not None, "stream_chat must return an iterator with aclose()"
    await close()


class StreamBody(httpx2.AsyncByteStream):
    """A response body that yields its chunks one network read at a time and records when it is closed."""

    def __init__(
        self,
        chunks: Sequence[bytes],
        *,
        then_raise: Exception | None = None,
        then_hang: bool = False,
    ) -> None:
        self.chunks = list(chunks)
        self.then_raise = then_raise
        self.then_hang = then_hang
        self.chunks_sent = 0
        self.closed = asyncio.Event()

    @property
    def is_closed(self) -> bool:
        return self.closed.is_set()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            # A socket read suspends; so does this, so the consumer can be cancelled between chunks.
            await asyncio.sleep(0)
            self.chunks_sent += 1
            yield chunk
        if self.then_raise is not None:
            raise self.then_raise
        if self.then_hang:
            # An upstream that is slow to produce the next token: wait until cancelled or closed.
            await self.closed.wait()

    async def aclose(self) -> None:
        self.closed.set()


Step = Callable[[httpx2.Request], httpx2.Response] | httpx2.Response | Exception


class FakeUpstream:
    """Answers each request with the next scripted step (the last one repeats) and records everything."""

    def __init__(self, *steps: Step) -> None:
        if not steps:
            raise ValueError("script at least one step")
        self.steps = steps
        self.requests: list[httpx2.Request] = []
        self.bodies: list[StreamBody] = []

    @property
    def calls(self) -> int:
        return len(self.requests)

    def json_bodies(self) -> list[dict[str, Any]]:
        bodies: list[dict[str, Any]] = [json.loads(request.content) for request in self.requests]
        return bodies

    def open_bodies(self) -> int:
        """How many streamed response bodies have not been closed yet."""
        return sum(not body.is_closed for body in self.bodies)

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        step = self.steps[min(len(self.requests), len(self.steps)) - 1]
        if isinstance(step, Exception):
            raise step
        response = step if isinstance(step, httpx2.Response) else step(request)
        if isinstance(response.stream, StreamBody):
            self.bodies.append(response.stream)
        return response

    def http_client(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(transport=httpx2.MockTransport(self.handle))

    def provider(self, **overrides: Any) -> OpenAIProvider:
        options: dict[str, Any] = {
            "api_key": FAKE_API_KEY,
            "base_url": BASE_URL,
            "retry_backoff_s": 0.001,
            "max_retry_wait_s": 0.05,
            "http_client": self.http_client(),
        }
        options.update(overrides)
        return OpenAIProvider(**options)


def stream_response(
    chunks: Sequence[bytes],
    *,
    then_raise: Exception | None = None,
    then_hang: bool = False,
) -> httpx2.Response:
    """A 200 `text/event-stream` response whose body is sent chunk by chunk."""
    body = StreamBody(chunks, then_raise=then_raise, then_hang=then_hang)
    return httpx2.Response(200, headers=SSE_HEADERS, stream=body)


def streamed(
    chunks: Sequence[bytes], *, then_raise: Exception | None = None, then_hang: bool = False
) -> Callable[[httpx2.Request], httpx2.Response]:
    """A step that builds a fresh streamed response per request (a body can be read only once)."""
    return lambda _request: stream_response(chunks, then_raise=then_raise, then_hang=then_hang)


def error_response(
    status: int,
    message: str,
    *,
    type: str = "invalid_request_error",
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Callable[[httpx2.Request], httpx2.Response]:
    """A step answering with OpenAI's JSON error body."""
    body = {"error": {"message": message, "type": type, "param": None, "code": code}}

    def respond(_request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(status, json=body, headers=dict(headers or {}))

    return respond


def echo_stream(request: httpx2.Request) -> httpx2.Response:
    """A deterministic upstream for any request: the last user message back, word by word, then usage."""
    payload = json.loads(request.content)
    messages = payload["messages"]
    last_user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    words = f"You said: {last_user}".split(" ")
    tokens = [words[0], *(f" {word}" for word in words[1:])]
    prompt_tokens = sum(len(str(m["content"]).split()) + 4 for m in messages)
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(tokens), "total_tokens": 0}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    model = payload["model"]
    events = [
        chunk_event("", role="assistant", model=model),
        *(chunk_event(token, model=model) for token in tokens),
        chunk_event(finish_reason="stop", model=model),
        chunk_event(usage=usage, model=model),
        DONE_EVENT,
    ]
    return stream_response(events)
