"""The provider interface: typed chat requests in, typed stream items out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Literal, Protocol, runtime_checkable

import msgspec

Role = Literal["system", "developer", "user", "assistant"]
FinishReason = Literal["stop", "length", "content_filter"]
MockFault = Literal["rate_limit", "auth", "unavailable", "timeout"]

NonNegativeMs = Annotated[int, msgspec.Meta(ge=0, le=600_000)]


class ChatMessage(msgspec.Struct, frozen=True, kw_only=True):
    """One message of a conversation, its content already flattened to text."""

    role: Role
    content: str


class MockDirectives(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Per-request instructions for the mock provider; other providers ignore them."""

    delay_ms: NonNegativeMs | None = None
    fail_after: Annotated[int, msgspec.Meta(ge=0)] | None = None
    error: MockFault | None = None
    stall_ms: NonNegativeMs | None = None
    # Load tests and benchmarks need streams of thousands of tokens that stay deterministic.
    repeat: Annotated[int, msgspec.Meta(ge=1, le=1000)] | None = None


class ChatRequest(msgspec.Struct, frozen=True, kw_only=True):
    """What a provider is asked to generate."""

    model: str
    messages: tuple[ChatMessage, ...]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    user: str | None = None
    mock: MockDirectives | None = None


class Usage(msgspec.Struct, frozen=True, kw_only=True):
    """Token counts for one generation."""

    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class TextDelta(msgspec.Struct, frozen=True):
    """A piece of generated text, in the order the model produced it."""

    text: str


class Finish(msgspec.Struct, frozen=True, kw_only=True):
    """The last item of every successful generation."""

    reason: FinishReason
    usage: Usage | None = None


StreamItem = TextDelta | Finish


@runtime_checkable
class Provider(Protocol):
    """A source of streamed chat completions."""

    @property
    def name(self) -> str:
        """Short provider id used in logs and `/v1/models` (`mock`, `openai`)."""
        ...

    def models(self) -> Sequence[str]:
        """Model ids this provider serves; empty means any id is passed through upstream."""
        ...

    def stream_chat(self, request: ChatRequest) -> AsyncIterator[StreamItem]:
        """Yield text deltas as they are produced, then exactly one `Finish`.

        Every iteration must await real I/O (or `asyncio.sleep`) so that the caller can cancel it;
        errors before the first delta and after it are raised as `ProviderError` subclasses.
        Closing the iterator (or cancelling the task iterating it) must release upstream resources at once.
        """
        ...

    async def aclose(self) -> None:
        """Release long-lived resources such as HTTP connection pools."""
        ...
