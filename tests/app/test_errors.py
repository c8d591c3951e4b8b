"""Error translation: provider failures to statuses, msgspec failures to field paths, bugs to nothing."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

import msgspec
import pytest

from app import errors
from app.errors import from_provider_error, from_validation_error, internal_error
from app.schemas import ChatCompletionRequest
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

_decoder = msgspec.json.Decoder(ChatCompletionRequest)


@pytest.mark.parametrize(
    ("error", "status", "kind", "code"),
    [
        (ProviderAuthError("x"), 401, "authentication_error", "upstream_authentication_failed"),
        (ProviderRateLimitError("x"), 429, "rate_limit_error", "rate_limit_exceeded"),
        (ProviderModelNotFoundError("x"), 404, "invalid_request_error", "model_not_found"),
        (ProviderBadRequestError("x"), 400, "invalid_request_error", "upstream_rejected_request"),
        (ProviderTimeoutError("x"), 504, "timeout_error", "upstream_timeout"),
        (ProviderUnavailableError("x"), 502, "upstream_error", "upstream_unavailable"),
        (ProviderStreamError("x"), 502, "upstream_error", "upstream_stream_error"),
        (ProviderError("x"), 502, "upstream_error", "upstream_error"),
        (ProviderAccessDeniedError("x"), 502, "upstream_error", "upstream_access_denied"),
        (ProviderNotReadyError("x"), 503, "upstream_error", "upstream_not_ready"),
        (
            ProviderUnsupportedParameterError("x", param="n"),
            400,
            "invalid_request_error",
            "unsupported_parameter",
        ),
    ],
)
def test_provider_errors_map_to_the_status_a_client_expects(
    error: ProviderError, status: int, kind: str, code: str
) -> None:
    api_error = from_provider_error(error)
    assert (api_error.status_code, api_error.detail.type, api_error.detail.code) == (status, kind, code)
    assert api_error.detail.message == "x"


@pytest.mark.parametrize(("retry_after_s", "header"), [(2.4, "2"), (0.2, "1"), (30.0, "30"), (None, None)])
def test_rate_limits_carry_retry_after_in_whole_seconds(
    retry_after_s: float | None, header: str | None
) -> None:
    api_error = from_provider_error(ProviderRateLimitError("slow", retry_after_s=retry_after_s))
    assert api_error.headers.get("Retry-After") == header


def test_an_unsupported_parameter_is_named_and_not_ready_carries_retry_after() -> None:
    assert from_provider_error(ProviderUnsupportedParameterError("no", param="n")).detail.param == "n"
    assert from_provider_error(ProviderNotReadyError("later", retry_after_s=3)).headers == {
        "Retry-After": "3"
    }


def test_the_model_not_found_error_points_at_the_model() -> None:
    assert from_provider_error(ProviderModelNotFoundError("gone")).detail.param == "model"


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (b'{"messages": [{"role": "wizard", "content": "x"}]}', "messages[0].role"),
        (b'{"messages": [{"role": "user"}]}', "messages[0].content"),
        (b"{}", "messages"),
        (b'{"messages": [{"role": "user", "content": "x", "bogus": 1}]}', "messages[0].bogus"),
        (b'{"messages": [{"role": "user", "content": "x"}], "mock": {"bogus": 1}}', "mock.bogus"),
        (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": -1}', "max_tokens"),
        (b"[]", None),
    ],
)
def test_validation_errors_name_the_field_path(raw: bytes, param: str | None) -> None:
    with pytest.raises(msgspec.ValidationError) as caught:
        _decoder.decode(raw)
    api_error = from_validation_error(caught.value)
    assert (api_error.status_code, api_error.detail.code, api_error.detail.param) == (
        400,
        "invalid_value",
        param,
    )
    assert api_error.detail.message == str(caught.value)


def test_decode_errors_are_invalid_json_without_a_param() -> None:
    with pytest.raises(msgspec.DecodeError) as caught:
        _decoder.decode(b'{"messages": [')
    api_error = from_validation_error(caught.value)
    assert (api_error.status_code, api_error.detail.code, api_error.detail.param) == (
        400,
        "invalid_json",
        None,
    )


def test_the_internal_error_says_nothing_about_the_internals() -> None:
    error = internal_error()
    assert error.status_code == 500
    assert msgspec.to_builtins(error.body()) == {
        "error": {
            "message": "internal server error",
            "type": "server_error",
            "code": "internal_error",
            "param": None,
        }
    }


def test_api_error_body_is_the_openai_error_shape() -> None:
    error = errors.INVALID_VALUE("short and stout", param="spout")
    assert error.status_code == 400
    assert msgspec.to_builtins(error.body()) == {
        "error": {
            "message": "short and stout",
            "type": "invalid_request_error",
            "code": "invalid_value",
            "param": "spout",
        }
    }


_ROOT = Path(__file__).resolve().parents[2]


def _catalogue() -> dict[str, errors.ErrorKind]:
    return {name: kind for name, kind in vars(errors).items() if isinstance(kind, errors.ErrorKind)}


def test_every_code_of_the_catalogue_is_defined_once_and_named_after_itself() -> None:
    kinds = _catalogue()
    codes = [kind.code for kind in kinds.values() if kind.code is not None]

    assert len(codes) == len(set(codes))
    assert set(codes) == set(get_args(errors.ErrorCode))
    for name, kind in kinds.items():
        assert kind.code is None or name == kind.code.upper(), name


def test_no_module_builds_an_error_outside_the_catalogue() -> None:
    # A handler raises an entry (`STREAM_NOT_FOUND(...)`); a status or code of its own is a second definition.
    offenders = []
    for path in sorted((_ROOT / "app").rglob("*.py")):
        if path.name == "errors.py" and path.parent.name == "app":
            continue
        source = path.read_text()
        if re.search(r"\b(ApiError|ErrorKind)\(", source):
            offenders.append(str(path.relative_to(_ROOT)))
    assert offenders == []
