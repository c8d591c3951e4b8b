"""The Bedrock Converse API mapping, both ways, without the SDK: our request to `converse_stream`'s
arguments, and its stream events to our items.

Pure functions and one small state machine, so that every rule can be tested without a socket; the
provider (`providers/bedrock.py`) only moves the dictionaries between these and botocore.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Iterator, Mapping
from typing import Any, Final

from providers.errors import ProviderStreamError, ProviderUnsupportedParameterError
from providers.protocol import (
    AudioPart,
    ChatMessage,
    ChatRequest,
    FilePart,
    Finish,
    FinishReason,
    ImagePart,
    JsonObjectFormat,
    JsonSchemaFormat,
    NamedToolChoice,
    RefusalPart,
    StreamItem,
    TextDelta,
    TextPart,
    ToolCallDelta,
    Usage,
)

# Bedrock's stop reasons; the two `malformed_*` ones are failures, not endings (see `ConverseEvents`).
STOP_REASONS: Final[Mapping[str, FinishReason]] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
_IMAGE_FORMATS: Final = {"image/png": "png", "image/jpeg": "jpeg", "image/gif": "gif", "image/webp": "webp"}
# Fields of the client's body that change nothing Bedrock could honour, so they pass silently; any other
# untyped field with a value is refused by name rather than ignored.
_IGNORED_EXTRA: Final = frozenset(
    {"metadata", "store", "service_tier", "safety_identifier", "prompt_cache_key", "prompt_cache_retention"}
)

logger = logging.getLogger(__name__)


def _unsupported(param: str, what: str) -> ProviderUnsupportedParameterError:
    return ProviderUnsupportedParameterError(
        f"Amazon Bedrock (Converse API) does not support {what}", param=param
    )


def converse_arguments(request: ChatRequest, model_id: str) -> dict[str, Any]:
    """`converse_stream`'s keyword arguments for `request`; raises `ProviderUnsupportedParameterError`
    naming the first field Bedrock cannot honour."""
    _refuse_unsupported(request)
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for index, message in enumerate(request.messages):
        if message.role in ("system", "developer"):
            system.extend(_system_blocks(message, index))
            continue
        role = "assistant" if message.role == "assistant" else "user"
        blocks = _blocks(message, index)
        if not blocks:
            continue
        # Converse wants user and assistant turns to alternate: several `tool` results (and the user text
        # after them) are one user turn there.
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    arguments: dict[str, Any] = {"modelId": model_id, "messages": turns}
    if system:
        arguments["system"] = system
    inference: dict[str, Any] = {}
    if request.max_tokens is not None:
        inference["maxTokens"] = request.max_tokens
    if request.temperature is not None:
        inference["temperature"] = request.temperature
    if request.top_p is not None:
        inference["topP"] = request.top_p
    if request.stop:
        inference["stopSequences"] = list(request.stop)
    if inference:
        arguments["inferenceConfig"] = inference
    if request.tools:
        arguments["toolConfig"] = _tool_config(request)
    return arguments


def _refuse_unsupported(request: ChatRequest) -> None:
    if request.n != 1:
        raise _unsupported("n", "more than one choice (n > 1)")
    if isinstance(request.response_format, JsonObjectFormat | JsonSchemaFormat):
        raise _unsupported("response_format", "response_format (JSON mode or a JSON schema)")
    if request.seed is not None:
        raise _unsupported("seed", "seed")
    if request.tool_choice == "none":
        raise _unsupported("tool_choice", "tool_choice='none' (leave out `tools` instead)")
    if request.parallel_tool_calls is False:
        raise _unsupported("parallel_tool_calls", "parallel_tool_calls=false")
    for name, value in request.extra.items():
        if name not in _IGNORED_EXTRA and value not in (None, False, 0, [], {}):
            raise _unsupported(name, f"`{name}`")


def _system_blocks(message: ChatMessage, index: int) -> list[dict[str, Any]]:
    if isinstance(message.content, tuple):
        for position, part in enumerate(message.content):
            if not isinstance(part, TextPart):
                raise _unsupported(
                    f"messages[{index}].content[{position}]", "non-text parts in system prompts"
                )
    text = message.text
    return [{"text": text}] if text else []


def _blocks(message: ChatMessage, index: int) -> list[dict[str, Any]]:
    """The Converse content blocks of one user, assistant or tool message (empty text is left out: Converse
    refuses blank text blocks)."""
    where = f"messages[{index}]"
    if message.role == "tool":
        result = {"toolUseId": message.tool_call_id, "content": [{"text": message.text}]}
        return [{"toolResult": result}]
    blocks: list[dict[str, Any]] = []
    content = message.content
    if isinstance(content, str):
        if content:
            blocks.append({"text": content})
    elif content is not None:
        for position, part in enumerate(content):
            blocks.extend(_part_blocks(part, f"{where}.content[{position}]"))
    for position, call in enumerate(message.tool_calls):
        arguments = _tool_input(call.function.arguments, f"{where}.tool_calls[{position}].function.arguments")
        blocks.append({"toolUse": {"toolUseId": call.id, "name": call.function.name, "input": arguments}})
    return blocks


def _part_blocks(part: object, where: str) -> list[dict[str, Any]]:
    if isinstance(part, TextPart):
        return [{"text": part.text}] if part.text else []
    if isinstance(part, RefusalPart):
        return [{"text": part.refusal}] if part.refusal else []
    if isinstance(part, ImagePart):
        return [{"image": _image(part.image_url.url, where)}]
    if isinstance(part, AudioPart | FilePart):
        raise _unsupported(where, f"{'audio' if isinstance(part, AudioPart) else 'file'} content parts")
    raise _unsupported(where, "this content part")  # pragma: no cover - the part union is closed


def _image(url: str, where: str) -> dict[str, Any]:
    """An image block from a `data:` URL; Bedrock does not fetch remote images, so neither do we."""
    header, comma, data = url.partition(",")
    if not url.startswith("data:") or not comma or not header.endswith(";base64"):
        raise _unsupported(
            f"{where}.image_url.url", "image URLs: send the image inline as a data:image/...;base64 URL"
        )
    media_type = header.removeprefix("data:").removesuffix(";base64").lower()
    image_format = _IMAGE_FORMATS.get(media_type)
    if image_format is None:
        raise _unsupported(f"{where}.image_url.url", f"{media_type!r} images (png, jpeg, gif or webp only)")
    try:
        raw = base64.b64decode(data, validate=True)
    except binascii.Error:
        raise ProviderUnsupportedParameterError(
            "the image's data URL is not valid base64", param=f"{where}.image_url.url"
        ) from None
    # botocore base64-encodes `bytes` itself when it serialises the request.
    return {"format": image_format, "source": {"bytes": raw}}


def _tool_input(arguments: str, where: str) -> dict[str, Any]:
    """A tool call's arguments as the JSON object Converse's `toolUse.input` must be."""
    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except json.JSONDecodeError:
        raise ProviderUnsupportedParameterError(
            "tool call arguments are not valid JSON", param=where
        ) from None
    if not isinstance(value, dict):
        raise ProviderUnsupportedParameterError("tool call arguments must be a JSON object", param=where)
    return value


def _tool_config(request: ChatRequest) -> dict[str, Any]:
    tools = []
    for tool in request.tools:
        function = tool.function
        spec: dict[str, Any] = {
            "name": function.name,
            # A function without parameters still needs a schema in Converse.
            "inputSchema": {"json": function.parameters or {"type": "object", "properties": {}}},
        }
        if function.description:
            spec["description"] = function.description
        tools.append({"toolSpec": spec})
    config: dict[str, Any] = {"tools": tools}
    choice = request.tool_choice
    if choice == "auto":
        config["toolChoice"] = {"auto": {}}
    elif choice == "required":
        config["toolChoice"] = {"any": {}}
    elif isinstance(choice, NamedToolChoice):
        config["toolChoice"] = {"tool": {"name": choice.function.name}}
    return config


class ConverseEvents:
    """Turns `converse_stream` events, in order, into our stream items; one instance per generation."""

    def __init__(self) -> None:
        # Converse numbers every content block; tool calls are numbered among themselves in our protocol.
        self._calls: dict[int, int] = {}
        self._reason: FinishReason | None = None
        self._usage: Usage | None = None
        self.finished = False

    def feed(self, event: Mapping[str, Any]) -> Iterator[StreamItem]:
        """The items one event yields (often none)."""
        if "contentBlockDelta" in event:
            body = event["contentBlockDelta"]
            delta = body.get("delta", {})
            text = delta.get("text")
            if text:
                yield TextDelta(text)
            tool_use = delta.get("toolUse")
            if tool_use is not None:
                index = self._calls.get(body.get("contentBlockIndex", 0))
                if index is not None and tool_use.get("input"):
                    yield ToolCallDelta(index=index, arguments=tool_use["input"])
            # `reasoningContent` and `citation` deltas have no place in our protocol yet: left out.
        elif "contentBlockStart" in event:
            body = event["contentBlockStart"]
            tool_use = body.get("start", {}).get("toolUse")
            if tool_use is not None:
                index = len(self._calls)
                self._calls[body.get("contentBlockIndex", index)] = index
                yield ToolCallDelta(index=index, id=tool_use["toolUseId"], name=tool_use["name"])
        elif "messageStop" in event:
            reason = event["messageStop"].get("stopReason", "end_turn")
            if reason.startswith("malformed_"):  # `malformed_model_output`, `malformed_tool_use`
                raise ProviderStreamError(f"Amazon Bedrock ended the answer with stopReason={reason!r}")
            if reason not in STOP_REASONS:
                # A reason newer than this code: the answer is complete all the same.
                logger.warning("Amazon Bedrock stopReason %r is not known here; reported as 'stop'", reason)
            self._reason = STOP_REASONS.get(reason, "stop")
        elif "metadata" in event:
            usage = event["metadata"].get("usage")
            if usage is not None:
                self._usage = Usage(
                    prompt_tokens=int(usage.get("inputTokens", 0)),
                    completion_tokens=int(usage.get("outputTokens", 0)),
                )

    def finish(self) -> Finish | None:
        """The generation's `Finish` once the stream has ended, or None if it never said why it stopped."""
        if self._reason is None:
            return None
        return Finish(reason=self._reason, usage=self._usage)
