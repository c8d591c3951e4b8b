"""The service's error type and its translation from provider errors, in OpenAI's error shape."""

from __future__ import annotations

import re

import msgspec

from app.schemas import ErrorBody, ErrorDetail
from providers.errors import (
    ProviderAuthError,
    ProviderBadRequestError,
    ProviderError,
    ProviderModelNotFoundError,
    ProviderRateLimitError,
    ProviderStreamError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)

_FIELD_PROBLEM = re.compile(r"Object (?:missing required|contains unknown) field `([^`]+)`")


class ApiError(Exception):
    """Raised when a request cannot be served; carries the HTTP status and OpenAI-style error body."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.detail = ErrorDetail(message=message, type=type, code=code, param=param)
        self.headers = headers or {}

    def body(self) -> ErrorBody:
        return ErrorBody(error=self.detail)


def invalid_request(message: str, *, param: str | None = None, code: str | None = None) -> ApiError:
    """A 400 for input the client can fix."""
    return ApiError(400, message, code=code, param=param)


def from_validation_error(exc: msgspec.ValidationError | msgspec.DecodeError) -> ApiError:
    """A 400 naming the JSON path msgspec reports (`... - at $.messages[0].role`)."""
    message = str(exc)
    param = None
    if " - at `$" in message:
        param = message.rsplit(" - at `$", 1)[1].rstrip("`").lstrip(".") or None
    # For a missing or unknown field msgspec reports the enclosing object's path (none at the top level):
    # the field itself is the param.
    field = _FIELD_PROBLEM.match(message)
    if field is not None:
        param = f"{param}.{field.group(1)}" if param else field.group(1)
    code = "invalid_value" if isinstance(exc, msgspec.ValidationError) else "invalid_json"
    return ApiError(400, message, code=code, param=param)


def from_provider_error(exc: ProviderError) -> ApiError:
    """Translate a provider failure into the status a client should see before any byte was sent."""
    if isinstance(exc, ProviderAuthError):
        return ApiError(401, exc.message, type="authentication_error", code="upstream_authentication_failed")
    if isinstance(exc, ProviderRateLimitError):
        headers = {"Retry-After": str(max(1, round(exc.retry_after_s)))} if exc.retry_after_s else None
        return ApiError(
            429, exc.message, type="rate_limit_error", code="rate_limit_exceeded", headers=headers
        )
    if isinstance(exc, ProviderModelNotFoundError):
        return ApiError(404, exc.message, code="model_not_found", param="model")
    if isinstance(exc, ProviderBadRequestError):
        return ApiError(400, exc.message, code="upstream_rejected_request")
    if isinstance(exc, ProviderTimeoutError):
        return ApiError(504, exc.message, type="timeout_error", code="upstream_timeout")
    if isinstance(exc, ProviderUnavailableError):
        return ApiError(502, exc.message, type="upstream_error", code="upstream_unavailable")
    if isinstance(exc, ProviderStreamError):
        return ApiError(502, exc.message, type="upstream_error", code="upstream_stream_error")
    return ApiError(502, exc.message, type="upstream_error", code="upstream_error")


def internal_error() -> ApiError:
    """A 500 that says nothing about the internals; the details go to the log only."""
    return ApiError(500, "internal server error", type="server_error", code="internal_error")
