"""Errors every provider raises, whatever the upstream library says."""

from __future__ import annotations


class ProviderError(Exception):
    """Raised when a provider cannot produce (the rest of) a generation."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s


class ProviderAuthError(ProviderError):
    """Raised when the upstream rejects our credentials."""


class ProviderRateLimitError(ProviderError):
    """Raised when the upstream asks us to slow down or our quota is exhausted."""


class ProviderBadRequestError(ProviderError):
    """Raised when the upstream rejects the request itself (unknown model, bad parameter)."""


class ProviderUnsupportedParameterError(ProviderBadRequestError):
    """Raised when a request asks for what this provider's upstream cannot do; `param` names the field."""

    def __init__(self, message: str, *, param: str) -> None:
        super().__init__(message)
        self.param = param


class ProviderModelNotFoundError(ProviderBadRequestError):
    """Raised when the upstream does not know the requested model."""


class ProviderAccessDeniedError(ProviderError):
    """Raised when our own identity lacks a permission or model access the upstream requires (a deployment
    fault, not the client's)."""


class ProviderUnavailableError(ProviderError):
    """Raised when the upstream cannot be reached or answers with a server error."""


class ProviderNotReadyError(ProviderUnavailableError):
    """Raised when the upstream answers but cannot serve for now (service unavailable, model not ready)."""


class ProviderTimeoutError(ProviderUnavailableError):
    """Raised when the upstream does not answer in time."""


class ProviderStreamError(ProviderError):
    """Raised when a generation fails after it has started streaming."""
