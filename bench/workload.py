"""The requests every benchmark sends, so that ours and the baselines do exactly the same job."""

from __future__ import annotations

import asyncio
import math
import urllib.parse
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import msgspec

from app.settings import Settings
from providers.mock import compose_answer, tokenize
from providers.protocol import (
    ChatMessage,
    ChatRequest,
    Finish,
    MockDirectives,
    StreamItem,
    TextDelta,
    Usage,
)

PROMPT = "How do tokens travel from a model to a browser?"
MODEL = "mock"

# An ASGI application, loosely typed so that Litestar, FastAPI and a bare callable all fit.
ASGIApp = Callable[[Any, Any, Any], Any]


def repeat_for(tokens: int) -> int:
    """The mock's `repeat` directive that makes its answer to PROMPT at least `tokens` long."""
    once = ChatRequest(model=MODEL, messages=(ChatMessage(role="user", content=PROMPT),))
    return max(1, math.ceil(tokens / (len(tokenize(compose_answer(once))) + 1)))


def chat_request(tokens: int, *, delay_ms: int | None = None, stall_ms: int | None = None) -> ChatRequest:
    """The provider request behind every benchmark stream: exactly `tokens` deltas."""
    return ChatRequest(
        model=MODEL,
        messages=(ChatMessage(role="user", content=PROMPT),),
        max_tokens=tokens,
        mock=MockDirectives(repeat=repeat_for(tokens), delay_ms=delay_ms, stall_ms=stall_ms),
    )


def expected_tokens(tokens: int) -> list[str]:
    """The deltas a `tokens`-long stream must deliver, in order (to find lost or corrupted tokens)."""
    request = chat_request(tokens)
    assert request.mock is not None
    answer = "\n\n".join([compose_answer(request)] * (request.mock.repeat or 1))
    return tokenize(answer)[:tokens]


def settings(tokens: int, **overrides: Any) -> Settings:
    """Service settings whose token budget admits a `tokens`-long stream."""
    return Settings(max_tokens_limit=max(tokens, 4096), **overrides)


def mock_json(tokens: int, *, delay_ms: int | None = None, stall_ms: int | None = None) -> bytes:
    request = chat_request(tokens, delay_ms=delay_ms, stall_ms=stall_ms)
    return msgspec.json.encode(request.mock)


def native_target(tokens: int, *, delay_ms: int | None = None, stall_ms: int | None = None) -> str:
    """Path and query of `GET /v1/stream` for a `tokens`-long answer."""
    query = urllib.parse.urlencode(
        {
            "prompt": PROMPT,
            "max_tokens": str(tokens),
            "mock": mock_json(tokens, delay_ms=delay_ms, stall_ms=stall_ms).decode(),
        }
    )
    return f"/v1/stream?{query}"


def openai_body(tokens: int, *, delay_ms: int | None = None, stall_ms: int | None = None) -> bytes:
    """JSON body of a streamed `POST /v1/chat/completions` for a `tokens`-long answer."""
    request = chat_request(tokens, delay_ms=delay_ms, stall_ms=stall_ms)
    return msgspec.json.encode(
        {
            "model": MODEL,
            "stream": True,
            "max_tokens": tokens,
            "messages": [{"role": "user", "content": PROMPT}],
            "mock": request.mock,
        }
    )


def count_native_deltas(body: bytes) -> int:
    return body.count(b"\nevent: delta\n")


def count_openai_deltas(body: bytes) -> int:
    return body.count(b'"delta":{"content":')


def decode_native_deltas(body: bytes) -> list[str]:
    """The texts of the `delta` events of a `/v1/stream` body, in order."""
    texts: list[str] = []
    for block in body.split(b"\n\n"):
        if b"\nevent: delta\n" in block:
            data = block.split(b"\ndata: ", 1)[1]
            texts.append(msgspec.json.decode(data)["text"])
    return texts


# --- the peers' workload (bench/peers.py): what LiteLLM's `mock_response` streams, for every app alike ---

# LiteLLM's mock slices its `mock_response` into chunks of this many characters; every app of the peer
# benchmark streams the same text in the same slices, so chunks and characters compare one to one.
PEER_SLICE_CHARS = 3
_PEER_SENTENCE = "Tokens travel from a model to a browser one small slice at a time. "


def peer_text(chunks: int) -> str:
    """The answer of the peer benchmark: exactly `chunks` slices of PEER_SLICE_CHARS characters."""
    length = chunks * PEER_SLICE_CHARS
    return (_PEER_SENTENCE * (length // len(_PEER_SENTENCE) + 1))[:length]


class SlicedTextProvider:
    """Streams `text` in PEER_SLICE_CHARS-character deltas at no delay, as LiteLLM's mock does, whatever
    is asked; it suspends before each delta, as the `Provider` protocol requires of every provider."""

    def __init__(self, text: str) -> None:
        self._slices = [text[i : i + PEER_SLICE_CHARS] for i in range(0, len(text), PEER_SLICE_CHARS)]

    @property
    def name(self) -> str:
        return "mock"

    @property
    def forwards_extra(self) -> bool:
        return False

    def models(self) -> Sequence[str]:
        return (MODEL,)

    async def list_models(self) -> Sequence[str]:
        return (MODEL,)

    async def stream_chat(self, request: ChatRequest) -> AsyncIterator[StreamItem]:
        for piece in self._slices:
            await asyncio.sleep(0)
            yield TextDelta(piece)
        await asyncio.sleep(0)
        yield Finish(reason="stop", usage=Usage(prompt_tokens=1, completion_tokens=len(self._slices)))

    async def aclose(self) -> None:
        return None
