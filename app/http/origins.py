"""Which browser pages may start streams: those of this server's own origin.

A browser lets any web page open a WebSocket to any server, and send it a plain `GET` (an `EventSource`, an
`<img>`): neither needs the server's consent (CORS) before the request is made, only before its answer is
read. Either would start a generation, on the server's upstream key and budget, for a page its owner never
allowed. Such requests carry the page's `Origin`; non-browser clients send none.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from litestar.connection import ASGIConnection

from app.errors import CROSS_ORIGIN


def cross_origin(origin: str | None, host: str | None) -> bool:
    """Whether a browser page from another site made the request."""
    if origin is None:
        return False
    return host is None or urlsplit(origin).netloc.lower() != host.lower()


def refuse_cross_origin(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    """Raise a 403 `cross_origin` for a request made by a page of another origin."""
    if cross_origin(connection.headers.get("origin"), connection.headers.get("host")):
        raise CROSS_ORIGIN("requests from pages of another origin are refused", param="Origin")
