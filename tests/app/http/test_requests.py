"""`decode_json`'s classification of bad input, whatever exception the installed msgspec raises for it."""

from __future__ import annotations

import msgspec
import pytest

from app.errors import ApiError
from app.http.requests import decode_json, is_utf8


class _Raising:
    """A decoder that fails the way one msgspec release or another does."""

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
