"""The provider interface: typed chat requests in, typed stream items out.

The request model is OpenAI's Chat Completions model, the lingua franca every provider here maps from:
messages with content parts and tool calls, function tools, a response format, `n` choices. What a client
sends beyond what is typed here travels in `ChatRequest.extra`, for providers that forward it upstream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Any, Literal, Protocol, runtime_checkable

import msgspec

Role = Literal["system", "developer", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "content_filter", "tool_calls"]
MockFault = Literal["rate_limit", "auth", "unavailable", "timeout"]

NonNegativeMs = Annotated[int, msgspec.Meta(ge=0, le=600_000)]
# OpenAI's rule for function names; a name outside it is refused upstream, so it is refused here first.
FunctionName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
JsonObject = dict[str, Any]


# --- content parts: tagged by `type`, as OpenAI's wire has them ---


class TextPart(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="type", tag="text"):
    text: str


class ImageURL(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """An image by URL, or inline as a `data:` URL."""

    url: Annotated[str, msgspec.Meta(min_length=1)]
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="type", tag="image_url"):
    image_url: ImageURL


class InputAudio(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Base64-encoded audio."""

    data: str
    format: Literal["wav", "mp3"]


class AudioPart(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="type", tag="input_audio"):
    input_audio: InputAudio


class FileRef(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """A file inline (`file_data`, base64) or uploaded before (`file_id`)."""

    file_data: str | None = None
    file_id: str | None = None
    filename: str | None = None


class FilePart(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="type", tag="file"):
    file: FileRef


class RefusalPart(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="type", tag="refusal"):
    """Part of an earlier assistant turn in which the model declined."""

    refusal: str


ContentPart = TextPart | ImagePart | AudioPart | FilePart | RefusalPart


# --- tools ---


class FunctionCall(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A call the model made: the function's name and its arguments as a JSON text."""

    name: FunctionName
    arguments: str


class ToolCall(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="type", tag="function"):
    """One tool call of an assistant message; the `tool` message answering it carries the same `id`."""

    id: Annotated[str, msgspec.Meta(min_length=1)]
    function: FunctionCall


class FunctionDefinition(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """A function the model may call; `parameters` is a JSON Schema for its arguments."""

    name: FunctionName
    description: str | None = None
    parameters: JsonObject | None = None
    strict: bool | None = None


class Tool(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="type", tag="function"):
    function: FunctionDefinition


class NamedFunction(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: FunctionName


class NamedToolChoice(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="type", tag="function"
):
    """`tool_choice` naming the one function the model must call."""

    function: NamedFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


# --- response formats ---


class TextFormat(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="type", tag="text"):
    pass


class JsonObjectFormat(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="type", tag="json_object"
):
    pass


class JsonSchemaSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    name: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    description: str | None = None
    # `schema` is a reserved name on msgspec Structs only as an attribute of ours: the wire name stays.
    json_schema: JsonObject | None = msgspec.field(default=None, name="schema")
    strict: bool | None = None


class JsonSchemaFormat(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="type", tag="json_schema"
):
    json_schema: JsonSchemaSpec


ResponseFormat = TextFormat | JsonObjectFormat | JsonSchemaFormat


# --- messages and requests ---


class ChatMessage(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One message of a conversation, in OpenAI's shape (`msgspec.to_builtins` gives its wire form).

    `content` is None only for an assistant turn that called tools; `tool_calls` only on assistant turns,
    `tool_call_id` only (and always) on `tool` turns.
    """

    role: Role
    content: str | tuple[ContentPart, ...] | None = None
    name: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None

    @property
    def text(self) -> str:
        """The message's text: its string content, or its text (and refusal) parts joined."""
        content = self.content
        if content is None:
            return ""
        if isinstance(content, str):
            return content
        return "".join(
            part.text if isinstance(part, TextPart) else part.refusal
            for part in content
            if isinstance(part, TextPart | RefusalPart)
        )


class MockDirectives(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Per-request instructions for the mock provider; other providers ignore them."""

    delay_ms: NonNegativeMs | None = None
    fail_after: Annotated[int, msgspec.Meta(ge=0)] | None = None
    error: MockFault | None = None
    stall_ms: NonNegativeMs | None = None
    # Load tests and benchmarks need streams of thousands of tokens that stay deterministic.
    repeat: Annotated[int, msgspec.Meta(ge=1, le=1000)] | None = None
    # The text to answer with instead of the composed one (still split into the mock's tokens): a client
    # test needs specific Markdown, or hostile text, to stream through it.
    answer: str | None = None


class TraceContext(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Where the request sits in a distributed trace: W3C Trace Context and AWS X-Ray, for the upstream call.

    Values are checked before they get here (`app.trace`): a provider sends them as they are.
    """

    traceparent: str | None = None
    tracestate: str | None = None
    xray: str | None = None

    def headers(self) -> dict[str, str]:
        """The HTTP headers that carry this context to an upstream."""
        headers: dict[str, str] = {}
        if self.traceparent is not None:
            headers["traceparent"] = self.traceparent
            if self.tracestate is not None:
                headers["tracestate"] = self.tracestate
        if self.xray is not None:
            headers["X-Amzn-Trace-Id"] = self.xray
        return headers


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
    n: int = 1
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    # The client's other request fields, exactly as sent (`logprobs`, `store`, `reasoning_effort`, a field
    # newer than this code): forwarded by providers with an OpenAI-compatible upstream, ignored by others.
    extra: JsonObject = msgspec.field(default_factory=dict)
    mock: MockDirectives | None = None
    # Request metadata, not generation parameters: providers with an HTTP upstream pass it on as headers.
    trace: TraceContext | None = None


# --- stream items ---


class Usage(msgspec.Struct, frozen=True, kw_only=True):
    """Token counts for one generation."""

    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class TextDelta(msgspec.Struct, frozen=True):
    """A piece of generated text, in the order the model produced it (`choice`: which of `n`)."""

    text: str
    choice: int = 0


class ToolCallDelta(msgspec.Struct, frozen=True, kw_only=True):
    """A piece of a tool call: the first piece of call `index` has its `id` and `name`, every piece may
    carry a fragment of the arguments' JSON text (concatenated, in order, they are the whole)."""

    index: int
    arguments: str = ""
    id: str | None = None
    name: str | None = None
    choice: int = 0


class Finish(msgspec.Struct, frozen=True, kw_only=True):
    """The end of one choice; the last item of every successful generation is one, with the usage.

    With `n > 1` each choice ends with its own `Finish` (in the order they end); the usage, which counts
    every choice, is on the last.
    """

    reason: FinishReason
    usage: Usage | None = None
    choice: int = 0


StreamItem = TextDelta | ToolCallDelta | Finish


@runtime_checkable
class Provider(Protocol):
    """A source of streamed chat completions."""

    @property
    def name(self) -> str:
        """Short provider id used in logs and `/v1/models` (`mock`, `openai`)."""
        ...

    @property
    def forwards_extra(self) -> bool:
        """Whether `ChatRequest.extra` reaches an upstream that validates it (so unknown fields may pass)."""
        ...

    def models(self) -> Sequence[str]:
        """Model ids this provider is configured to serve; empty means any id is passed through upstream."""
        ...

    async def list_models(self) -> Sequence[str]:
        """The models to list in `/v1/models`: `models()`, or what the upstream says it serves."""
        ...

    def stream_chat(self, request: ChatRequest) -> AsyncIterator[StreamItem]:
        """Yield deltas as they are produced; every choice ends with one `Finish`.

        Every iteration must await real I/O (or `asyncio.sleep`) so that the caller can cancel it;
        errors before the first delta and after it are raised as `ProviderError` subclasses.
        Closing the iterator (or cancelling the task iterating it) must release upstream resources at once.
        """
        ...

    async def aclose(self) -> None:
        """Release long-lived resources such as HTTP connection pools."""
        ...
