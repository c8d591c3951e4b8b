"""Bearer-token auth for `/v1/*`, on when `API_KEYS` is set."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from app.errors import INVALID_API_KEY, ApiError
from app.settings import Secret


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, if that is what it holds."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def key_matches(candidate: str, keys: Sequence[Secret]) -> bool:
    """Compare against every key in constant time, so timing reveals neither a key nor which one matched."""
    encoded = candidate.encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(encoded, key.reveal().encode())
    return matched


def owner_of(key: str | None) -> str | None:
    """Who a stream belongs to: a digest of the API key that started it (never the key), or None."""
    if key is None:
        return None
    return hashlib.sha256(b"tokenrelay stream owner\0" + key.encode()).hexdigest()[:32]


def request_owner(connection: ASGIConnection[Any, Any, Any, Any], keys: Sequence[Secret]) -> str | None:
    """The owner of what an HTTP request starts or stops: its bearer key's digest, when keys are on."""
    return owner_of(bearer_token(connection.headers.get("authorization"))) if keys else None


def unauthorized(message: str) -> ApiError:
    return INVALID_API_KEY(message, headers={"WWW-Authenticate": 'Bearer realm="tokenrelay"'})


class ApiKeyGuard:
    """A Litestar guard that admits a request only with one of the configured keys."""

    def __init__(self, keys: Sequence[Secret]) -> None:
        self._keys = tuple(keys)

    # Async on purpose: Litestar runs a synchronous guard in a worker thread, once per request.
    async def __call__(self, connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        if not self._keys:
            return
        # HTTP only: the WebSocket authenticates itself (ws.py), since browsers cannot send headers there.
        token = bearer_token(connection.headers.get("authorization"))
        if token is None:
            raise unauthorized("missing API key: send 'Authorization: Bearer <key>'")
        if not key_matches(token, self._keys):
            raise unauthorized("invalid API key")
