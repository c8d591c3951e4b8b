"""From raw HTTP input to a provider `ChatRequest`: decoding, validation and the request-level limits.

Every rejection is an `ApiError` with a 4xx status naming the field at fault.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Annotated, Any, Final, Protocol, TypeVar
from urllib.parse import unquote_to_bytes

import msgspec
from litestar import Request
from litestar.exceptions import InternalServerException

from app.errors import (
    INVALID_ENCODING,
    INVALID_JSON,
    INVALID_REQUEST,
    MODEL_NOT_FOUND,
    REQUEST_TIMEOUT,
    UNSUPPORTED_MEDIA_TYPE,
    ApiError,
    from_validation_error,
)
from app.http.disconnect import ClientGoneError
from app.schemas import AssistantTurn, ChatCompletionRequest, Message, ToolResult, role_of, tag_of
from app.stream.services import Services
from providers.protocol import (
    AudioPart,
    ChatMessage,
    ChatRequest,
    ContentPart,
    FilePart,
    FunctionCall,
    ImagePart,
    MockDirectives,
    NamedToolChoice,
    RefusalPart,
    ResponseFormat,
    TextPart,
    Tool,
    ToolCall,
    ToolChoice,
)

T = TypeVar("T")
_INTEGER = re.compile(r"-?[0-9]+")
_CHARSET = re.compile(r"(?i)(?:^|;)\s*charset\s*=\s*(\"[^\"]*\"|[^;\s]*)")
T_co = TypeVar("T_co", covariant=True)


class JsonDecoder(Protocol[T_co]):
    """What `decode_json` needs of a decoder: `msgspec.json.Decoder(T)`."""

    @property
    def type(self) -> Any: ...

    def decode(self, buf: bytes | str, /) -> T_co: ...


_mock_decoder = msgspec.json.Decoder(MockDirectives)
# A conversation in a URL: fewer messages than a body may carry. This bounds the count, not the length: the
# URL's length is bounded by the server's request-head limit (h11's 16 KiB; httptools takes more), and the
# page keeps its EventSource URLs under 8,000 characters (docs/browser.md).
MAX_QUERY_MESSAGES: Final = 64
QueryMessages = Annotated[list[Message], msgspec.Meta(min_length=1, max_length=MAX_QUERY_MESSAGES)]
_messages_decoder = msgspec.json.Decoder(QueryMessages)


async def decode_json_body(
    request: Request[Any, Any, Any], decoder: JsonDecoder[T], *, timeout_s: float
) -> T:
    """Decode a JSON request body into a Struct, or fail with 415/400 naming the problem.

    The body must arrive within `timeout_s` (408 otherwise): a client trickling it must not hold a
    connection and a handler for ever.
    """
    content_type = request.headers.get("content-type", "")
    media_type, _, parameters = content_type.partition(";")
    if media_type.strip().lower() != "application/json":
        raise UNSUPPORTED_MEDIA_TYPE(f"Content-Type must be application/json, got {content_type or 'none'!r}")
    charset = _CHARSET.search(parameters)
    if charset is not None and charset.group(1).strip('"').lower() != "utf-8":
        # JSON between systems is UTF-8 (RFC 8259, section 8.1): a body declared otherwise would be misread.
        raise UNSUPPORTED_MEDIA_TYPE(f"JSON must be sent as UTF-8, got charset {charset.group(1)!r}")
    try:
        async with asyncio.timeout(timeout_s):
            body = await request.body()
    except TimeoutError:
        raise REQUEST_TIMEOUT(f"the request body did not arrive within {timeout_s:g}s") from None
    except InternalServerException:
        # Litestar's one failure while reading a body: `http.disconnect` before its end, a client that
        # hung up mid-upload. Nobody is left to answer, and it is not the server's error.
        raise ClientGoneError from None
    if not body.strip():
        raise INVALID_JSON("the request body is empty; send a JSON object")
    return decode_json(decoder, body, "the request body")


def decode_json(decoder: JsonDecoder[T], raw: str | bytes, what: str) -> T:
    """Decode JSON into a Struct, or raise a 400 naming the field at fault (`what` names the input)."""
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        # JSON has one kind of number, and `1.0` is the integer 1 (JSON Schema agrees, and so do OpenAI's
        # clients and servers); msgspec's integers take `1` only. Only then is the input looked at twice.
        try:
            normalised = _integral_floats_as_ints(msgspec.json.decode(raw))
        except (msgspec.DecodeError, RecursionError):  # malformed past the error, or too deep: it stands
            normalised = _UNCHANGED
        if normalised is _UNCHANGED:
            raise from_validation_error(exc) from None
        try:
            converted: T = msgspec.convert(normalised, decoder.type)
        except msgspec.ValidationError as again:
            raise from_validation_error(again) from None
        return converted
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        # Decided from the bytes: msgspec reports invalid UTF-8 as `UnicodeDecodeError` before 0.23 and as
        # `DecodeError` since, and bytes that are not UTF-8 outside a string as malformed JSON.
        if not is_utf8(raw):
            raise INVALID_ENCODING(f"{what} is not valid UTF-8") from None
        if isinstance(exc, msgspec.DecodeError):
            raise from_validation_error(exc) from None
        raise
    except RecursionError:
        raise INVALID_JSON(f"{what} is nested too deeply") from None


_UNCHANGED: Final = object()


def _integral_floats_as_ints(value: Any) -> Any:
    """`value` with every float that is a whole number (`3.0`, `1e3`) made an int; `_UNCHANGED` if none is."""
    changed = False

    def walk(item: Any) -> Any:
        nonlocal changed
        if isinstance(item, float) and item.is_integer():
            changed = True
            return int(item)
        if isinstance(item, dict):
            return {key: walk(inner) for key, inner in item.items()}
        if isinstance(item, list):
            return [walk(inner) for inner in item]
        return item

    normalised = walk(value)
    return normalised if changed else _UNCHANGED


def is_utf8(raw: str | bytes) -> bool:
    """Whether `raw` is text or bytes that decode as UTF-8 (JSON must be UTF-8: RFC 8259, section 8.1)."""
    if isinstance(raw, str):
        return True
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def decode_mock_query(raw: str | None) -> MockDirectives | None:
    """The `mock` query parameter of `GET /v1/stream`: the same directives as the JSON field, as JSON."""
    if raw is None:
        return None
    try:
        return _mock_decoder.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        error = from_validation_error(exc)
        param = error.detail.param
        raise INVALID_REQUEST(
            f"invalid mock directives: {error.detail.message}", param=f"mock.{param}" if param else "mock"
        ) from None


def decode_messages_query(raw: str) -> list[Message]:
    """The `messages` query parameter of `GET /v1/stream`: a conversation, as the JSON body's `messages`.

    EventSource can only GET, so a page that keeps a conversation sends its history this way.
    """
    try:
        return decode_json(_messages_decoder, raw, "the query parameter 'messages'")
    except ApiError as exc:
        param = exc.detail.param or ""
        where = f"messages{param}" if not param or param.startswith("[") else f"messages.{param}"
        raise exc.kind(exc.detail.message, param=where) from None


def check_query_encoding(query_string: bytes) -> None:
    """Reject a query whose percent-decoded values are not UTF-8, naming the parameter.

    Frameworks decode them with replacement characters, which would stream an answer to a prompt the
    client never sent.
    """
    for pair in query_string.split(b"&"):
        name, _, value = pair.partition(b"=")
        try:
            unquote_to_bytes(value.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            param = unquote_to_bytes(name).decode("utf-8", "replace")
            raise INVALID_ENCODING(f"the query parameter {param!r} is not valid UTF-8", param=param) from None


def check_query_names(names: Iterable[str], allowed: Collection[str]) -> None:
    """Refuse a query parameter the endpoint does not know, as a JSON body refuses an unknown field."""
    for name in names:
        if name not in allowed:
            raise INVALID_REQUEST(
                f"unknown query parameter {name!r}; this endpoint takes {', '.join(sorted(allowed))}",
                param=name,
            )


def query_int(params: Mapping[str, str], name: str) -> int | None:
    """A positive integer query parameter, if present: ASCII digits, as a JSON number would be written.

    (`int()` also takes `+3`, `3_0`, surrounding spaces and digits of other scripts.)
    """
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if not _INTEGER.fullmatch(raw):
        raise INVALID_REQUEST(f"{name} must be an integer, got {raw!r}", param=name)
    value = int(raw)
    if value < 1:
        raise INVALID_REQUEST(f"{name} must be >= 1, got {value}", param=name)
    return value


def query_flag(params: Mapping[str, str], name: str) -> bool:
    """A boolean query parameter: `true` or `false` (absent or empty: false)."""
    raw = params.get(name)
    if raw is None or raw == "":
        return False
    if raw not in ("true", "false"):
        raise INVALID_REQUEST(f"{name} must be true or false, got {raw!r}", param=name)
    return raw == "true"


# Chat Completions fields OpenAI documents that this service does not type: forwarded to an OpenAI-compatible
# upstream like every field, and accepted (and ignored) by a provider without one, which refuses only names
# that are not OpenAI's. (Typed fields are `ChatCompletionRequest`'s own.)
OPENAI_UNTYPED_FIELDS: Final = frozenset(
    {
        "audio",
        "function_call",
        "functions",
        "modalities",
        "prediction",
        "prompt_cache_key",
        "prompt_cache_retention",
        "reasoning_effort",
        "safety_identifier",
        "service_tier",
        "verbosity",
        "web_search_options",
    }
)
# What `build_chat_request` maps into `ChatRequest` fields; every other field of the body is `extra`.
_MAPPED_FIELDS: Final = frozenset(
    {
        "messages",
        "model",
        "stream",
        "stream_options",
        "max_tokens",
        "temperature",
        "top_p",
        "n",
        "stop",
        "seed",
        "user",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "resumable",
        "mock",
    }
)
_TYPED_FIELDS: Final = frozenset(ChatCompletionRequest.__struct_fields__)
_raw_fields = msgspec.json.Decoder(dict[str, msgspec.Raw])


def chat_extra(raw_body: bytes, *, forwarded: bool) -> dict[str, Any]:
    """The fields of a (valid) chat completion body that are not mapped to `ChatRequest` fields, as sent.

    Unless an upstream gets them (`forwarded`), a field OpenAI does not document is refused by name, as a
    typo must be: nobody else would tell the client.
    """
    extra: dict[str, Any] = {}
    for name, value in _raw_fields.decode(raw_body).items():
        if name in _MAPPED_FIELDS:
            continue
        if not forwarded and name not in _TYPED_FIELDS and name not in OPENAI_UNTYPED_FIELDS:
            raise INVALID_REQUEST(f"unknown field `{name}`", param=name)
        extra[name] = msgspec.json.decode(value)
    return extra


def to_chat_message(message: Message, index: int) -> ChatMessage:
    """A provider message for a decoded wire message, refusing part kinds its role cannot carry."""
    where = f"messages[{index}]"
    role = role_of(message)
    content = message.content
    parts: tuple[ContentPart, ...] | str | None
    if isinstance(content, list):
        allowed = PARTS_BY_ROLE[role]
        for position, part in enumerate(content):
            if not isinstance(part, allowed):
                kind = tag_of(part)
                raise INVALID_REQUEST(
                    f"a {role} message cannot carry a {kind!r} content part",
                    param=f"{where}.content[{position}]",
                )
        parts = tuple(content)
    else:
        parts = content
    if isinstance(message, AssistantTurn):
        tool_calls = tuple(
            ToolCall(call.id, FunctionCall(call.function.name, call.function.arguments))
            for call in message.tool_calls or ()
        )
        if message.refusal is not None and not parts:
            parts = (RefusalPart(message.refusal),)
        if parts is None and not tool_calls:
            raise INVALID_REQUEST(
                "an assistant message needs `content` or `tool_calls`", param=f"{where}.content"
            )
        return ChatMessage(role="assistant", content=parts, name=message.name, tool_calls=tool_calls)
    if isinstance(message, ToolResult):
        return ChatMessage(role="tool", content=parts, tool_call_id=message.tool_call_id)
    return ChatMessage(role=role, content=parts, name=message.name)


_TEXT_ONLY: Final = (TextPart,)
# The content parts each role may carry; the OpenAPI document's message schemas say the same from this.
PARTS_BY_ROLE: Final[Mapping[str, tuple[type, ...]]] = {
    "system": _TEXT_ONLY,
    "developer": _TEXT_ONLY,
    "tool": _TEXT_ONLY,
    "user": (TextPart, ImagePart, AudioPart, FilePart),
    "assistant": (TextPart, RefusalPart),
}


def build_chat_request(
    services: Services,
    *,
    messages: Sequence[Message | ChatMessage],
    model: str | None,
    max_tokens: int | None,
    mock: MockDirectives | None,
    temperature: float | None = None,
    top_p: float | None = None,
    stop: str | Sequence[str] | None = None,
    seed: int | None = None,
    user: str | None = None,
    n: int | None = None,
    tools: Sequence[Tool] | None = None,
    tool_choice: ToolChoice | None = None,
    parallel_tool_calls: bool | None = None,
    response_format: ResponseFormat | None = None,
    extra: dict[str, Any] | None = None,
) -> ChatRequest:
    """Apply defaults and server limits, and check the model is served."""
    settings, provider = services.settings, services.provider
    model_id = model or settings.default_model
    served = provider.models()
    if served and model_id not in served:
        raise MODEL_NOT_FOUND(
            f"The model {model_id!r} does not exist; available: {', '.join(served)}", param="model"
        )
    if max_tokens is not None and max_tokens > settings.max_tokens_limit:
        raise INVALID_REQUEST(
            f"max_tokens={max_tokens} exceeds this server's limit of {settings.max_tokens_limit}",
            param="max_tokens",
        )
    tool_names = {tool.function.name for tool in tools or ()}
    if isinstance(tool_choice, NamedToolChoice) and tool_choice.function.name not in tool_names:
        raise INVALID_REQUEST(
            f"tool_choice names the function {tool_choice.function.name!r}, which is not one of `tools`",
            param="tool_choice",
        )
    if tool_choice in ("auto", "required") and not tool_names:
        raise INVALID_REQUEST(f"tool_choice={tool_choice!r} needs `tools`", param="tool_choice")
    return ChatRequest(
        model=model_id,
        messages=tuple(
            message if isinstance(message, ChatMessage) else to_chat_message(message, index)
            for index, message in enumerate(messages)
        ),
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        stop=(stop,) if isinstance(stop, str) else tuple(stop or ()),
        seed=seed,
        user=user,
        n=n or 1,
        tools=tuple(tools or ()),
        tool_choice=tool_choice,
        parallel_tool_calls=parallel_tool_calls,
        response_format=response_format,
        extra=extra or {},
        mock=mock,
    )
