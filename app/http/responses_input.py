"""From a Responses API request to the provider's `ChatRequest`: input items become chat messages.

The provider interface speaks Chat Completions, so a Responses request is translated here, once:
`instructions` become the first system message, message items become messages, `function_call` items
join the assistant turn before them as its tool calls, `function_call_output` items become `tool` messages.
What needs server-side state (`store`, `previous_response_id`, `conversation`, `item_reference`) is
refused by name: this service keeps no conversation, so the client sends the whole of it each time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import msgspec

from app.errors import INVALID_REQUEST, UNSUPPORTED_PARAMETER, from_validation_error
from app.http.requests import build_chat_request
from app.schemas import tag_of
from app.schemas_responses import (
    FunctionCallItem,
    FunctionCallOutputItem,
    FunctionTool,
    FunctionToolChoice,
    InputFile,
    InputImage,
    InputItem,
    InputMessage,
    InputText,
    OutputTextPart,
    RefusalContent,
    ResponsesRequest,
    TextFormat,
    TextFormatJsonObject,
    TextFormatJsonSchema,
)
from app.stream.services import Services
from providers.protocol import (
    ChatMessage,
    ChatRequest,
    ContentPart,
    FilePart,
    FileRef,
    FunctionCall,
    FunctionDefinition,
    ImagePart,
    ImageURL,
    JsonObjectFormat,
    JsonSchemaFormat,
    JsonSchemaSpec,
    NamedFunction,
    NamedToolChoice,
    RefusalPart,
    ResponseFormat,
    TextPart,
    Tool,
    ToolCall,
)

_ITEM_KINDS: Final[dict[str, type[InputItem]]] = {
    "message": InputMessage,
    "function_call": FunctionCallItem,
    "function_call_output": FunctionCallOutputItem,
}
_STATEFUL_ITEMS: Final = frozenset({"item_reference"})
_NO_STATE: Final = (
    "this service keeps no server-side conversation state: send the whole conversation in `input`"
)


def responses_chat_request(services: Services, body: ResponsesRequest) -> ChatRequest:
    """The provider request for a Responses API body, or a 400 naming the field it cannot honour."""
    _refuse_state(body)
    messages: list[ChatMessage] = []
    if body.instructions:
        messages.append(ChatMessage(role="system", content=body.instructions))
    if isinstance(body.input, str):
        messages.append(ChatMessage(role="user", content=body.input))
    else:
        messages.extend(_messages(body.input))
    if not messages:
        raise INVALID_REQUEST("`input` holds no message to answer", param="input")
    extra: dict[str, Any] = {}
    if body.reasoning is not None and body.reasoning.effort is not None:
        extra["reasoning_effort"] = body.reasoning.effort
    if body.text is not None and body.text.verbosity is not None:
        extra["verbosity"] = body.text.verbosity
    # `metadata` stays ours (it is echoed in the response): Chat Completions takes it only with `store`.
    for name in ("service_tier", "prompt_cache_key", "safety_identifier"):
        value = getattr(body, name)
        if value is not None:
            extra[name] = value
    tool_choice = body.tool_choice
    return build_chat_request(
        services,
        messages=messages,
        model=body.model,
        max_tokens=body.max_output_tokens,
        mock=body.mock,
        temperature=body.temperature,
        top_p=body.top_p,
        user=body.user,
        tools=[_tool(tool) for tool in body.tools or ()],
        tool_choice=(
            NamedToolChoice(NamedFunction(tool_choice.name))
            if isinstance(tool_choice, FunctionToolChoice)
            else tool_choice
        ),
        parallel_tool_calls=body.parallel_tool_calls,
        response_format=_response_format(body.text.format) if body.text is not None else None,
        extra=extra,
    )


def _refuse_state(body: ResponsesRequest) -> None:
    if body.store:
        raise UNSUPPORTED_PARAMETER(f"`store: true` is not supported; {_NO_STATE}", param="store")
    if body.background:
        raise UNSUPPORTED_PARAMETER(
            "`background: true` is not supported: a response streams while its request is open",
            param="background",
        )
    if body.previous_response_id is not None:
        raise UNSUPPORTED_PARAMETER(
            f"`previous_response_id` is not supported; {_NO_STATE}", param="previous_response_id"
        )
    if body.conversation is not None:
        raise UNSUPPORTED_PARAMETER(f"`conversation` is not supported; {_NO_STATE}", param="conversation")


def _messages(raw_items: Sequence[Any]) -> list[ChatMessage]:
    messages: list[ChatMessage] = []
    for index, raw in enumerate(raw_items):
        item = _decode_item(raw, index)
        where = f"input[{index}]"
        if isinstance(item, InputMessage):
            messages.append(_message(item, where))
        elif isinstance(item, FunctionCallItem):
            call = ToolCall(item.call_id, FunctionCall(item.name, item.arguments))
            previous = messages[-1] if messages else None
            # Chat Completions carries a turn's calls on its assistant message: consecutive calls (and the
            # answer text just before them) make one assistant message.
            if previous is not None and previous.role == "assistant":
                messages[-1] = msgspec.structs.replace(previous, tool_calls=(*previous.tool_calls, call))
            else:
                messages.append(ChatMessage(role="assistant", tool_calls=(call,)))
        else:
            output = item.output
            content = output if isinstance(output, str) else _parts(output, f"{where}.output", "user")
            messages.append(ChatMessage(role="tool", content=content, tool_call_id=item.call_id))
    return messages


def _decode_item(raw: Any, index: int) -> InputItem:
    where = f"input[{index}]"
    if not isinstance(raw, dict):
        raise INVALID_REQUEST(f"{where} must be an object (a message or a function call item)", param=where)
    kind = raw.get("type", "message")
    if not isinstance(kind, str):
        raise INVALID_REQUEST(f"{where}.type must be a string naming the item kind", param=f"{where}.type")
    if kind in _STATEFUL_ITEMS:
        raise UNSUPPORTED_PARAMETER(
            f"{where}: `{kind}` items are not supported; {_NO_STATE} (with the AI SDK: "
            "providerOptions.openai.store = false)",
            param=f"{where}.type",
        )
    struct = _ITEM_KINDS.get(kind)
    if struct is None:
        raise UNSUPPORTED_PARAMETER(
            f"{where} is a {kind!r} item; this service takes {', '.join(_ITEM_KINDS)} items",
            param=f"{where}.type",
        )
    try:
        return msgspec.convert(raw, struct)
    except msgspec.ValidationError as exc:
        error = from_validation_error(exc)
        param = error.detail.param
        raise INVALID_REQUEST(
            f"{where}: {error.detail.message}", param=f"{where}.{param}" if param else where
        ) from None


def _message(item: InputMessage, where: str) -> ChatMessage:
    content = item.content
    if item.role == "assistant":
        if isinstance(content, str):
            return ChatMessage(role="assistant", content=content)
        parts: list[ContentPart] = []
        for position, part in enumerate(content):
            if isinstance(part, OutputTextPart | InputText):
                parts.append(TextPart(part.text))
            elif isinstance(part, RefusalContent):
                parts.append(RefusalPart(part.refusal))
            else:
                raise INVALID_REQUEST(
                    f"an assistant message cannot carry a {tag_of(part)!r} content part",
                    param=f"{where}.content[{position}]",
                )
        return ChatMessage(role="assistant", content=tuple(parts))
    return ChatMessage(
        role=item.role,
        content=content if isinstance(content, str) else _parts(content, f"{where}.content", item.role),
    )


def _parts(
    content: Sequence[InputText | InputImage | InputFile | OutputTextPart | RefusalContent],
    where: str,
    role: str,
) -> tuple[ContentPart, ...]:
    parts: list[ContentPart] = []
    text_only = role in ("system", "developer")
    for position, part in enumerate(content):
        at = f"{where}[{position}]"
        if isinstance(part, InputText):
            parts.append(TextPart(part.text))
        elif text_only or isinstance(part, OutputTextPart | RefusalContent):
            raise INVALID_REQUEST(f"a {role} message cannot carry a {tag_of(part)!r} content part", param=at)
        elif isinstance(part, InputImage):
            if part.image_url is None:
                raise UNSUPPORTED_PARAMETER(
                    "an input_image needs `image_url` (a URL or a data: URL); uploaded files are not "
                    "supported",
                    param=f"{at}.image_url",
                )
            parts.append(ImagePart(ImageURL(part.image_url, part.detail)))
        else:
            if part.file_url is not None:
                raise UNSUPPORTED_PARAMETER(
                    "an input_file by `file_url` is not supported; send its bytes as `file_data`",
                    param=f"{at}.file_url",
                )
            parts.append(FilePart(FileRef(part.file_data, part.file_id, part.filename)))
    return tuple(parts)


def _tool(tool: FunctionTool) -> Tool:
    return Tool(FunctionDefinition(tool.name, tool.description, tool.parameters, tool.strict))


def _response_format(text_format: TextFormat) -> ResponseFormat | None:
    if isinstance(text_format, TextFormatJsonSchema):
        spec = JsonSchemaSpec(
            text_format.name, text_format.description, text_format.json_schema, text_format.strict
        )
        return JsonSchemaFormat(spec)
    if isinstance(text_format, TextFormatJsonObject):
        return JsonObjectFormat()
    return None
