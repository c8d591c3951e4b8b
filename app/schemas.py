"""Every wire shape of the HTTP API, as msgspec Structs.

Requests forbid unknown fields (as OpenAI does): a typo is a 400 naming the field, not a silent default.
Event kinds are a tagged union whose tag is also the SSE `event:` name and the WebSocket `type`.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from providers.protocol import FinishReason, MockDirectives, Role, Usage

PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
ModelId = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
MAX_MESSAGES = 1024


class TextPart(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A text content part (`{"type": "text", "text": ...}`), the only part kind this service accepts.

    `type` is a required field rather than a struct tag: msgspec requires a tag only inside a union, so a
    part without its `type` would pass.
    """

    type: Literal["text"]
    text: str


class Message(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A chat message as OpenAI clients send it."""

    role: Role
    content: str | list[TextPart]
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


Messages = Annotated[list[Message], msgspec.Meta(min_length=1, max_length=MAX_MESSAGES)]


class StreamOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """OpenAI's `stream_options`."""

    include_usage: bool = False


class ChatCompletionRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`POST /v1/chat/completions`: the OpenAI request fields this service accepts, plus `mock`.

    `n` (1 only), `presence_penalty` and `frequency_penalty` are validated and accepted, so that clients
    which send them are served, but they are not passed on: no provider acts on them yet.
    """

    messages: Messages
    model: ModelId | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: PositiveInt | None = None
    max_completion_tokens: PositiveInt | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    n: Annotated[int, msgspec.Meta(ge=1, le=1)] | None = None
    stop: str | Annotated[list[str], msgspec.Meta(max_length=4)] | None = None
    seed: int | None = None
    user: str | None = None
    presence_penalty: Annotated[float, msgspec.Meta(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, msgspec.Meta(ge=-2, le=2)] | None = None
    mock: MockDirectives | None = None


class StreamRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`POST /v1/stream`: the app-native request."""

    messages: Messages
    model: ModelId | None = None
    max_tokens: PositiveInt | None = None
    mock: MockDirectives | None = None


# --- errors (OpenAI's shape) ---


class ErrorDetail(msgspec.Struct, frozen=True, kw_only=True):
    """What went wrong, in OpenAI's error shape."""

    message: str
    type: str
    code: str | None = None
    param: str | None = None


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    """The JSON body of every error response and of in-band error events."""

    error: ErrorDetail


# --- app-native events (`/v1/stream`, WebSocket) ---


class UsageInfo(msgspec.Struct, frozen=True, kw_only=True):
    """Token counts as OpenAI reports them."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, usage: Usage | None) -> UsageInfo | None:
        """OpenAI's usage object for a provider's usage, if the provider reported any."""
        if usage is None:
            return None
        return cls(
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.total_tokens,
        )


class Timings(msgspec.Struct, frozen=True, kw_only=True):
    """How long the stream took: to the first token and in all."""

    ttft_ms: float | None
    duration_ms: float


class StartEvent(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="start", omit_defaults=True
):
    """Sent first: the stream id (for `POST /v1/streams/{id}/cancel`) and what will answer."""

    stream_id: str
    model: str
    provider: str
    created: int
    id: str | None = None


class DeltaEvent(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="delta", omit_defaults=True
):
    """A piece of the answer."""

    text: str
    id: str | None = None


class DoneEvent(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="done", omit_defaults=True):
    """The answer is complete (`outcome` says whether a token budget cut it short)."""

    finish_reason: FinishReason
    outcome: str
    usage: UsageInfo | None
    timings: Timings
    id: str | None = None


class ErrorEvent(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="error", omit_defaults=True
):
    """The stream failed or was stopped; nothing follows."""

    error: ErrorDetail
    id: str | None = None


StreamEvent = StartEvent | DeltaEvent | DoneEvent | ErrorEvent


# --- OpenAI responses ---


class ChunkDelta(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The incremental message in a `chat.completion.chunk`."""

    role: str | None = None
    content: str | None = None


class ChunkChoice(msgspec.Struct, frozen=True, kw_only=True):
    """One choice of a `chat.completion.chunk`."""

    index: int
    delta: ChunkDelta
    finish_reason: FinishReason | None = None
    logprobs: None = None


class ChatCompletionChunk(msgspec.Struct, frozen=True, kw_only=True):
    """OpenAI's `chat.completion.chunk` object."""

    id: str
    created: int
    model: str
    choices: list[ChunkChoice]
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    system_fingerprint: str | None = None
    usage: UsageInfo | None = None


class AssistantMessage(msgspec.Struct, frozen=True, kw_only=True):
    """The complete answer of a non-streamed completion."""

    content: str
    role: Literal["assistant"] = "assistant"
    refusal: None = None


class CompletionChoice(msgspec.Struct, frozen=True, kw_only=True):
    """One choice of a `chat.completion`."""

    index: int
    message: AssistantMessage
    finish_reason: FinishReason
    logprobs: None = None


class ChatCompletion(msgspec.Struct, frozen=True, kw_only=True):
    """OpenAI's `chat.completion` object."""

    id: str
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: UsageInfo | None
    object: Literal["chat.completion"] = "chat.completion"
    system_fingerprint: str | None = None


class ModelCard(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of `GET /v1/models`."""

    id: str
    created: int
    owned_by: str
    object: Literal["model"] = "model"


class ModelList(msgspec.Struct, frozen=True, kw_only=True):
    """`GET /v1/models`."""

    data: list[ModelCard]
    object: Literal["list"] = "list"


class CancelAccepted(msgspec.Struct, frozen=True, kw_only=True):
    """`POST /v1/streams/{id}/cancel`: the stream will stop at its next chunk."""

    stream_id: str
    status: Literal["cancelling"] = "cancelling"


class Health(msgspec.Struct, frozen=True, kw_only=True):
    """`GET /healthz`."""

    status: Literal["ok"]
    provider: str
    version: str
