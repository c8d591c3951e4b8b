"""From raw HTTP input to a provider `ChatRequest`: decoding, validation and the request-level limits.

Every rejection is an `ApiError` with a 4xx status naming the field at fault.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any, Final, Protocol, TypeVar
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
    from_validation_error,
)
from app.http.disconnect import ClientGoneError
from app.schemas import Message
from app.stream.services import Services
from providers.protocol import ChatMessage, ChatRequest, MockDirectives

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


def build_chat_request(
    services: Services,
    *,
    messages: Sequence[Message],
    model: str | None,
    max_tokens: int | None,
    mock: MockDirectives | None,
    temperature: float | None = None,
    top_p: float | None = None,
    stop: str | Sequence[str] | None = None,
    seed: int | None = None,
    user: str | None = None,
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
    return ChatRequest(
        model=model_id,
        messages=tuple(ChatMessage(role=m.role, content=m.text()) for m in messages),
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        stop=(stop,) if isinstance(stop, str) else tuple(stop or ()),
        seed=seed,
        user=user,
        mock=mock,
    )
