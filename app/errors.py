"""Every error a client can see, defined once: the catalogue, the error type, and translations into it.

An entry (`ErrorKind`) fixes a code's HTTP status and OpenAI error `type`; a handler raises
`INVALID_VALUE("...", param="messages[0].role")`, never an ad-hoc status. Before the first byte an error is
that status with a JSON body; after it, the same body is the stream's terminal `error` event.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import msgspec

from app.schemas import ErrorBody, ErrorDetail
from providers.errors import (
    ProviderAccessDeniedError,
    ProviderAuthError,
    ProviderBadRequestError,
    ProviderError,
    ProviderModelNotFoundError,
    ProviderNotReadyError,
    ProviderRateLimitError,
    ProviderStreamError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    ProviderUnsupportedParameterError,
)

ErrorType = Literal[
    "invalid_request_error",
    "authentication_error",
    "permission_error",
    "not_found_error",
    "rate_limit_error",
    "timeout_error",
    "upstream_error",
    "server_error",
    "cancelled",
    "budget_exceeded",
]
ErrorCode = Literal[
    "invalid_json",
    "invalid_encoding",
    "invalid_value",
    "unsupported_media_type",
    "unsupported_parameter",
    "request_too_large",
    "request_timeout",
    "not_found",
    "method_not_allowed",
    "model_not_found",
    "stream_not_found",
    "duplicate_id",
    "invalid_api_key",
    "cross_origin",
    "too_many_streams",
    "cancelled",
    "abandoned",
    "idle_timeout",
    "deadline",
    "upstream_authentication_failed",
    "rate_limit_exceeded",
    "upstream_rejected_request",
    "upstream_timeout",
    "upstream_unavailable",
    "upstream_stream_error",
    "upstream_error",
    "upstream_access_denied",
    "upstream_not_ready",
    "stream_log_unavailable",
    "internal_error",
]


class ApiError(Exception):
    """Raised when a request cannot be served; carries its catalogue entry and OpenAI-style error body."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.status_code = kind.status
        self.detail = ErrorDetail(message=message, type=kind.type, code=kind.code, param=param)
        self.headers = headers or {}

    def body(self) -> ErrorBody:
        return ErrorBody(error=self.detail)


@dataclass(frozen=True, slots=True)
class ErrorKind:
    """One entry of the catalogue: an error code with the HTTP status and error type that go with it."""

    status: int
    type: ErrorType
    code: ErrorCode | None

    def __call__(
        self, message: str, *, param: str | None = None, headers: dict[str, str] | None = None
    ) -> ApiError:
        return ApiError(self, message, param=param, headers=headers)


# --- the client's input (OpenAI leaves `code` empty for a plain invalid value it names by `param`) ---
INVALID_REQUEST = ErrorKind(400, "invalid_request_error", None)
INVALID_JSON = ErrorKind(400, "invalid_request_error", "invalid_json")
INVALID_ENCODING = ErrorKind(400, "invalid_request_error", "invalid_encoding")
INVALID_VALUE = ErrorKind(400, "invalid_request_error", "invalid_value")
DUPLICATE_ID = ErrorKind(400, "invalid_request_error", "duplicate_id")
UNSUPPORTED_MEDIA_TYPE = ErrorKind(415, "invalid_request_error", "unsupported_media_type")
# A field or value OpenAI accepts that this service cannot honour (server-side state, other tool kinds).
UNSUPPORTED_PARAMETER = ErrorKind(400, "invalid_request_error", "unsupported_parameter")
REQUEST_TOO_LARGE = ErrorKind(413, "invalid_request_error", "request_too_large")
REQUEST_TIMEOUT = ErrorKind(408, "invalid_request_error", "request_timeout")
NOT_FOUND = ErrorKind(404, "not_found_error", "not_found")
METHOD_NOT_ALLOWED = ErrorKind(405, "invalid_request_error", "method_not_allowed")
MODEL_NOT_FOUND = ErrorKind(404, "invalid_request_error", "model_not_found")
STREAM_NOT_FOUND = ErrorKind(404, "invalid_request_error", "stream_not_found")
# --- who may ask ---
INVALID_API_KEY = ErrorKind(401, "authentication_error", "invalid_api_key")
CROSS_ORIGIN = ErrorKind(403, "permission_error", "cross_origin")
TOO_MANY_STREAMS = ErrorKind(429, "rate_limit_error", "too_many_streams")
# --- how a stream can end early (after the first byte, as its terminal event) ---
CANCELLED = ErrorKind(409, "cancelled", "cancelled")
# A resumable stream that nobody read for `RESUME_GRACE_S` after its client left.
ABANDONED = ErrorKind(409, "cancelled", "abandoned")
IDLE_TIMEOUT = ErrorKind(504, "budget_exceeded", "idle_timeout")
DEADLINE = ErrorKind(504, "budget_exceeded", "deadline")
# --- the upstream model provider, translated once in `from_provider_error` ---
UPSTREAM_AUTHENTICATION_FAILED = ErrorKind(401, "authentication_error", "upstream_authentication_failed")
RATE_LIMIT_EXCEEDED = ErrorKind(429, "rate_limit_error", "rate_limit_exceeded")
UPSTREAM_REJECTED_REQUEST = ErrorKind(400, "invalid_request_error", "upstream_rejected_request")
UPSTREAM_TIMEOUT = ErrorKind(504, "timeout_error", "upstream_timeout")
UPSTREAM_UNAVAILABLE = ErrorKind(502, "upstream_error", "upstream_unavailable")
UPSTREAM_STREAM_ERROR = ErrorKind(502, "upstream_error", "upstream_stream_error")
UPSTREAM_ERROR = ErrorKind(502, "upstream_error", "upstream_error")
# Our own identity lacks a permission or model access (Bedrock: the role's policy, the model's access grant).
UPSTREAM_ACCESS_DENIED = ErrorKind(502, "upstream_error", "upstream_access_denied")
# The upstream answered that it cannot serve for now (service unavailable, model not ready): retry later.
UPSTREAM_NOT_READY = ErrorKind(503, "upstream_error", "upstream_not_ready")
# The store of resumable streams could not be read (`STREAM_TABLE`): retrying later may work.
STREAM_LOG_UNAVAILABLE = ErrorKind(503, "server_error", "stream_log_unavailable")
# --- ours: says nothing about the internals (the details go to the log only) ---
INTERNAL_ERROR = ErrorKind(500, "server_error", "internal_error")

_BY_STATUS = {kind.status: kind for kind in (NOT_FOUND, METHOD_NOT_ALLOWED, REQUEST_TOO_LARGE)}
_TYPES_BY_STATUS: dict[int, ErrorType] = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}
_FIELD_PROBLEM = re.compile(r"Object (?:missing required|contains unknown) field `([^`]+)`")


def for_http_status(status: int) -> ErrorKind:
    """The entry for a status the web framework raised by itself (unknown route, wrong method, ...)."""
    known = _BY_STATUS.get(status)
    if known is not None:
        return known
    return ErrorKind(status, _TYPES_BY_STATUS.get(status, "invalid_request_error"), None)


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
    kind = INVALID_VALUE if isinstance(exc, msgspec.ValidationError) else INVALID_JSON
    return kind(message, param=param)


def from_provider_error(exc: ProviderError) -> ApiError:
    """Translate a provider failure into the status a client should see before any byte was sent."""
    if isinstance(exc, ProviderAuthError):
        return UPSTREAM_AUTHENTICATION_FAILED(exc.message)
    headers = {"Retry-After": str(max(1, round(exc.retry_after_s)))} if exc.retry_after_s else None
    if isinstance(exc, ProviderRateLimitError):
        return RATE_LIMIT_EXCEEDED(exc.message, headers=headers)
    if isinstance(exc, ProviderAccessDeniedError):
        return UPSTREAM_ACCESS_DENIED(exc.message)
    if isinstance(exc, ProviderUnsupportedParameterError):
        return UNSUPPORTED_PARAMETER(exc.message, param=exc.param)
    if isinstance(exc, ProviderModelNotFoundError):
        return MODEL_NOT_FOUND(exc.message, param="model")
    if isinstance(exc, ProviderBadRequestError):
        return UPSTREAM_REJECTED_REQUEST(exc.message)
    if isinstance(exc, ProviderTimeoutError):
        return UPSTREAM_TIMEOUT(exc.message)
    if isinstance(exc, ProviderNotReadyError):
        return UPSTREAM_NOT_READY(exc.message, headers=headers)
    if isinstance(exc, ProviderUnavailableError):
        return UPSTREAM_UNAVAILABLE(exc.message)
    if isinstance(exc, ProviderStreamError):
        return UPSTREAM_STREAM_ERROR(exc.message)
    return UPSTREAM_ERROR(exc.message)


def internal_error() -> ApiError:
    """A 500 that says nothing about the internals; the details go to the log only."""
    return INTERNAL_ERROR("internal server error")


def stream_log_unavailable() -> ApiError:
    """The stream log's storage failed a read (`StreamLogUnavailable`): the stream may exist, later."""
    return STREAM_LOG_UNAVAILABLE("the stream log cannot be read now; retry shortly")


def cancelled_error() -> ApiError:
    """A stream stopped by an explicit cancel (`POST /v1/streams/{id}/cancel`, a WebSocket `cancel`)."""
    return CANCELLED("stream cancelled by request")
