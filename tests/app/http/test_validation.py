"""Every malformed input is a 4xx in OpenAI's error shape naming the field at fault; never a 500."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest
from httpx import Response
from litestar import Litestar
from litestar.testing import TestClient

from tests.app.conftest import AppFactory
from tests.app.helpers import user

_OK = user("hello")
_DEEP = 100_000


def _assert_error(
    response: Response, status: int, param: str | None, code: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert "Traceback" not in response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "code", "param"}
    assert isinstance(error["message"], str)
    assert error["message"]
    assert error["type"]
    assert error["param"] == param
    if code is not None:
        assert error["code"] == code
    return dict(error)


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


# (id, raw body, expected status, expected param, expected code) for both JSON endpoints.
_BODIES: list[tuple[str, bytes, int, str | None, str | None]] = [
    ("truncated json", b'{"messages": [', 400, None, "invalid_json"),
    ("not json", b"hello there", 400, None, "invalid_json"),
    ("empty body", b"", 400, None, "invalid_json"),
    ("whitespace body", b"  \n ", 400, None, "invalid_json"),
    ("array instead of object", b"[]", 400, None, "invalid_value"),
    ("missing messages", b"{}", 400, "messages", "invalid_value"),
    ("messages is null", _json({"messages": None}), 400, "messages", "invalid_value"),
    ("messages is a string", _json({"messages": "hi"}), 400, "messages", "invalid_value"),
    ("empty messages", _json({"messages": []}), 400, "messages", "invalid_value"),
    ("message is a string", _json({"messages": ["hi"]}), 400, "messages[0]", "invalid_value"),
    (
        "unknown role",
        _json({"messages": [{"role": "wizard", "content": "x"}]}),
        400,
        "messages[0].role",
        None,
    ),
    ("role is a number", _json({"messages": [{"role": 1, "content": "x"}]}), 400, "messages[0].role", None),
    ("missing content", _json({"messages": [{"role": "user"}]}), 400, "messages[0].content", None),
    (
        "content is a number",
        _json({"messages": [{"role": "user", "content": 5}]}),
        400,
        "messages[0].content",
        None,
    ),
    (
        "image content part without its url object",
        _json({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}]}),
        400,
        "messages[0].content[0].image_url",
        None,
    ),
    (
        "content part without its type",
        _json({"messages": [{"role": "user", "content": [{"text": "hi"}]}]}),
        400,
        "messages[0].content[0].type",
        None,
    ),
    (
        "unknown message field",
        _json({"messages": [{"role": "user", "content": "x", "mood": "happy"}]}),
        400,
        "messages[0].mood",
        None,
    ),
    ("unknown top-level field", _json({"messages": _OK, "temperatur": 1}), 400, "temperatur", None),
    ("negative max_tokens", _json({"messages": _OK, "max_tokens": -5}), 400, "max_tokens", None),
    ("zero max_tokens", _json({"messages": _OK, "max_tokens": 0}), 400, "max_tokens", None),
    ("string max_tokens", _json({"messages": _OK, "max_tokens": "10"}), 400, "max_tokens", None),
    ("float max_tokens", _json({"messages": _OK, "max_tokens": 1.5}), 400, "max_tokens", None),
    (
        "max_tokens over the server limit",
        _json({"messages": _OK, "max_tokens": 10**6}),
        400,
        "max_tokens",
        None,
    ),
    ("empty model", _json({"messages": _OK, "model": ""}), 400, "model", None),
    ("model is a number", _json({"messages": _OK, "model": 4}), 400, "model", None),
    ("unknown model", _json({"messages": _OK, "model": "gpt-9"}), 404, "model", "model_not_found"),
    ("mock is a string", _json({"messages": _OK, "mock": "fail"}), 400, "mock", None),
    ("unknown mock fault", _json({"messages": _OK, "mock": {"error": "boom"}}), 400, "mock.error", None),
    ("negative mock delay", _json({"messages": _OK, "mock": {"delay_ms": -1}}), 400, "mock.delay_ms", None),
    ("huge mock stall", _json({"messages": _OK, "mock": {"stall_ms": 10**9}}), 400, "mock.stall_ms", None),
    (
        "string fail_after",
        _json({"messages": _OK, "mock": {"fail_after": "3"}}),
        400,
        "mock.fail_after",
        None,
    ),
    (
        "unknown mock directive",
        _json({"messages": _OK, "mock": {"explode": True}}),
        400,
        "mock.explode",
        None,
    ),
    (
        "invalid utf-8 in a string",
        b'{"messages": [{"role": "user", "content": "caf\xe9"}]}',
        400,
        None,
        "invalid_encoding",
    ),
    # A UTF-16 body (its byte-order mark, then UTF-16): not UTF-8, whatever else is wrong with it.
    ("utf-16 body", b"\xff\xfe{\x00}\x00", 400, None, "invalid_encoding"),
    ("invalid utf-8 outside a string", b'{"messages": \xe9}', 400, None, "invalid_encoding"),
    (
        "deeply nested messages",
        b'{"messages": ' + b"[" * _DEEP + b"]" * _DEEP + b"}",
        400,
        "messages[0]",
        None,
    ),
    (
        "deeply nested content",
        b'{"messages": [{"role": "user", "content": ' + b"[" * _DEEP + b"]" * _DEEP + b"}]}",
        400,
        "messages[0].content[0]",
        None,
    ),
    (
        "deeply nested object",
        b'{"mock": ' + b'{"a": ' * _DEEP + b"1" + b"}" * _DEEP + b"}",
        400,
        "mock.a",
        None,
    ),
]

_CHAT_ONLY: list[tuple[str, bytes, int, str | None, str | None]] = [
    ("stream is a string", _json({"messages": _OK, "stream": "yes"}), 400, "stream", None),
    ("temperature too high", _json({"messages": _OK, "temperature": 3}), 400, "temperature", None),
    ("top_p negative", _json({"messages": _OK, "top_p": -0.1}), 400, "top_p", None),
    ("n above 128", _json({"messages": _OK, "n": 129}), 400, "n", None),
    ("five stop sequences", _json({"messages": _OK, "stop": list("abcde")}), 400, "stop", None),
    (
        "include_usage is a string",
        _json({"messages": _OK, "stream": True, "stream_options": {"include_usage": "y"}}),
        400,
        "stream_options.include_usage",
        None,
    ),
    (
        "max_completion_tokens negative",
        _json({"messages": _OK, "max_completion_tokens": -1}),
        400,
        "max_completion_tokens",
        None,
    ),
]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/stream"])
@pytest.mark.parametrize(
    ("raw", "status", "param", "code"), [case[1:] for case in _BODIES], ids=[c[0] for c in _BODIES]
)
def test_malformed_json_bodies_are_rejected_naming_the_field(
    client: TestClient[Litestar], path: str, raw: bytes, status: int, param: str | None, code: str | None
) -> None:
    response = client.post(path, content=raw, headers={"content-type": "application/json"})
    _assert_error(response, status, param, code)


@pytest.mark.parametrize(
    ("raw", "status", "param", "code"), [c[1:] for c in _CHAT_ONLY], ids=[c[0] for c in _CHAT_ONLY]
)
def test_malformed_chat_completion_fields_are_rejected_naming_the_field(
    client: TestClient[Litestar], raw: bytes, status: int, param: str | None, code: str | None
) -> None:
    response = client.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
    error = _assert_error(response, status, param, code)
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/stream"])
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_body_that_is_not_declared_json_is_unsupported_media_type(
    client: TestClient[Litestar], path: str, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = client.post(path, content=_json({"messages": _OK}), headers=headers)
    _assert_error(response, 415, None, "unsupported_media_type")


@pytest.mark.parametrize("charset", ["utf-8", "UTF-8", '"utf-8"'])
def test_json_with_a_charset_parameter_is_accepted(client: TestClient[Litestar], charset: str) -> None:
    response = client.post(
        "/v1/chat/completions",
        content=_json({"messages": _OK}),
        headers={"content-type": f"application/json; charset={charset}"},
    )
    assert response.status_code == 200


@pytest.mark.parametrize("charset", ["latin-1", "utf-16", "iso-8859-1"])
def test_json_declared_in_another_charset_is_unsupported_media_type(
    client: TestClient[Litestar], charset: str
) -> None:
    # JSON exchanged between systems is UTF-8 (RFC 8259): a body declared otherwise would be misread.
    response = client.post(
        "/v1/stream",
        content=_json({"messages": _OK}),
        headers={"content-type": f"application/json; charset={charset}"},
    )
    _assert_error(response, 415, None, "unsupported_media_type")


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/stream"])
def test_a_body_over_the_configured_limit_is_413(make_app: AppFactory, path: str) -> None:
    padding = "x" * 5000
    with TestClient(make_app(max_body_bytes=4096)) as client:
        small = client.post(path, json={"messages": user("y" * 1000)})
        large = client.post(path, json={"messages": user(padding)})

    assert small.status_code == 200
    error = _assert_error(large, 413, None, "request_too_large")
    assert "MAX_BODY_BYTES" in error["message"]


_QUERIES: list[tuple[str, dict[str, str], int, str | None]] = [
    ("missing prompt", {}, 400, "prompt"),
    ("empty prompt", {"prompt": ""}, 400, "prompt"),
    ("negative max_tokens", {"prompt": "hi", "max_tokens": "-1"}, 400, "max_tokens"),
    ("zero max_tokens", {"prompt": "hi", "max_tokens": "0"}, 400, "max_tokens"),
    ("non-numeric max_tokens", {"prompt": "hi", "max_tokens": "ten"}, 400, "max_tokens"),
    # `int()` takes all of these; a query parameter is ASCII digits, as in JSON.
    ("max_tokens with a sign", {"prompt": "hi", "max_tokens": "+3"}, 400, "max_tokens"),
    ("max_tokens with an underscore", {"prompt": "hi", "max_tokens": "3_0"}, 400, "max_tokens"),
    ("max_tokens in full-width digits", {"prompt": "hi", "max_tokens": "\uff13"}, 400, "max_tokens"),
    ("max_tokens with spaces", {"prompt": "hi", "max_tokens": " 3"}, 400, "max_tokens"),
    # As POST refuses unknown fields: a typo is named, not ignored.
    ("unknown parameter", {"prompt": "hi", "max_token": "3"}, 400, "max_token"),
    ("max_tokens over the server limit", {"prompt": "hi", "max_tokens": "999999"}, 400, "max_tokens"),
    ("unknown model", {"prompt": "hi", "model": "gpt-9"}, 404, "model"),
    ("mock is not json", {"prompt": "hi", "mock": "fail"}, 400, "mock"),
    ("mock is a list", {"prompt": "hi", "mock": "[1]"}, 400, "mock"),
    ("unknown mock fault", {"prompt": "hi", "mock": '{"error": "boom"}'}, 400, "mock.error"),
    ("negative mock delay", {"prompt": "hi", "mock": '{"delay_ms": -1}'}, 400, "mock.delay_ms"),
    ("unknown mock directive", {"prompt": "hi", "mock": '{"explode": true}'}, 400, "mock.explode"),
    ("prompt and messages", {"prompt": "hi", "messages": '[{"role":"user","content":"x"}]'}, 400, "prompt"),
    ("messages is not json", {"messages": "hi"}, 400, "messages"),
    ("messages is empty", {"messages": "[]"}, 400, "messages"),
    ("messages with a bad role", {"messages": '[{"role":"robot","content":"x"}]'}, 400, "messages[0].role"),
    ("messages without content", {"messages": '[{"role": "user"}]'}, 400, "messages[0].content"),
    ("too many messages", {"messages": json.dumps([{"role": "user", "content": "x"}] * 65)}, 400, "messages"),
]


@pytest.mark.parametrize(
    ("query", "status", "param"), [c[1:] for c in _QUERIES], ids=[c[0] for c in _QUERIES]
)
def test_malformed_stream_queries_are_rejected_naming_the_parameter(
    client: TestClient[Litestar], query: dict[str, str], status: int, param: str | None
) -> None:
    response = client.get(f"/v1/stream?{urlencode(query)}")
    _assert_error(response, status, param)


@pytest.mark.parametrize(
    ("query", "param"),
    [("prompt=%ff%fe&mock=%ff", "prompt"), ("prompt=hi&mock=%ff", "mock"), ("prompt=caf%C3", "prompt")],
)
def test_percent_encoded_invalid_utf8_in_a_query_is_rejected_naming_the_parameter(
    client: TestClient[Litestar], query: str, param: str
) -> None:
    response = client.get(f"/v1/stream?{query}")
    _assert_error(response, 400, param)
    assert response.json()["error"]["code"] == "invalid_encoding"


def test_a_conversation_in_the_query_is_answered_as_the_same_messages_in_a_body(
    client: TestClient[Litestar],
) -> None:
    messages = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "an answer"},
        {"role": "user", "content": "second"},
    ]
    query = client.get(f"/v1/stream?{urlencode({'messages': json.dumps(messages), 'mock': '{}'})}")
    body = client.post("/v1/stream", json={"messages": messages})
    assert query.status_code == body.status_code == 200

    def deltas(text: str) -> list[str]:
        return [line for line in text.splitlines() if line.startswith("data:") and '"text"' in line]

    assert deltas(query.text) == deltas(body.text)
    assert deltas(query.text) != deltas(client.get("/v1/stream?prompt=second").text)


def test_percent_encoded_utf8_in_a_query_is_accepted(client: TestClient[Litestar]) -> None:
    response = client.get("/v1/stream?prompt=caf%C3%A9+cr%C3%A8me&max_tokens=3")
    assert response.status_code == 200
    assert "event: done" in response.text


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/nope", 404),
        ("GET", "/v1/chat/completions", 405),
        ("DELETE", "/v1/stream", 405),
        ("POST", "/v1/streams/not-running/cancel", 404),
    ],
)
def test_unknown_routes_and_methods_answer_in_the_same_error_shape(
    client: TestClient[Litestar], method: str, path: str, status: int
) -> None:
    response = client.request(method, path)
    _assert_error(response, status, "stream_id" if path.endswith("/cancel") else None)
