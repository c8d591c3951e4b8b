"""`API_KEYS` turns on bearer auth for `/v1/*`: OpenAI's 401 shape, constant-time checks, nothing leaked."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from app.http.auth import bearer_token, key_matches
from app.settings import Secret
from providers.mock import MockProvider
from tests.app.conftest import AppFactory
from tests.app.helpers import user

_KEYS = ("tr-key-alpha-7f3a", "tr-key-bravo-91c2")

_V1_REQUESTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/v1/models", None),
    ("GET", "/v1/stream?prompt=hi", None),
    ("POST", "/v1/stream", {"messages": user("hi")}),
    ("POST", "/v1/chat/completions", {"messages": user("hi")}),
    ("POST", "/v1/chat/completions", {"messages": user("hi"), "stream": True}),
    ("POST", "/v1/streams/abc/cancel", None),
]


@pytest.fixture
def guarded(make_app: AppFactory) -> Iterator[TestClient[Litestar]]:
    with TestClient(make_app(api_keys=tuple(Secret(key) for key in _KEYS))) as client:
        yield client


def _assert_unauthorized(response: Any) -> None:
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("authentication_error", "invalid_api_key")
    for key in _KEYS:
        assert key not in response.text


@pytest.mark.parametrize(("method", "path", "body"), _V1_REQUESTS)
def test_without_api_keys_v1_is_open(client: TestClient[Litestar], method: str, path: str, body: Any) -> None:
    response = client.request(method, path, json=body)
    assert response.status_code != 401


@pytest.mark.parametrize(("method", "path", "body"), _V1_REQUESTS)
@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer wrong-key",
        f"Basic {_KEYS[0]}",
        _KEYS[0],
        f"Bearer {_KEYS[0]}x",
        f"Bearer {_KEYS[0][:-1]}",
        f"Bearer {_KEYS[0].upper()}",
    ],
)
def test_every_v1_route_refuses_a_missing_or_wrong_key(
    guarded: TestClient[Litestar], method: str, path: str, body: Any, authorization: str | None
) -> None:
    headers = {"authorization": authorization} if authorization is not None else {}
    _assert_unauthorized(guarded.request(method, path, json=body, headers=headers))


@pytest.mark.parametrize("key", _KEYS)
@pytest.mark.parametrize(("method", "path", "body"), _V1_REQUESTS[:5])
def test_any_configured_key_is_accepted(
    guarded: TestClient[Litestar], key: str, method: str, path: str, body: Any
) -> None:
    response = guarded.request(method, path, json=body, headers={"authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text


def test_the_scheme_is_case_insensitive(guarded: TestClient[Litestar]) -> None:
    response = guarded.get("/v1/models", headers={"authorization": f"bearer {_KEYS[1]}"})
    assert response.status_code == 200


def test_health_and_schema_stay_open(guarded: TestClient[Litestar]) -> None:
    assert guarded.get("/healthz").status_code == 200
    assert guarded.get("/schema/openapi.json").status_code == 200


def test_an_api_key_in_the_query_is_not_accepted_over_http(guarded: TestClient[Litestar]) -> None:
    _assert_unauthorized(guarded.get(f"/v1/models?api_key={_KEYS[0]}"))


def test_a_rejected_request_never_reaches_the_provider(
    guarded: TestClient[Litestar], provider: MockProvider
) -> None:
    guarded.post("/v1/stream", json={"messages": user("hi")}, headers={"authorization": "Bearer nope"})
    assert provider.tokens_emitted == 0


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (None, None),
        ("", None),
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("BEARER abc", "abc"),
        ("Bearer", None),
        ("Bearer    ", None),
        ("Token abc", None),
    ],
)
def test_bearer_token_parsing(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_key_matching_compares_against_every_key_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording)  # app.http.auth looks it up on the module
    keys = [Secret(key) for key in _KEYS]

    assert key_matches(_KEYS[0], keys)
    assert [b for _, b in compared] == [key.encode() for key in _KEYS]  # no early exit on the first match
    compared.clear()
    assert not key_matches("nope", keys)
    assert len(compared) == len(_KEYS)
    assert not key_matches("", [])
    assert key_matches("ключ-✓", [Secret("ключ-✓")])
