"""The wire shapes of the OpenAI Responses API (`POST /v1/responses`), as msgspec Structs.

Requests forbid unknown fields, as the other endpoints do. Input items are decoded one by one
(`app.http.responses_input`): a message item may leave out its `type`, so they cannot be one tagged union.
Stream events are tagged by their `type`, which is also the SSE `event:` name, as OpenAI sends them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from app.schemas import MAX_MESSAGES, MAX_TOOLS, ModelId, PositiveInt
from providers.protocol import FunctionName, JsonObject, MockDirectives

ItemStatus = Literal["in_progress", "completed", "incomplete"]
Detail = Literal["auto", "low", "high"]


class _Closed(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    pass


# --- input content parts ---


class InputText(_Closed, frozen=True, tag_field="type", tag="input_text"):
    text: str


class InputImage(_Closed, frozen=True, tag_field="type", tag="input_image"):
    image_url: str | None = None
    file_id: str | None = None
    detail: Detail = "auto"


class InputFile(_Closed, frozen=True, tag_field="type", tag="input_file"):
    file_data: str | None = None
    file_id: str | None = None
    file_url: str | None = None
    filename: str | None = None


class OutputTextPart(_Closed, frozen=True, tag_field="type", tag="output_text"):
    """Text of an earlier answer, as clients send `response.output` back; annotations are not read."""

    text: str
    annotations: list[Any] = msgspec.field(default_factory=list)
    logprobs: list[Any] | None = None


class RefusalContent(_Closed, frozen=True, tag_field="type", tag="refusal"):
    refusal: str


InputPart = InputText | InputImage | InputFile


# --- input items (see the module docstring for why these are not one union) ---


class InputMessage(_Closed, frozen=True):
    """A message of the conversation: the client's (`user`, `system`, `developer`) or an earlier answer.

    `id`, `status` and `phase` are what an output message carries when a client sends it back.
    """

    role: Literal["user", "system", "developer", "assistant"]
    content: str | list[InputPart | OutputTextPart | RefusalContent]
    type: Literal["message"] = "message"
    id: str | None = None
    status: ItemStatus | None = None
    phase: Literal["commentary", "final_answer"] | None = None


class FunctionCallItem(_Closed, frozen=True):
    """A call the model made in an earlier turn."""

    call_id: Annotated[str, msgspec.Meta(min_length=1)]
    name: FunctionName
    arguments: str
    type: Literal["function_call"] = "function_call"
    id: str | None = None
    status: ItemStatus | None = None


class FunctionCallOutputItem(_Closed, frozen=True):
    """The result of the call `call_id`, as the client ran it."""

    call_id: Annotated[str, msgspec.Meta(min_length=1)]
    output: str | list[InputPart]
    type: Literal["function_call_output"] = "function_call_output"
    id: str | None = None
    status: ItemStatus | None = None


InputItem = InputMessage | FunctionCallItem | FunctionCallOutputItem

# --- tools, tool choice, text format ---


class FunctionTool(_Closed, frozen=True, tag_field="type", tag="function"):
    """A function tool, in the Responses API's flat shape (Chat Completions nests it under `function`)."""

    name: FunctionName
    description: str | None = None
    parameters: JsonObject | None = None
    strict: bool | None = None


class FunctionToolChoice(_Closed, frozen=True, tag_field="type", tag="function"):
    name: FunctionName


ResponsesToolChoice = Literal["none", "auto", "required"] | FunctionToolChoice


class TextFormatText(_Closed, frozen=True, tag_field="type", tag="text"):
    pass


class TextFormatJsonObject(_Closed, frozen=True, tag_field="type", tag="json_object"):
    pass


class TextFormatJsonSchema(_Closed, frozen=True, tag_field="type", tag="json_schema"):
    name: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    json_schema: JsonObject = msgspec.field(name="schema")
    description: str | None = None
    strict: bool | None = None


TextFormat = TextFormatText | TextFormatJsonObject | TextFormatJsonSchema


class TextConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`text`: also echoed in the response object, with its `format` even when the request left it out."""

    format: TextFormat = TextFormatText()
    verbosity: Literal["low", "medium", "high"] | None = None


class Reasoning(_Closed, frozen=True):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None


class ResponsesStreamOptions(_Closed, frozen=True):
    include_obfuscation: bool | None = None


class ResponsesRequest(_Closed, frozen=True):
    """`POST /v1/responses`: what this service acts on, and the state-keeping fields it refuses by name.

    `input` items are checked one by one after decoding (`app.http.responses_input`). `reasoning`,
    `text.verbosity`, `service_tier`, `prompt_cache_key`, `safety_identifier` reach an OpenAI-compatible
    upstream as their Chat Completions equivalents; `include` and `truncation` ask for nothing this
    service produces (no reasoning or search items, no context of its own to truncate).
    """

    input: str | Annotated[list[Any], msgspec.Meta(min_length=1, max_length=MAX_MESSAGES)]
    model: ModelId | None = None
    instructions: str | None = None
    max_output_tokens: PositiveInt | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    tools: Annotated[list[FunctionTool], msgspec.Meta(max_length=MAX_TOOLS)] | None = None
    tool_choice: ResponsesToolChoice | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    stream: bool = False
    stream_options: ResponsesStreamOptions | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    reasoning: Reasoning | None = None
    service_tier: Literal["auto", "default", "flex", "scale", "priority"] | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    include: list[str] | None = None
    truncation: Literal["auto", "disabled"] | None = None
    # Server-side state, which this service does not keep: refused by name unless false or absent.
    store: bool | None = None
    background: bool | None = None
    previous_response_id: str | None = None
    conversation: str | JsonObject | None = None
    # Ours: log the stream's events so that a client can resume it (`stream: true` only).
    resumable: bool = False
    mock: MockDirectives | None = None


# --- the response object and its output items ---


class OutputText(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="output_text"):
    text: str
    annotations: list[Any] = msgspec.field(default_factory=list)
    logprobs: list[Any] = msgspec.field(default_factory=list)


class OutputMessage(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="message"):
    id: str
    status: ItemStatus
    content: list[OutputText]
    role: Literal["assistant"] = "assistant"


class OutputFunctionCall(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="function_call"):
    id: str
    call_id: str
    name: str
    arguments: str
    status: ItemStatus


OutputItem = OutputMessage | OutputFunctionCall


class InputTokensDetails(msgspec.Struct, frozen=True, kw_only=True):
    cached_tokens: int = 0


class OutputTokensDetails(msgspec.Struct, frozen=True, kw_only=True):
    reasoning_tokens: int = 0


class ResponseUsage(msgspec.Struct, frozen=True, kw_only=True):
    input_tokens: int
    output_tokens: int
    total_tokens: int
    input_tokens_details: InputTokensDetails = InputTokensDetails()
    output_tokens_details: OutputTokensDetails = OutputTokensDetails()


class ResponseError(msgspec.Struct, frozen=True, kw_only=True):
    code: str | None
    message: str


class IncompleteDetails(msgspec.Struct, frozen=True, kw_only=True):
    reason: Literal["max_output_tokens", "content_filter"]


ResponseStatus = Literal["in_progress", "completed", "incomplete", "failed"]


class ResponseObject(msgspec.Struct, frozen=True, kw_only=True):
    """OpenAI's `response` object, in every event that carries one and as the non-streamed body."""

    id: str
    created_at: int
    model: str
    status: ResponseStatus
    output: list[OutputItem]
    tools: list[FunctionTool]
    tool_choice: ResponsesToolChoice
    parallel_tool_calls: bool
    text: TextConfig
    usage: ResponseUsage | None = None
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
    user: str | None = None
    previous_response_id: None = None
    store: Literal[False] = False
    background: Literal[False] = False
    truncation: Literal["disabled"] = "disabled"
    object: Literal["response"] = "response"


# --- stream events: the tag is the SSE event name; `sequence_number` counts every event from 0 ---


class _Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    sequence_number: int


class ResponseCreated(_Event, frozen=True, tag="response.created"):
    response: ResponseObject


class ResponseInProgress(_Event, frozen=True, tag="response.in_progress"):
    response: ResponseObject


class ResponseCompleted(_Event, frozen=True, tag="response.completed"):
    response: ResponseObject


class ResponseIncomplete(_Event, frozen=True, tag="response.incomplete"):
    response: ResponseObject


class ResponseFailed(_Event, frozen=True, tag="response.failed"):
    response: ResponseObject


class OutputItemAdded(_Event, frozen=True, tag="response.output_item.added"):
    output_index: int
    item: OutputItem


class OutputItemDone(_Event, frozen=True, tag="response.output_item.done"):
    output_index: int
    item: OutputItem


class ContentPartAdded(_Event, frozen=True, tag="response.content_part.added"):
    item_id: str
    output_index: int
    content_index: int
    part: OutputText


class ContentPartDone(_Event, frozen=True, tag="response.content_part.done"):
    item_id: str
    output_index: int
    content_index: int
    part: OutputText


class OutputTextDelta(_Event, frozen=True, tag="response.output_text.delta"):
    item_id: str
    output_index: int
    content_index: int
    delta: str
    logprobs: list[Any] = msgspec.field(default_factory=list)


class OutputTextDone(_Event, frozen=True, tag="response.output_text.done"):
    item_id: str
    output_index: int
    content_index: int
    text: str
    logprobs: list[Any] = msgspec.field(default_factory=list)


class FunctionCallArgumentsDelta(_Event, frozen=True, tag="response.function_call_arguments.delta"):
    item_id: str
    output_index: int
    delta: str


class FunctionCallArgumentsDone(_Event, frozen=True, tag="response.function_call_arguments.done"):
    item_id: str
    output_index: int
    name: str
    arguments: str


class ErrorPayload(msgspec.Struct, frozen=True, kw_only=True):
    type: str
    code: str | None
    message: str
    param: str | None


class StreamError(_Event, frozen=True, tag="error"):
    """The in-band failure, just before `response.failed`.

    OpenAI's own `error` event has been sent both flat (`code`, `message`, `param`) and with the same
    under `error`; both are here. The nested one is what makes the openai SDK raise `APIError`.
    """

    code: str | None
    message: str
    param: str | None
    error: ErrorPayload


ResponseStreamEvent = (
    ResponseCreated
    | ResponseInProgress
    | ResponseCompleted
    | ResponseIncomplete
    | ResponseFailed
    | OutputItemAdded
    | OutputItemDone
    | ContentPartAdded
    | ContentPartDone
    | OutputTextDelta
    | OutputTextDone
    | FunctionCallArgumentsDelta
    | FunctionCallArgumentsDone
    | StreamError
)
