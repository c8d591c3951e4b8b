"""Every wire shape of the HTTP API, as msgspec Structs.

Requests forbid unknown fields (as OpenAI does): a typo is a 400 naming the field, not a silent default.
The one exception is the top level of `/v1/chat/completions`, whose unknown fields an OpenAI-compatible
upstream gets to judge (see `ChatCompletionRequest`).
Event kinds are a tagged union whose tag is also the SSE `event:` name and the WebSocket `type`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from providers.protocol import (
    ContentPart,
    FinishReason,
    FunctionName,
    MockDirectives,
    ResponseFormat,
    Role,
    Tool,
    ToolCall,
    ToolChoice,
    Usage,
)

PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
ModelId = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
MAX_MESSAGES = 1024
MAX_TOOLS = 128
MAX_CHOICES = 128


class _MessageBase(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="role"):
    name: str | None = None


class SystemMessage(_MessageBase, frozen=True, tag="system"):
    content: str | list[ContentPart]


class DeveloperMessage(_MessageBase, frozen=True, tag="developer"):
    content: str | list[ContentPart]


class UserMessage(_MessageBase, frozen=True, tag="user"):
    content: str | list[ContentPart]


class EchoedFunctionCall(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A call's function as clients send it back: the openai SDK's parse helpers add `parsed_arguments`."""

    name: FunctionName
    arguments: str
    parsed_arguments: Any = None


class EchoedToolCall(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="type", tag="function"
):
    """One tool call of an earlier answer; the `tool` message answering it carries the same `id`.

    `index` is what the openai SDK's stream helper keeps from the streamed chunks on the message it builds
    (`get_final_completion()`), which a tool loop sends back: accepted, not forwarded.
    """

    id: Annotated[str, msgspec.Meta(min_length=1)]
    function: EchoedFunctionCall
    index: Annotated[int, msgspec.Meta(ge=0)] | None = None


class AssistantTurn(_MessageBase, frozen=True, tag="assistant"):
    """An earlier answer, as the SDKs send back the message they received.

    `audio`, `function_call` (deprecated) and `annotations` are what this service's answers carry as null
    or empty, and `parsed` is what the openai SDK's `.parse()` and `.stream()` helpers add; clients echo
    them all: accepted, not forwarded.
    """

    content: str | list[ContentPart] | None = None
    tool_calls: list[EchoedToolCall] | None = None
    refusal: str | None = None
    audio: None = None
    function_call: None = None
    annotations: list[Any] | None = None
    parsed: Any = None


class ToolResult(_MessageBase, frozen=True, tag="tool"):
    """The result of the tool call `tool_call_id`."""

    content: str | list[ContentPart]
    tool_call_id: Annotated[str, msgspec.Meta(min_length=1)]


Message = SystemMessage | DeveloperMessage | UserMessage | AssistantTurn | ToolResult


def tag_of(struct: msgspec.Struct) -> str:
    """The tag a tagged Struct is written with (its `type`): an event's SSE name, a part's kind."""
    tag = type(struct).__struct_config__.tag
    assert isinstance(tag, str), f"{type(struct).__name__} is not a tagged Struct"
    return tag


def role_of(message: Message) -> Role:
    """A message's role: the tag that chose its Struct."""
    role: Role = type(message).__struct_config__.tag  # type: ignore[assignment]
    return role


Messages = Annotated[list[Message], msgspec.Meta(min_length=1, max_length=MAX_MESSAGES)]
Tools = Annotated[list[Tool], msgspec.Meta(max_length=MAX_TOOLS)]


class StreamOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """OpenAI's `stream_options`."""

    include_usage: bool = False
    include_obfuscation: bool | None = None


class ChatCompletionRequest(msgspec.Struct, frozen=True, kw_only=True):
    """`POST /v1/chat/completions`: the OpenAI request fields this service validates, plus `mock`.

    Any other top-level field is passed to an OpenAI-compatible upstream unchanged (`PROVIDER=openai`),
    so a newer SDK's field needs no new release here; the mock provider refuses it with a 400 naming it.
    """

    messages: Messages
    model: ModelId | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: PositiveInt | None = None
    max_completion_tokens: PositiveInt | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    n: Annotated[int, msgspec.Meta(ge=1, le=MAX_CHOICES)] | None = None
    stop: str | Annotated[list[str], msgspec.Meta(max_length=4)] | None = None
    seed: int | None = None
    user: str | None = None
    tools: Tools | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    # Validated here, acted on upstream (forwarded as sent).
    presence_penalty: Annotated[float, msgspec.Meta(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, msgspec.Meta(ge=-2, le=2)] | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, msgspec.Meta(ge=0, le=20)] | None = None
    logit_bias: dict[str, Annotated[int, msgspec.Meta(ge=-100, le=100)]] | None = None
    store: bool | None = None
    metadata: dict[str, str] | None = None
    # Ours: log the stream's events so that a client can resume it (`stream: true` only).
    resumable: bool = False
    mock: MockDirectives | None = None


class StreamRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`POST /v1/stream`: the app-native request."""

    messages: Messages
    model: ModelId | None = None
    max_tokens: PositiveInt | None = None
    tools: Tools | None = None
    tool_choice: ToolChoice | None = None
    resumable: bool = False
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
    # Said only when true: the stream can be resumed from `GET /v1/streams/{stream_id}/events`.
    resumable: bool = False
    id: str | None = None
    # On the WebSocket, for a resumable prompt: the event's id in the stream log (SSE says it in `id:`).
    event_id: int | None = None


class DeltaEvent(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="delta", omit_defaults=True
):
    """A piece of the answer."""

    text: str
    id: str | None = None
    # On the WebSocket, for a resumable prompt: the event's id in the stream log (SSE says it in `id:`).
    event_id: int | None = None


class ToolCallEvent(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="tool_call", omit_defaults=True
):
    """A piece of a tool call the model makes: `call_id` and `name` on its first piece, then fragments of
    `arguments` (a JSON text once concatenated); `index` tells the calls of one answer apart."""

    index: int
    arguments: str
    call_id: str | None = None
    name: str | None = None
    id: str | None = None
    # On the WebSocket, for a resumable prompt: the event's id in the stream log (SSE says it in `id:`).
    event_id: int | None = None


class DoneEvent(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="done", omit_defaults=True):
    """The answer is complete (`outcome` says whether a token budget cut it short)."""

    finish_reason: FinishReason
    outcome: str
    usage: UsageInfo | None
    timings: Timings
    id: str | None = None
    # On the WebSocket, for a resumable prompt: the event's id in the stream log (SSE says it in `id:`).
    event_id: int | None = None


class ErrorEvent(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="error", omit_defaults=True
):
    """The stream failed or was stopped; nothing follows."""

    error: ErrorDetail
    id: str | None = None
    # On the WebSocket, for a resumable prompt: the event's id in the stream log (SSE says it in `id:`).
    event_id: int | None = None


StreamEvent = StartEvent | DeltaEvent | ToolCallEvent | DoneEvent | ErrorEvent


# --- OpenAI responses ---


class ChunkFunction(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A piece of a tool call's function: its name on the first piece, fragments of the arguments."""

    name: str | None = None
    arguments: str | None = None


class ChunkToolCall(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A piece of a tool call in a `chat.completion.chunk`; `id` and `type` come on the first piece only."""

    index: int
    function: ChunkFunction
    id: str | None = None
    type: Literal["function"] | None = None


class ChunkDelta(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The incremental message in a `chat.completion.chunk`."""

    role: str | None = None
    content: str | None = None
    tool_calls: list[ChunkToolCall] | None = None


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


class AssistantMessage(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The complete answer of a non-streamed completion (`content` None when it only called tools)."""

    role: Literal["assistant"]
    content: str | None
    refusal: None
    tool_calls: list[ToolCall] | None = None


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
