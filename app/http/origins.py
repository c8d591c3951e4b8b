"""Which browser pages may use the API: this server's own, and the origins `CORS_ALLOW_ORIGINS` names.

A browser lets any web page open a WebSocket to any server, and send it a plain `GET` (an `EventSource`, an
`<img>`): neither needs the server's consent (CORS) before the request is made, only before its answer is
read. Either would start a generation, on the server's upstream key and budget, for a page its owner never
allowed. Such requests carry the page's `Origin`; non-browser clients send none. The same list decides the
CORS headers (`cors_config`), so a page is either allowed everywhere or nowhere.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import urlsplit

from litestar.config.cors import CORSConfig
from litestar.connection import ASGIConnection

from app.errors import CROSS_ORIGIN
from app.settings import Settings

# What a page may send and read: the SDKs add headers of their own (`x-stainless-*`), so every requested
# header is allowed (`Authorization` included: Litestar echoes the list rather than answering `*`).
EXPOSED_HEADERS: Final = ["X-Request-Id", "X-Stream-Id", "Retry-After"]


def cors_config(settings: Settings) -> CORSConfig | None:
    """The CORS policy for `CORS_ALLOW_ORIGINS`, or None when no other origin is allowed."""
    if not settings.cors_allow_origins:
        return None
    return CORSConfig(
        allow_origins=list(settings.cors_allow_origins),
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["*"],
        expose_headers=EXPOSED_HEADERS,
        # Bearer keys, not cookies: a credentialed request would also forbid the `*` origin.
        allow_credentials=False,
        max_age=600,
    )


class OriginPolicy:
    """Decides whether a request made by a browser page may proceed."""

    __slots__ = ("_config",)

    def __init__(self, settings: Settings) -> None:
        self._config = cors_config(settings)

    def allows(self, origin: str | None, host: str | None) -> bool:
        """A request without `Origin`, from this server's own pages, or from an allowed origin."""
        if origin is None:
            return True
        if host is not None and urlsplit(origin).netloc.lower() == host.lower():
            return True
        return self._config is not None and self._config.is_origin_allowed(origin)

    def refuse_disallowed(self, connection: ASGIConnection[Any, Any, Any, Any]) -> None:
        """Raise a 403 `cross_origin` for a request made by a page of an origin not allowed."""
        if not self.allows(connection.headers.get("origin"), connection.headers.get("host")):
            raise CROSS_ORIGIN(
                "requests from pages of this origin are refused (see CORS_ALLOW_ORIGINS)", param="Origin"
            )
