"""The page at `/` as plain HTTP (no browser needed): what is served, with which policy, to whom."""

from __future__ import annotations

from pathlib import Path

from litestar import Litestar
from litestar.testing import TestClient

from app.settings import Secret
from scripts.vendor import VENDOR, check, load_manifest
from tests.app.conftest import AppFactory


def test_the_page_and_its_assets_are_served_with_a_strict_policy(client: TestClient[Litestar]) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    html = page.text
    hooks = ('id="prompt"', 'id="send"', 'id="stop"', 'id="conversation"', 'id="new-conversation"')
    for hook in (*hooks, 'id="transport"', 'id="status"'):
        assert hook in html
    assert "<script>" not in html  # no inline script
    assert "http://" not in html
    assert "https://" not in html  # no CDN: the page works offline
    scripts = ("app.js", "conversation.js", "markdown.js", "timeline.js")
    for name, media_type in (*((name, "text/javascript") for name in scripts), ("style.css", "text/css")):
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


def test_the_vendored_markdown_renderer_is_served_as_npm_published_it(client: TestClient[Litestar]) -> None:
    manifest = load_manifest()
    assert check(manifest) == []  # byte for byte the files `make vendor` took out of the pinned tarball
    pin = manifest["packages"]["streaming-markdown"]
    assert pin["integrity"].startswith("sha512-")
    assert set(pin["sha256"]) == {"smd.js", "smd.LICENSE.txt"}
    assert "MIT License" in (VENDOR / "smd.LICENSE.txt").read_text(encoding="utf-8")
    served = client.get("/static/vendor/smd.js")
    assert served.status_code == 200
    assert served.headers["content-type"] == "text/javascript; charset=utf-8"
    assert served.content == (VENDOR / "smd.js").read_bytes()
    assert "script-src 'self'" in served.headers["content-security-policy"]
    assert client.get("/static/vendor/vendor.json").status_code == 404  # only what the page imports


def test_a_vendored_file_that_differs_from_its_pin_is_reported(tmp_path: Path) -> None:
    manifest = load_manifest()
    (tmp_path / "smd.js").write_bytes((VENDOR / "smd.js").read_bytes() + b"\n// edited")
    assert check(manifest, tmp_path) == [
        "streaming-markdown: smd.js differs from streaming-markdown@0.2.15 (run `make vendor`)",
        "streaming-markdown: smd.LICENSE.txt is missing (run `make vendor`)",
    ]
