"""CORS: pages of the origins in `CORS_ALLOW_ORIGINS` may call the API; pages of other origins may not.

The same list decides the preflights, the response headers, and the origin checks of the requests a
browser makes without a preflight (`GET /v1/stream`, the WebSocket).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from app.settings import Secret, Settings, SettingsError
from tests.app.conftest import AppFactory
from tests.app.helpers import user

ALLOWED = "http://127.0.0.1:5173"
OTHER = "https://evil.example"
PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type",
}


@pytest.fixture
def cors_client(make_app: AppFactory) -> Iterator[TestClient[Litestar]]:
    app = make_app(cors_allow_origins=(ALLOWED,), api_keys=(Secret("k-1"),))
    with TestClient(app) as test_client:
        yield test_client


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/stream"])
def test_a_preflight_from_an_allowed_origin_allows_the_key_and_the_json_body(
    cors_client: TestClient[Litestar], path: str
) -> None:
    response = cors_client.options(path, headers={"Origin": ALLOWED, **PREFLIGHT})

    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed_headers = {h.strip() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed_headers
    assert response.headers["vary"] == "Origin"


def test_a_preflight_from_another_origin_is_refused(cors_client: TestClient[Litestar]) -> None:
    response = cors_client.options("/v1/chat/completions", headers={"Origin": OTHER, **PREFLIGHT})

    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


def test_a_stream_to_an_allowed_origin_exposes_the_stream_id(cors_client: TestClient[Litestar]) -> None:
    with cors_client.stream(
        "POST",
        "/v1/stream",
        json={"messages": user("hi"), "max_tokens": 3},
        headers={"Origin": ALLOWED, "Authorization": "Bearer k-1"},
    ) as response:
        body = response.read()

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert "X-Stream-Id" in response.headers["access-control-expose-headers"]
    assert b"event: done" in body


def test_an_error_answer_carries_the_cors_headers_so_the_page_can_read_it(
    cors_client: TestClient[Litestar],
) -> None:
    response = cors_client.post(
        "/v1/chat/completions", json={"messages": user("hi")}, headers={"Origin": ALLOWED}
    )
    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == ALLOWED


def test_the_get_stream_takes_pages_of_allowed_origins_only(cors_client: TestClient[Litestar]) -> None:
    query = {"prompt": "hi", "max_tokens": "2"}
    headers = {"Authorization": "Bearer k-1"}
    allowed = cors_client.get("/v1/stream", params=query, headers={**headers, "Origin": ALLOWED})
    other = cors_client.get("/v1/stream", params=query, headers={**headers, "Origin": OTHER})

    assert allowed.status_code == 200
    assert other.status_code == 403
    assert other.json()["error"]["code"] == "cross_origin"


def test_the_websocket_takes_pages_of_allowed_origins_only(make_app: AppFactory) -> None:
    with TestClient(make_app(cors_allow_origins=(ALLOWED,))) as test_client:
        with test_client.websocket_connect("/v1/ws", headers={"Origin": ALLOWED}) as socket:
            socket.send_json({"type": "prompt", "id": "p1", "messages": user("hi"), "max_tokens": 2})
            kinds = [socket.receive_json()["type"] for _ in range(4)]
        assert kinds == ["start", "delta", "delta", "done"]
        with test_client.websocket_connect("/v1/ws", headers={"Origin": OTHER}) as socket:
            refused = socket.receive_json()
        assert refused["error"]["code"] == "cross_origin"


def test_without_cors_origins_no_other_origin_is_allowed(make_app: AppFactory) -> None:
    with TestClient(make_app()) as test_client:
        preflight = test_client.options("/v1/chat/completions", headers={"Origin": ALLOWED, **PREFLIGHT})
        get = test_client.get("/v1/stream", params={"prompt": "hi"}, headers={"Origin": ALLOWED})

    assert "access-control-allow-origin" not in preflight.headers
    assert get.status_code == 403


def test_a_wildcard_allows_every_origin(make_app: AppFactory) -> None:
    with TestClient(make_app(cors_allow_origins=("*",))) as test_client:
        preflight = test_client.options("/v1/chat/completions", headers={"Origin": OTHER, **PREFLIGHT})
        get = test_client.get(
            "/v1/stream", params={"prompt": "hi", "max_tokens": "1"}, headers={"Origin": OTHER}
        )

    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert get.status_code == 200


def test_behind_a_function_url_with_its_own_cors_the_app_adds_no_headers(make_app: AppFactory) -> None:
    # The URL answers preflights and adds the headers itself; both would send each header twice.
    app = make_app(cors_allow_origins=(ALLOWED,), cors_headers_from_host=True)
    with TestClient(app) as test_client:
        response = test_client.post(
            "/v1/chat/completions",
            json={"messages": user("hi"), "max_tokens": 1},
            headers={"Origin": ALLOWED},
        )
        get = test_client.get(
            "/v1/stream", params={"prompt": "hi", "max_tokens": "1"}, headers={"Origin": ALLOWED}
        )

    assert response.status_code == 200
    assert not [name for name in response.headers if name.startswith("access-control-")]
    assert get.status_code == 200  # the origin checks still know the list


def test_the_setting_takes_origins_and_refuses_what_is_not_one() -> None:
    settings = Settings.from_env({"CORS_ALLOW_ORIGINS": "http://localhost:5173, https://*.example.com"})
    assert settings.cors_allow_origins == ("http://localhost:5173", "https://*.example.com")
    assert Settings.from_env({"CORS_ALLOW_ORIGINS": "*"}).cors_allow_origins == ("*",)
    for wrong in ("https://app.example.com/", "app.example.com", "ftp://x.example"):
        with pytest.raises(SettingsError, match="CORS_ALLOW_ORIGINS"):
            Settings.from_env({"CORS_ALLOW_ORIGINS": wrong})
