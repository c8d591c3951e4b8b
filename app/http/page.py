"""`GET /` and `/static/*`: the browser client, static files shipped in the package.

The page is public (outside the API-key guard): it holds no secret, and it asks the user for a key when the
server needs one. The files are read once at import, so a broken install fails at start-up, not on a visit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Final

from litestar import Response, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

# No inline script or style anywhere in the page, so the policy can be strict; `connect-src 'self'` also
# covers same-origin `ws:`/`wss:` in current browsers.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

# Litestar adds `; charset=utf-8` to text types itself.
_MEDIA_TYPES: Final = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
}


@dataclass(frozen=True, slots=True)
class Asset:
    """One static file, held in memory."""

    body: bytes
    media_type: str
    etag: str

    def response(self) -> Response[bytes]:
        return Response(
            self.body,
            media_type=self.media_type,
            headers={
                "Cache-Control": "no-cache",
                "ETag": self.etag,
                "Content-Security-Policy": CONTENT_SECURITY_POLICY,
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
            },
        )


def _load(name: str) -> Asset:
    body = (resources.files("app.http") / "static" / name).read_bytes()
    suffix = name[name.rfind(".") :]
    return Asset(body, _MEDIA_TYPES[suffix], f'"{hashlib.sha256(body).hexdigest()[:16]}"')


_INDEX: Final = _load("index.html")
_ASSETS: Final = {
    name: _load(name) for name in ("app.js", "conversation.js", "markdown.js", "timeline.js", "style.css")
}
# Third-party code, as npm published it (scripts/vendor.py fetches and checks it; vendor.json pins it).
_VENDORED: Final = {name: _load(f"vendor/{name}") for name in ("smd.js",)}


@get("/", include_in_schema=False)
async def index() -> Response[bytes]:
    return _INDEX.response()


@get("/static/{name:str}", include_in_schema=False)
async def static_asset(name: FromPath[str]) -> Response[bytes]:
    asset = _ASSETS.get(name)
    if asset is None:
        raise NotFoundException(f"no static file {name!r}")
    return asset.response()


@get("/static/vendor/{name:str}", include_in_schema=False)
async def vendored_asset(name: FromPath[str]) -> Response[bytes]:
    asset = _VENDORED.get(name)
    if asset is None:
        raise NotFoundException(f"no vendored file {name!r}")
    return asset.response()
