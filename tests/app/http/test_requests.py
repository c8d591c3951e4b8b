"""`decode_json`'s classification of bad input, whatever exception the installed msgspec raises for it."""

from __future__ import annotations

import msgspec
import pytest

from app.errors import ApiError
from app.http.requests import decode_json, is_utf8
from app.schemas import ChatCompletionRequest


class _Raising:
    """A decoder that fails the way one msgspec release or another does."""

    type = object

    def __init__(self, error: Exception) -> None:
        self._error = error

    def decode(self, buf: bytes | str, /) -> object:
        raise self._error


_BEFORE_0_23 = UnicodeDecodeError("utf-8", b"\xe9", 0, 1, "invalid continuation byte")
_SINCE_0_23 = msgspec.DecodeError("Invalid UTF-8 encoded string")
_MALFORMED = msgspec.DecodeError("JSON is malformed: invalid character (byte 0)")


@pytest.mark.parametrize(
    "error", [_BEFORE_0_23, _SINCE_0_23, _MALFORMED], ids=["<0.23", ">=0.23", "malformed"]
)
def test_bytes_that_are_not_utf8_are_invalid_encoding_whatever_msgspec_raised(error: Exception) -> None:
    with pytest.raises(ApiError) as raised:
        decode_json(_Raising(error), b'{"content": "caf\xe9"}', "the request body")

    assert raised.value.status_code == 400
    assert raised.value.detail.code == "invalid_encoding"
    assert raised.value.detail.message == "the request body is not valid UTF-8"


def test_malformed_utf8_json_stays_invalid_json() -> None:
    with pytest.raises(ApiError) as raised:
        decode_json(_Raising(_MALFORMED), b'{"content": ', "the message")

    assert raised.value.detail.code == "invalid_json"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(b"caf\xc3\xa9", True), (b"caf\xe9", False), (b"\xff\xfe{\x00", False), ("café", True), (b"", True)],
)
def test_is_utf8(raw: str | bytes, expected: bool) -> None:
    assert is_utf8(raw) is expected


def test_the_real_decoder_reports_invalid_utf8_in_a_string_as_invalid_encoding() -> None:
    decoder = msgspec.json.Decoder(dict[str, str])

    with pytest.raises(ApiError) as raised:
        decode_json(decoder, b'{"content": "caf\xe9"}', "the request body")

    assert raised.value.detail.code == "invalid_encoding"


@pytest.mark.parametrize("number", [b"3.0", b"3e0", b"0.3e1"])
def test_a_whole_number_written_with_a_fraction_or_exponent_is_an_integer(number: bytes) -> None:
    decoder = msgspec.json.Decoder(ChatCompletionRequest)

    request = decode_json(
        decoder, b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": ' + number + b"}", "it"
    )

    assert request.max_tokens == 3
    assert isinstance(request.max_tokens, int)


def test_a_fractional_number_where_an_integer_belongs_is_still_a_400_naming_it() -> None:
    decoder = msgspec.json.Decoder(ChatCompletionRequest)
    body = b'{"messages": [{"role": "user", "content": "hi"}], "temperature": 1.0, "max_tokens": 2.5}'

    with pytest.raises(ApiError) as raised:
        decode_json(decoder, body, "the request body")

    assert (raised.value.detail.code, raised.value.detail.param) == ("invalid_value", "max_tokens")


def test_a_type_error_before_malformed_json_is_still_a_400() -> None:
    decoder = msgspec.json.Decoder(ChatCompletionRequest)

    with pytest.raises(ApiError) as raised:
        decode_json(decoder, b'{"max_tokens": "3", "messages": [', "the request body")

    assert raised.value.status_code == 400
