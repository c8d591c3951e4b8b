"""The Vercel AI SDK's UI message stream (`POST /api/chat`): what `useChat` posts, and the chunks it reads.

The shapes are those of the `ai` package, 6.0 (`UIMessage` and its part types, `uiMessageChunkSchema`),
with its camelCase names on the wire. Where the SDK's own types are closed, so are these: an unknown field
is a 400 naming it. What the SDK leaves free-form stays free-form: message `metadata`, `providerMetadata`,
a tool's `input` and `output`, the payload of a `data-*` part.

Parts cannot be one tagged union: a tool part's tag is `tool-<its name>` and a data part's `data-<its
name>`, so `ui_part` picks each part's Struct by its `type`, and the request holds the parts undecoded.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal, get_args

import msgspec

from app.schemas import MAX_MESSAGES, ErrorDetail, ModelId, PositiveInt, Timings, Tools, UsageInfo
from providers.protocol import MockDirectives, ToolChoice

ProviderMetadata = dict[str, dict[str, Any]]
ToolState = Literal[
    "input-streaming",
    "input-available",
    "approval-requested",
    "approval-responded",
    "output-available",
    "output-error",
    "output-denied",
]
# The AI SDK's names (`finishReason` in the `finish` chunk), not OpenAI's.
UIFinishReason = Literal["stop", "length", "content-filter", "tool-calls", "error", "other"]

# --- the request: `UIMessage`s and their parts ---


class _Part(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, rename="camel", tag_field="type"
):
    pass


class TextUIPart(_Part, frozen=True, tag="text"):
    text: str
    state: Literal["streaming", "done"] | None = None
    provider_metadata: ProviderMetadata | None = None


class ReasoningUIPart(_Part, frozen=True, tag="reasoning"):
    text: str
    id: str | None = None
    state: Literal["streaming", "done"] | None = None
    provider_metadata: ProviderMetadata | None = None


class FileUIPart(_Part, frozen=True, tag="file"):
    """A file by URL: a hosted one, or inline as a `data:` URL (what `useChat` makes of a `FileList`)."""

    media_type: str
    url: str
    filename: str | None = None
    provider_metadata: ProviderMetadata | None = None


class StepStartUIPart(_Part, frozen=True, tag="step-start"):
    """Where one step of a multi-step answer begins: the model was called again, after tool results."""


class SourceUrlUIPart(_Part, frozen=True, tag="source-url"):
    source_id: str
    url: str
    title: str | None = None
    provider_metadata: ProviderMetadata | None = None


class SourceDocumentUIPart(_Part, frozen=True, tag="source-document"):
    source_id: str
    media_type: str
    title: str
    filename: str | None = None
    provider_metadata: ProviderMetadata | None = None


class ToolApproval(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    """A tool call's approval, for tools that run only once the user agrees."""

    id: str
    approved: bool | None = None
    reason: str | None = None
    descriptor: Any = None
    signature: str | None = None
    input_schema_input: Any = None


class _ToolInvocation(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    """What a tool part knows of one call: its input, then its output or error, as `state` says."""

    tool_call_id: str
    state: ToolState
    title: str | None = None
    tool_metadata: dict[str, Any] | None = None
    provider_executed: bool | None = None
    # Parsed JSON (`input-available` and later); `rawInput` is the text a call's input was streamed as.
    input: Any = None
    raw_input: Any = None
    input_encoding: Literal["json", "text"] | None = None
    output: Any = None
    error_text: str | None = None
    preliminary: bool | None = None
    call_provider_metadata: ProviderMetadata | None = None
    result_provider_metadata: ProviderMetadata | None = None
    approval: ToolApproval | None = None


class ToolUIPart(_ToolInvocation, frozen=True):
    """`tool-<name>`: a call of a tool the front end declared."""

    type: str

    @property
    def name(self) -> str:
        return self.type.removeprefix("tool-")


class DynamicToolUIPart(_ToolInvocation, frozen=True):
    """`dynamic-tool`: a call of a tool known only at run time (`toolName` names it)."""

    type: Literal["dynamic-tool"]
    tool_name: str
    # `false` marks a static tool part the SDK normalised because its tool's schema was unavailable.
    dynamic: Literal[False] | None = None

    @property
    def name(self) -> str:
        return self.tool_name


class DataUIPart(msgspec.Struct, frozen=True, kw_only=True):
    """`data-<name>`: an app's own data; open, since the app defines it (and the SDK pushes chunks as is)."""

    type: str
    data: Any = None
    id: str | None = None


UIPart = (
    TextUIPart
    | ReasoningUIPart
    | FileUIPart
    | StepStartUIPart
    | SourceUrlUIPart
    | SourceDocumentUIPart
    | ToolUIPart
    | DynamicToolUIPart
    | DataUIPart
)
# Every part Struct, for the OpenAPI document.
UIPART_TYPES: Final[tuple[type[UIPart], ...]] = get_args(UIPart)
_PARTS_BY_TYPE: Final[dict[str, type[UIPart]]] = {
    "text": TextUIPart,
    "reasoning": ReasoningUIPart,
    "file": FileUIPart,
    "step-start": StepStartUIPart,
    "source-url": SourceUrlUIPart,
    "source-document": SourceDocumentUIPart,
    "dynamic-tool": DynamicToolUIPart,
}


def ui_part(raw: dict[str, Any]) -> UIPart:
    """The Struct of one part, picked by its `type`; `msgspec.ValidationError` (paths from the part) if
    the part is not one the AI SDK defines."""
    kind = raw.get("type")
    if kind is None:
        raise msgspec.ValidationError("Object missing required field `type`")
    if not isinstance(kind, str):
        raise msgspec.ValidationError(f"Expected `str`, got `{type(kind).__name__}` - at `$.type`")
    part_type = _PARTS_BY_TYPE.get(kind)
    if part_type is None:
        if kind.startswith("tool-"):
            part_type = ToolUIPart
        elif kind.startswith("data-"):
            part_type = DataUIPart
        else:
            known = ", ".join([*_PARTS_BY_TYPE, "tool-<name>", "data-<name>"])
            raise msgspec.ValidationError(f"unknown part type {kind!r}; parts are {known} - at `$.type`")
    return msgspec.convert(raw, part_type)


class UIMessage(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One message of a `useChat` conversation, as the SDK keeps it (and sends all of them, every turn)."""

    id: str
    role: Literal["system", "user", "assistant"]
    # Decoded one by one with `ui_part` (see the module docstring).
    parts: list[dict[str, Any]]
    metadata: Any = None


class UIChatRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`POST /api/chat`: `DefaultChatTransport`'s body (`id`, `messages`, `trigger`, `messageId`) and the
    fields a front end adds with its `body` option, named as on this service's other endpoints."""

    messages: Annotated[list[UIMessage], msgspec.Meta(min_length=1, max_length=MAX_MESSAGES)]
    # The chat's id, what started the request, and the message to regenerate: the transport always sends
    # them; the answer depends on the messages alone, as with the AI SDK's own server helpers.
    id: str | None = None
    trigger: Literal["submit-message", "regenerate-message"] | None = None
    message_id: str | None = msgspec.field(default=None, name="messageId")
    model: ModelId | None = None
    max_tokens: PositiveInt | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    # A system prompt put before the messages: what a route handler would pass to `streamText`.
    system: str | None = None
    tools: Tools | None = None
    tool_choice: ToolChoice | None = None
    # Resumable unless asked otherwise: `useChat({ resume: true })` reconnects to the chat's stream with
    # `GET /api/chat/{id}/stream`. (As with the AI SDK's own resumable streams, Stop then only detaches
    # the fetch; the page's Stop also calls the cancel endpoint, which stops the generation.)
    resumable: bool = True
    mock: MockDirectives | None = None


# --- the response: UI message chunks ---


class StartMetadata(msgspec.Struct, frozen=True, kw_only=True):
    """The message's metadata as the stream starts: what `/v1/stream`'s `start` event says."""

    stream_id: str
    model: str
    provider: str
    created: int


class EndMetadata(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The message's metadata as the stream ends (merged by the SDK into the start's): how it ended."""

    outcome: str
    usage: UsageInfo | None
    timings: Timings
    # Ours, with its code, for a stream that failed: `errorText` carries the message only.
    error: ErrorDetail | None = None


class _Chunk(msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True, tag_field="type"):
    pass


class StartChunk(_Chunk, frozen=True, tag="start"):
    message_id: str
    message_metadata: StartMetadata


class StartStepChunk(_Chunk, frozen=True, tag="start-step"):
    pass


class TextStartChunk(_Chunk, frozen=True, tag="text-start"):
    id: str


class TextDeltaChunk(_Chunk, frozen=True, tag="text-delta"):
    id: str
    delta: str


class TextEndChunk(_Chunk, frozen=True, tag="text-end"):
    id: str


class ToolInputStartChunk(_Chunk, frozen=True, tag="tool-input-start"):
    tool_call_id: str
    tool_name: str


class ToolInputDeltaChunk(_Chunk, frozen=True, tag="tool-input-delta"):
    tool_call_id: str
    input_text_delta: str


class ToolInputAvailableChunk(_Chunk, frozen=True, tag="tool-input-available"):
    """A call complete: `input` is its arguments parsed (the SDK shows it; the front end runs the tool)."""

    tool_call_id: str
    tool_name: str
    input: Any


class ToolInputErrorChunk(_Chunk, frozen=True, tag="tool-input-error"):
    """A call whose arguments are not JSON (cut short by a token budget): `input` is their text."""

    tool_call_id: str
    tool_name: str
    input: Any
    error_text: str


class FinishStepChunk(_Chunk, frozen=True, tag="finish-step"):
    pass


class FinishChunk(_Chunk, frozen=True, tag="finish"):
    finish_reason: UIFinishReason
    message_metadata: EndMetadata


class MessageMetadataChunk(_Chunk, frozen=True, tag="message-metadata"):
    message_metadata: EndMetadata


class ErrorChunk(_Chunk, frozen=True, tag="error"):
    error_text: str


class AbortChunk(_Chunk, frozen=True, tag="abort"):
    reason: str | None = None


UIMessageChunk = (
    StartChunk
    | StartStepChunk
    | TextStartChunk
    | TextDeltaChunk
    | TextEndChunk
    | ToolInputStartChunk
    | ToolInputDeltaChunk
    | ToolInputAvailableChunk
    | ToolInputErrorChunk
    | FinishStepChunk
    | FinishChunk
    | MessageMetadataChunk
    | ErrorChunk
    | AbortChunk
)
