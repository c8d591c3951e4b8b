"""A `useChat` conversation (`UIMessage`s and their parts) as this service's chat messages.

It is read the way the AI SDK's own `convertToModelMessages` reads it, so that a conversation means here what
it means to a route handler that calls `streamText`:
- an assistant message is one model turn per step (its `step-start` parts divide them): the step's text and
  tool calls, then a `tool` message with the result of each call;
- a user message is its text and files; a system message its text.

Every refusal is a 400 naming the part at fault (`messages[2].parts[1].state`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import msgspec

from app.errors import INVALID_REQUEST, from_validation_error
from app.schemas import (
    AssistantTurn,
    EchoedFunctionCall,
    EchoedToolCall,
    Message,
    SystemMessage,
    ToolResult,
    UserMessage,
    tag_of,
)
from app.schemas_ui import (
    DataUIPart,
    DynamicToolUIPart,
    FileUIPart,
    ReasoningUIPart,
    SourceDocumentUIPart,
    SourceUrlUIPart,
    StepStartUIPart,
    TextUIPart,
    ToolUIPart,
    UIMessage,
    UIPart,
    ui_part,
)
from providers.protocol import ContentPart, FilePart, FileRef, FunctionName, ImagePart, ImageURL, TextPart

# Parts that carry nothing a model is sent, in any message:
# - `step-start`: outside an assistant message it divides nothing;
# - `reasoning`: a model's earlier thinking, which Chat Completions has no field to send back in;
# - `source-url`, `source-document`: citations shown to the user; the AI SDK does not send them to models;
# - `data-*`: the app's own data for its UI, which the AI SDK drops too unless the app converts it.
_IGNORED: Final = (StepStartUIPart, ReasoningUIPart, SourceUrlUIPart, SourceDocumentUIPart, DataUIPart)
# What the AI SDK answers a model when the user refused to run a tool, unless the user gave a reason.
_DENIED: Final = "Tool call execution denied."
_IMAGE_SCHEMES: Final = frozenset({"data", "http", "https"})

ToolPart = ToolUIPart | DynamicToolUIPart


def to_messages(messages: Sequence[UIMessage], *, system: str | None = None) -> list[Message]:
    """The chat messages of a conversation, after the system prompt `system` if there is one."""
    converted: list[Message] = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        parts = [_decoded(raw, f"{where}.parts[{position}]") for position, raw in enumerate(message.parts)]
        if message.role == "assistant":
            converted.extend(_assistant_turns(parts, where))
        elif message.role == "user":
            converted.append(_user_message(parts, where))
        else:
            converted.append(SystemMessage(content="".join(_texts(parts, "system", where))))
    if not converted:
        # Only assistant messages with nothing in them (a stream stopped before its first token).
        raise INVALID_REQUEST(
            "the messages hold nothing to answer: no text, file or tool result", param="messages"
        )
    return converted if system is None else [SystemMessage(content=system), *converted]


def response_message_id(messages: Sequence[UIMessage], fresh: str) -> str:
    """The id of the message the answer goes into: the last message when it is the assistant's (the answer
    continues it, after the front end ran its tools), else `fresh`.

    As the AI SDK's server helpers do: `useChat` appends the answer to a message of the same id, and would
    show a second assistant message for one of a new id.
    """
    last = messages[-1]
    return last.id if last.role == "assistant" else fresh


def _decoded(raw: dict[str, object], where: str) -> UIPart:
    try:
        return ui_part(raw)
    except msgspec.ValidationError as exc:
        raise from_validation_error(_located(exc, where)) from None


def _located(exc: msgspec.ValidationError, where: str) -> msgspec.ValidationError:
    """The error of one part, with its path from the body's root (`$.messages[0].parts[1].text`)."""
    message = str(exc)
    head, at, path = message.partition(" - at `$")
    return msgspec.ValidationError(f"{head} - at `$.{where}{path}" if at else f"{message} - at `$.{where}`")


def _kind(part: UIPart) -> str:
    if isinstance(part, ToolPart | DataUIPart):
        return part.type
    return tag_of(part)


def _refused(role: str, part: UIPart, where: str) -> Exception:
    return INVALID_REQUEST(f"a {role} message cannot carry a {_kind(part)!r} part", param=where)


def _texts(parts: Sequence[UIPart], role: str, where: str) -> list[str]:
    texts: list[str] = []
    for position, part in enumerate(parts):
        if isinstance(part, TextUIPart):
            texts.append(part.text)
        elif not isinstance(part, _IGNORED):
            raise _refused(role, part, f"{where}.parts[{position}]")
    return texts


def _user_message(parts: Sequence[UIPart], where: str) -> UserMessage:
    content: list[ContentPart] = []
    for position, part in enumerate(parts):
        at = f"{where}.parts[{position}]"
        if isinstance(part, TextUIPart):
            content.append(TextPart(part.text))
        elif isinstance(part, FileUIPart):
            content.append(_file(part, at))
        elif not isinstance(part, _IGNORED):
            raise _refused("user", part, at)
    if not content:
        raise INVALID_REQUEST("a user message needs a text or file part", param=f"{where}.parts")
    return UserMessage(content=content)


def _file(part: FileUIPart, where: str) -> ContentPart:
    """An image by URL or inline; any other file inline only: a Chat Completions `file` part has no URL."""
    scheme = part.url.partition(":")[0].lower()
    if part.media_type.startswith("image/"):
        if scheme not in _IMAGE_SCHEMES:
            # A `blob:` URL, say: it names a file in the sender's browser, which nobody else can read.
            raise INVALID_REQUEST(
                f"an image must be sent as a data: or http(s) URL, not {scheme}:", param=f"{where}.url"
            )
        return ImagePart(ImageURL(url=part.url))
    if scheme != "data":
        raise INVALID_REQUEST(
            f"a {part.media_type} file must be sent inline, as a data: URL (only images may be sent by URL)",
            param=f"{where}.url",
        )
    return FilePart(FileRef(file_data=part.url, filename=part.filename))


def _assistant_turns(parts: Sequence[UIPart], where: str) -> list[Message]:
    turns: list[Message] = []
    step: list[tuple[int, UIPart]] = []
    for position, part in enumerate(parts):
        if isinstance(part, StepStartUIPart):
            turns.extend(_step(step, where))
            step = []
        else:
            step.append((position, part))
    turns.extend(_step(step, where))
    return turns


def _step(parts: Sequence[tuple[int, UIPart]], where: str) -> list[Message]:
    """One model call of an answer: what it said and called, then the results of its calls."""
    texts: list[str] = []
    calls: list[EchoedToolCall] = []
    results: list[Message] = []
    for position, part in parts:
        at = f"{where}.parts[{position}]"
        if isinstance(part, TextUIPart):
            texts.append(part.text)
        elif isinstance(part, ToolPart):
            answered = _answered_call(part, at)
            if answered is not None:
                calls.append(answered[0])
                results.append(answered[1])
        elif not isinstance(part, _IGNORED):
            raise _refused("assistant", part, at)
    text = "".join(texts)
    if not text and not calls:
        return []
    return [AssistantTurn(content=text or None, tool_calls=calls or None), *results]


def _answered_call(part: ToolPart, where: str) -> tuple[EchoedToolCall, ToolResult] | None:
    """A tool call and its result; None for a call cut off before its input was complete."""
    state = part.state
    if state == "input-streaming":
        # Stopped (or failed) while the model was still writing the call: it was never whole, so never run.
        # The AI SDK leaves such a call out too, so a chat can go on after Stop.
        return None
    if state in ("input-available", "approval-requested", "approval-responded"):
        raise INVALID_REQUEST(
            f"the call {part.tool_call_id!r} of the tool {part.name!r} has no result: run the tool and send "
            "its part back in state `output-available` (or `output-error`)",
            param=f"{where}.state",
        )
    name = _function_name(part, where)
    if not part.tool_call_id:
        raise INVALID_REQUEST("a tool call needs a `toolCallId`", param=f"{where}.toolCallId")
    if state == "output-available":
        output = part.output
        result = output if isinstance(output, str) else msgspec.json.encode(output).decode()
    elif state == "output-error":
        if part.error_text is None:
            raise INVALID_REQUEST(
                "a tool part in state `output-error` needs `errorText`", param=f"{where}.errorText"
            )
        result = part.error_text
    else:  # output-denied
        reason = part.approval.reason if part.approval is not None else None
        result = reason or _DENIED
    # A call whose input was not valid JSON (`tool-input-error`) keeps only its text, in `rawInput`.
    raw = part.raw_input
    arguments = (
        raw if part.input is None and isinstance(raw, str) else msgspec.json.encode(part.input).decode()
    )
    call = EchoedToolCall(id=part.tool_call_id, function=EchoedFunctionCall(name=name, arguments=arguments))
    return call, ToolResult(content=result, tool_call_id=part.tool_call_id)


def _function_name(part: ToolPart, where: str) -> str:
    """The tool's name, checked as a Chat Completions function name (an upstream refuses any other)."""
    try:
        name: str = msgspec.convert(part.name, FunctionName)
    except msgspec.ValidationError as exc:
        field = "toolName" if isinstance(part, DynamicToolUIPart) else "type"
        raise from_validation_error(_located(exc, f"{where}.{field}")) from None
    return name
