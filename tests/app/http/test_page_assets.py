"""The page at `/` as plain HTTP (no browser needed): what is served, with which policy, to whom."""

from __future__ import annotations

from litestar import Litestar
from litestar.testing import TestClient

from app.settings import Secret
from tests.app.conftest import AppFactory


def test_the_page_and_its_assets_are_served_with_a_strict_policy(client: TestClient[Litestar]) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    html = page.text
    for hook in ('id="prompt"', 'id="send"', 'id="stop"', 'id="output"', 'id="transport"', 'id="status"'):
        assert hook in html
    assert "<script>" not in html  # no inline script
    assert "http://" not in html
    assert "https://" not in html  # no CDN: the page works offline
    for name, media_type in (("app.js", "text/javascript"), ("style.css", "text/css")):
        asset = client.get(f"/static/{name}")
        assert asset.status_code == 200
        assert asset.headers["content-type"] == f"{media_type}; charset=utf-8"
        assert asset.headers["etag"]
    missing = client.get("/static/secrets.txt")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found_error"


def test_the_page_is_public_when_the_api_needs_a_key(make_app: AppFactory) -> None:
    with TestClient(make_app(api_keys=(Secret("sesame"),))) as client:
        assert client.get("/").status_code == 200
        assert client.get("/static/app.js").status_code == 200
        assert client.get("/v1/models").status_code == 401
