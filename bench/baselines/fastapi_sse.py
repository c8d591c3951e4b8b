"""The reference: FastAPI + sse-starlette streaming the same provider as the same SSE bytes.

Written the way their documentation suggests (an `EventSourceResponse` over an async generator of
event dicts), with the same msgspec encoding as ours, so that what differs is the framework.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from fastapi import FastAPI, Request
from sse_starlette import EventSourceResponse

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
from providers.protocol import (
    ChatMessage,
    ChatRequest,
    Finish,
    FinishReason,
    MockDirectives,
    Provider,
    TextDelta,
)

_encode = msgspec.json.Encoder().encode
_chat_decoder = msgspec.json.Decoder(ChatCompletionRequest)
_mock_decoder = msgspec.json.Decoder(MockDirectives)


def create_fastapi_app(provider: Provider, *, default_model: str = "mock") -> FastAPI:
    """`GET /v1/stream` and streamed `POST /v1/chat/completions`, the FastAPI way."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/v1/stream")
    async def stream(
        prompt: str, max_tokens: int | None = None, model: str | None = None, mock: str | None = None
    ) -> EventSourceResponse:
        request = ChatRequest(
            model=model or default_model,
            messages=(ChatMessage(role="user", content=prompt),),
            max_tokens=max_tokens,
            mock=_mock_decoder.decode(mock) if mock else None,
        )
        return EventSourceResponse(_native(provider, request), sep="\n")

    @app.post("/v1/chat/completions")
    async def chat_completions(raw: Request) -> EventSourceResponse:
        chat = _chat_decoder.decode(await raw.body())
        request = ChatRequest(
            model=chat.model or default_model,
            messages=tuple(to_chat_message(m, i) for i, m in enumerate(chat.messages)),
            max_tokens=chat.max_tokens,
            mock=chat.mock,
        )
        return EventSourceResponse(_openai(provider, request), sep="\n")

    return app


async def _native(provider: Provider, request: ChatRequest) -> AsyncIterator[dict[str, Any]]:
    started = time.perf_counter()
    start = StartEvent(
        stream_id="fastapi", model=request.model, provider=provider.name, created=int(time.time())
    )
    yield {"event": "start", "id": "1", "data": _encode(start).decode()}
    sequence = 1
    async for item in provider.stream_chat(request):
        sequence += 1
        if isinstance(item, TextDelta):
            yield {
                "event": "delta",
                "id": str(sequence),
                "data": _encode(DeltaEvent(text=item.text)).decode(),
            }
        else:
            assert isinstance(item, Finish)
            done = DoneEvent(
                finish_reason=item.reason,
                outcome="completed",
                usage=UsageInfo.of(item.usage),
                timings=Timings(ttft_ms=None, duration_ms=(time.perf_counter() - started) * 1000),
            )
            yield {"event": "done", "id": str(sequence), "data": _encode(done).decode()}


async def _openai(provider: Provider, request: ChatRequest) -> AsyncIterator[dict[str, Any]]:
    created = int(time.time())

    def chunk(delta: ChunkDelta, finish_reason: FinishReason | None = None) -> dict[str, Any]:
        body = ChatCompletionChunk(
            id="chatcmpl-fastapi",
            created=created,
            model=request.model,
            choices=[ChunkChoice(index=0, delta=delta, finish_reason=finish_reason)],
        )
        return {"data": _encode(body).decode()}

    yield chunk(ChunkDelta(role="assistant", content=""))
    async for item in provider.stream_chat(request):
        if isinstance(item, TextDelta):
            yield chunk(ChunkDelta(content=item.text))
        elif isinstance(item, Finish):
            yield chunk(ChunkDelta(), item.reason)
            yield {"data": "[DONE]"}
