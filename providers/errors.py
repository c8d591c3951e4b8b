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


class ProviderModelNotFoundError(ProviderBadRequestError):
    """Raised when the upstream does not know the requested model."""


class ProviderUnavailableError(ProviderError):
    """Raised when the upstream cannot be reached or answers with a server error."""


class ProviderTimeoutError(ProviderUnavailableError):
    """Raised when the upstream does not answer in time."""


class ProviderStreamError(ProviderError):
    """Raised when a generation fails after it has started streaming."""
