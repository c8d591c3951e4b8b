"""A deterministic provider: the same request always streams the same tokens.

It is a real provider, not a test double: `make run` uses it when no key is set, load tests use it
to measure the service without a model, and per-request directives inject the faults clients must survive.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import random
import re
from collections.abc import AsyncIterator, Iterator, Sequence

from providers.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderRateLimitError,
    ProviderStreamError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from providers.protocol import ChatMessage, ChatRequest, Finish, MockFault, StreamItem, TextDelta, Usage

MOCK_MODEL = "mock"

# A word, with the spaces before it, or a run of newlines: newlines must travel as their own tokens
# so that clients which frame SSE naively break visibly in tests.
_TOKEN_PATTERN = re.compile(r"\n+|[ \t]*[^\s]{1,8}|[ \t]+")

_TOPICS = (
    "latency budgets",
    "backpressure",
    "event streams",
    "cold starts",
    "token pacing",
    "cancellation",
    "heartbeats",
    "edge caches",
    "retry policies",
    "idle timeouts",
)
_WORDS = (
    "stream",
    "client",
    "server",
    "token",
    "buffer",
    "socket",
    "request",
    "answer",
    "model",
    "frame",
    "budget",
    "signal",
    "proxy",
    "browser",
    "lambda",
    "deadline",
    "chunk",
    "event",
    "queue",
    "reader",
    "writer",
    "header",
    "byte",
    "flush",
    "cancel",
    "upstream",
    "retry",
    "pause",
    "resume",
    "limit",
)
_VERBS = (
    "carries",
    "delivers",
    "measures",
    "guards",
    "releases",
    "frames",
    "paces",
    "forwards",
    "flushes",
    "bounds",
    "announces",
    "cancels",
)


def tokenize(text: str) -> list[str]:
    """Split text the way the mock streams it: short word pieces with their leading space."""
    return _TOKEN_PATTERN.findall(text)


def count_prompt_tokens(messages: Sequence[ChatMessage]) -> int:
    """Approximate prompt tokens the way the mock counts completions, plus per-message overhead."""
    return sum(len(tokenize(message.content)) + 4 for message in messages)


def compose_answer(request: ChatRequest) -> str:
    """The full answer the mock gives for a request: a pure function of the model and messages."""
    seed_source = "\x1f".join(f"{m.role}\x1e{m.content}" for m in request.messages)
    digest = hashlib.sha256(f"{request.model}\x1d{seed_source}".encode()).digest()
    rng = random.Random(digest)  # noqa: S311 - determinism, not security
    last_user = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
    subject = " ".join(last_user.split()[:8]) or "nothing in particular"
    topic = rng.choice(_TOPICS)

    def sentence() -> str:
        words = [rng.choice(_WORDS) for _ in range(rng.randint(4, 9))]
        words.insert(1, rng.choice(_VERBS))
        return " ".join(words).capitalize() + "."

    paragraphs = [
        f"You asked about: {subject}. Here is a short answer on {topic}.",
        " ".join(sentence() for _ in range(rng.randint(2, 4))),
        "\n".join(f"- {rng.choice(_WORDS)}: {sentence()}" for _ in range(rng.randint(2, 4))),
        " ".join(sentence() for _ in range(rng.randint(1, 3))),
    ]
    name = rng.choice(_WORDS)
    code = (
        "```python\n"
        f"async def relay_{name}(stream):\n"
        "    async for token in stream:\n"
        f"        yield token  # {rng.choice(_VERBS)} as it arrives\n"
        "```"
    )
    paragraphs.insert(3, code)
    return "\n\n".join(paragraphs)


class MockProvider:
    """Streams a deterministic, realistic answer with configurable pacing and injectable faults."""

    def __init__(self, *, token_delay_s: float = 0.0) -> None:
        if token_delay_s < 0:
            raise ValueError("token_delay_s must be >= 0")
        self._token_delay_s = token_delay_s
        self.tokens_emitted = 0
        self.active_streams = 0

    @property
    def name(self) -> str:
        return "mock"

    def models(self) -> Sequence[str]:
        return (MOCK_MODEL,)

    async def stream_chat(self, request: ChatRequest) -> AsyncIterator[StreamItem]:
        directives = request.mock
        delay_s = self._token_delay_s
        if directives is not None and directives.delay_ms is not None:
            delay_s = directives.delay_ms / 1000
        once = tokenize(compose_answer(request))
        repeat = directives.repeat if directives is not None and directives.repeat is not None else 1
        # The answer `repeat` times over, separated by a blank line: counted, never built, so that a long
        # stream costs the same memory as a short one and each token O(1).
        total = len(once) * repeat + (repeat - 1)
        self.active_streams += 1
        try:
            if directives is not None and directives.stall_ms:
                await asyncio.sleep(directives.stall_ms / 1000)
            if directives is not None and directives.error is not None:
                raise _fault(directives.error)
            fail_after = directives.fail_after if directives is not None else None
            limit = total if request.max_tokens is None else min(total, request.max_tokens)
            for index, token in enumerate(itertools.islice(_repeated(once, repeat), limit)):
                if index == fail_after:
                    raise ProviderStreamError(f"mock failure injected after {fail_after} deltas")
                # Always suspend, even at zero delay: a generator that never awaits cannot be cancelled
                # and would starve every other stream on the event loop.
                await asyncio.sleep(delay_s)
                self.tokens_emitted += 1
                yield TextDelta(token)
            if fail_after is not None:
                # Asked to fail after more deltas than the answer has: fail where `Finish` would be.
                raise ProviderStreamError(f"mock failure injected after {fail_after} deltas")
            usage = Usage(prompt_tokens=count_prompt_tokens(request.messages), completion_tokens=limit)
            yield Finish(reason="length" if limit < total else "stop", usage=usage)
        finally:
            self.active_streams -= 1

    async def aclose(self) -> None:
        return None


def _repeated(tokens: list[str], times: int) -> Iterator[str]:
    """`tokens` `times` over, a blank line between: `tokenize` of the joined text, without joining it."""
    for round_ in range(times):
        if round_:
            yield "\n\n"
        yield from tokens


def _fault(kind: MockFault) -> ProviderError:
    if kind == "rate_limit":
        return ProviderRateLimitError("mock rate limit: slow down and retry", retry_after_s=1.0)
    if kind == "auth":
        return ProviderAuthError("mock upstream rejected the credentials")
    if kind == "timeout":
        return ProviderTimeoutError("mock upstream timed out before the first token")
    return ProviderUnavailableError("mock upstream is unavailable")
