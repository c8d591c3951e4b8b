"""The limit: a bare ASGI callable that streams the same provider as the same SSE bytes, and nothing else.

No framework, no session (no queue, budgets, heartbeats, cancel checks or logs), no disconnect listener:
what is left is the provider, msgspec and `app.stream.dialects.sse` framing, and one `send` per event. The
distance between this and our endpoints is exactly our framework and session overhead.
"""

from __future__ import annotations

import time
import urllib.parse
from typing import Any

import msgspec

from app.http.requests import to_chat_message
from app.schemas import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChunkChoice,
    ChunkDelta,
    DeltaEvent,
    DoneEvent,
    StartEvent,
    Timings,
    UsageInfo,
)
from app.stream.dialects import sse
from app.stream.dialects.sse import EVENT_STREAM_HEADERS
from bench.workload import ASGIApp
from providers.protocol import (
    ChatMessage,
    ChatRequest,
    Finish,
    FinishReason,
    MockDirectives,
    Provider,
    TextDelta,
)

_HEADERS = [(k.lower().encode(), v.encode()) for k, v in EVENT_STREAM_HEADERS.items()]
_encode = msgspec.json.Encoder().encode
_chat_decoder = msgspec.json.Decoder(ChatCompletionRequest)
_mock_decoder = msgspec.json.Decoder(MockDirectives)


def create_bare_app(provider: Provider, *, default_model: str = "mock") -> ASGIApp:
    """`GET /v1/stream` and streamed `POST /v1/chat/completions`, bare."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["path"] == "/v1/stream":
            params = dict(urllib.parse.parse_qsl(scope["query_string"].decode()))
            max_tokens = params.get("max_tokens")
            mock = params.get("mock")
            request = ChatRequest(
                model=params.get("model") or default_model,
                messages=(ChatMessage(role="user", content=params["prompt"]),),
                max_tokens=int(max_tokens) if max_tokens else None,
                mock=_mock_decoder.decode(mock) if mock else None,
            )
            await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
            await _native(provider, request, send)
        else:
            body = b""
            more = True
            while more:
                message = await receive()
                body += message.get("body", b"")
                more = message.get("more_body", False)
            chat = _chat_decoder.decode(body)
            request = ChatRequest(
                model=chat.model or default_model,
                messages=tuple(to_chat_message(m, i) for i, m in enumerate(chat.messages)),
                max_tokens=chat.max_tokens,
                mock=chat.mock,
            )
            await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
            await _openai(provider, request, send)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    return app


async def _native(provider: Provider, request: ChatRequest, send: Any) -> None:
    started = time.perf_counter()
    start = StartEvent(
        stream_id="bare", model=request.model, provider=provider.name, created=int(time.time())
    )
    first = sse.event(_encode(start), name="start", event_id="1")
    await send({"type": "http.response.body", "body": first, "more_body": True})
    sequence = 1
    async for item in provider.stream_chat(request):
        sequence += 1
        if isinstance(item, TextDelta):
            frame = sse.event(_encode(DeltaEvent(text=item.text)), name="delta", event_id=str(sequence))
        else:
            assert isinstance(item, Finish)
            done = DoneEvent(
                finish_reason=item.reason,
                outcome="completed",
                usage=UsageInfo.of(item.usage),
                timings=Timings(ttft_ms=None, duration_ms=(time.perf_counter() - started) * 1000),
            )
            frame = sse.event(_encode(done), name="done", event_id=str(sequence))
        await send({"type": "http.response.body", "body": frame, "more_body": True})


async def _openai(provider: Provider, request: ChatRequest, send: Any) -> None:
    created = int(time.time())

    def chunk(delta: ChunkDelta, finish_reason: FinishReason | None = None) -> bytes:
        body = ChatCompletionChunk(
            id="chatcmpl-bare",
            created=created,
            model=request.model,
            choices=[ChunkChoice(index=0, delta=delta, finish_reason=finish_reason)],
        )
        return sse.event(_encode(body))

    first = chunk(ChunkDelta(role="assistant", content=""))
    await send({"type": "http.response.body", "body": first, "more_body": True})
    async for item in provider.stream_chat(request):
        if isinstance(item, TextDelta):
            frame = chunk(ChunkDelta(content=item.text))
        elif isinstance(item, Finish):
            frame = chunk(ChunkDelta(), item.reason) + sse.OPENAI_DONE
        await send({"type": "http.response.body", "body": frame, "more_body": True})
