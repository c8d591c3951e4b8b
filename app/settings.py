"""The one reader of the environment: every knob, validated once at start-up."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from typing import Literal
from urllib.parse import urlsplit

import msgspec

ProviderName = Literal["mock", "openai", "bedrock"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
# uvicorn's event loop and HTTP parser under `python -m app` (app/http/server.py).
ServerStack = Literal["fast", "h11"]

DEFAULT_OPENAI_MODEL = "gpt-4o-mini"


class SettingsError(Exception):
    """Raised when the environment holds a missing, malformed or contradictory setting."""


class Secret:
    """A string that never shows itself in `repr`, `str` or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Validated configuration of one service instance."""

    provider: ProviderName = "mock"
    default_model: str = "mock"
    openai_api_key: Secret | None = None
    openai_base_url: str | None = None
    openai_models: tuple[str, ...] = ()
    openai_timeout_s: float = 60.0
    openai_max_retries: int = 2
    openai_models_ttl_s: float = 300.0
    # Amazon Bedrock: (public name, model id or inference-profile ARN) pairs, the first the default; the
    # region falls back to the SDK's own chain when None.
    bedrock_models: tuple[tuple[str, str], ...] = ()
    bedrock_region: str | None = None
    bedrock_timeout_s: float = 60.0
    bedrock_max_retries: int = 2
    mock_token_delay_ms: int = 0
    heartbeat_interval_s: float = 15.0
    stream_idle_timeout_s: float = 60.0
    stream_deadline_s: float = 300.0
    stream_send_timeout_s: float = 30.0
    max_tokens_limit: int = 4096
    max_body_bytes: int = 1_048_576
    request_head_timeout_s: float = 10.0
    request_body_timeout_s: float = 30.0
    keep_alive_timeout_s: int = 5
    server_stack: ServerStack = "fast"
    api_keys: tuple[Secret, ...] = ()
    log_level: LogLevel = "INFO"
    log_prompts: bool = False
    host: str = "127.0.0.1"
    port: int = 8000
    cors_allow_origins: tuple[str, ...] = ()
    cors_headers_from_host: bool = False
    cancel_table: str | None = None
    cancel_poll_interval_s: float = 1.0
    # Resumable streams: where their events are logged (DynamoDB when set, else memory), for how long a
    # finished one stays readable, how long a detached one goes on waiting for its client, and how the
    # DynamoDB log batches its writes and polls for a follower on another instance.
    stream_table: str | None = None
    stream_retention_s: float = 300.0
    resume_grace_s: float = 30.0
    stream_log_flush_s: float = 0.2
    stream_log_flush_bytes: int = 8192
    stream_log_poll_s: float = 0.2
    lambda_deadline_margin_s: float = 2.0
    # --- metrics (app/metrics): Prometheus `GET /metrics`, EMF in the log lines, multiprocess counts ---
    metrics: bool = False
    metrics_emf: bool = False
    prometheus_multiproc_dir: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate the environment; raise `SettingsError` naming the variable at fault."""
        env = _Env(os.environ if environ is None else environ)
        api_key = env.text("OPENAI_API_KEY")
        provider = env.choice("PROVIDER", ("mock", "openai", "bedrock"), "openai" if api_key else "mock")
        if provider == "openai" and not api_key:
            raise SettingsError(
                "PROVIDER=openai needs OPENAI_API_KEY "
                "(any non-empty value for OpenAI-compatible servers without keys)"
            )
        openai_models = env.csv("OPENAI_MODELS")
        bedrock_models = _bedrock_models(env.csv("BEDROCK_MODELS"))
        if provider == "bedrock" and not bedrock_models:
            raise SettingsError(
                "PROVIDER=bedrock needs BEDROCK_MODELS (comma-separated model ids or inference-profile ARNs, "
                "each optionally as name=modelId)"
            )
        fallback_model = "mock" if provider == "mock" else (openai_models or (DEFAULT_OPENAI_MODEL,))[0]
        if provider == "bedrock":
            fallback_model = bedrock_models[0][0]
        default_model = env.text("DEFAULT_MODEL") or fallback_model
        if provider == "mock" and default_model != "mock":
            raise SettingsError(
                f"DEFAULT_MODEL={default_model!r} is not served by the mock provider (use 'mock')"
            )
        if provider == "bedrock" and default_model not in dict(bedrock_models):
            raise SettingsError(f"DEFAULT_MODEL={default_model!r} is not one of BEDROCK_MODELS")
        if provider != "bedrock" and openai_models and default_model not in openai_models:
            raise SettingsError(f"DEFAULT_MODEL={default_model!r} is not one of OPENAI_MODELS")
        base_url = env.text("OPENAI_BASE_URL")
        if base_url and not base_url.startswith(("http://", "https://")):
            raise SettingsError("OPENAI_BASE_URL must start with http:// or https://")
        return cls(
            provider=provider,  # type: ignore[arg-type]
            default_model=default_model,
            openai_api_key=Secret(api_key) if api_key else None,
            openai_base_url=base_url or None,
            openai_models=openai_models,
            openai_timeout_s=env.number("OPENAI_TIMEOUT_S", 60.0, minimum=0.1),
            openai_max_retries=int(env.number("OPENAI_MAX_RETRIES", 2, minimum=0, integer=True)),
            openai_models_ttl_s=env.number("OPENAI_MODELS_TTL_S", 300.0, minimum=0),
            bedrock_models=bedrock_models,
            # Lambda sets AWS_REGION; elsewhere botocore's chain (AWS_DEFAULT_REGION, a profile) decides.
            bedrock_region=env.text("BEDROCK_REGION") or env.text("AWS_REGION") or None,
            bedrock_timeout_s=env.number("BEDROCK_TIMEOUT_S", 60.0, minimum=0.1),
            bedrock_max_retries=int(
                env.number("BEDROCK_MAX_RETRIES", 2, minimum=0, maximum=10, integer=True)
            ),
            mock_token_delay_ms=int(env.number("MOCK_TOKEN_DELAY_MS", 0, minimum=0, integer=True)),
            heartbeat_interval_s=env.number("HEARTBEAT_INTERVAL_S", 15.0, minimum=0.01),
            stream_idle_timeout_s=env.number("STREAM_IDLE_TIMEOUT_S", 60.0, minimum=0.01),
            stream_deadline_s=env.number("STREAM_DEADLINE_S", 300.0, minimum=0.01),
            stream_send_timeout_s=env.number("STREAM_SEND_TIMEOUT_S", 30.0, minimum=0.01),
            max_tokens_limit=int(env.number("MAX_TOKENS_LIMIT", 4096, minimum=1, integer=True)),
            max_body_bytes=int(env.number("MAX_BODY_BYTES", 1_048_576, minimum=1024, integer=True)),
            request_head_timeout_s=env.number("REQUEST_HEAD_TIMEOUT_S", 10.0, minimum=0.1, maximum=600),
            request_body_timeout_s=env.number("REQUEST_BODY_TIMEOUT_S", 30.0, minimum=0.1, maximum=600),
            keep_alive_timeout_s=int(
                env.number("KEEP_ALIVE_TIMEOUT_S", 5, minimum=1, maximum=600, integer=True)
            ),
            server_stack=env.choice("SERVER_STACK", ("fast", "h11"), "fast"),  # type: ignore[arg-type]
            api_keys=tuple(Secret(key) for key in env.csv("API_KEYS")),
            log_level=env.choice("LOG_LEVEL", ("DEBUG", "INFO", "WARNING", "ERROR"), "INFO"),  # type: ignore[arg-type]
            log_prompts=env.flag("LOG_PROMPTS", default=False),
            host=env.text("HOST") or "127.0.0.1",
            port=int(env.number("PORT", 8000, minimum=1, maximum=65535, integer=True)),
            cors_allow_origins=_origins(env.csv("CORS_ALLOW_ORIGINS")),
            cors_headers_from_host=env.flag("CORS_HEADERS_FROM_HOST", default=False),
            cancel_table=_table_name(env.text("CANCEL_TABLE")),
            cancel_poll_interval_s=env.number("CANCEL_POLL_INTERVAL_S", 1.0, minimum=0.05, maximum=60),
            # One table for both by default, as the templates create it: its items are typed by their key.
            stream_table=_table_name(env.text("STREAM_TABLE") or env.text("CANCEL_TABLE")),
            stream_retention_s=env.number("STREAM_RETENTION_S", 300.0, minimum=1, maximum=86_400),
            resume_grace_s=env.number("RESUME_GRACE_S", 30.0, minimum=0, maximum=3600),
            stream_log_flush_s=env.number("STREAM_LOG_FLUSH_MS", 200, minimum=10, maximum=5000) / 1000,
            stream_log_flush_bytes=int(
                env.number("STREAM_LOG_FLUSH_BYTES", 8192, minimum=256, maximum=262_144, integer=True)
            ),
            stream_log_poll_s=env.number("STREAM_LOG_POLL_MS", 200, minimum=20, maximum=5000) / 1000,
            lambda_deadline_margin_s=env.number("LAMBDA_DEADLINE_MARGIN_S", 2.0, minimum=0, maximum=60),
            metrics=env.flag("METRICS", default=False),
            # On by default on Lambda (which always sets AWS_LAMBDA_FUNCTION_NAME): CloudWatch reads the logs.
            metrics_emf=env.flag("METRICS_EMF", default=bool(env.text("AWS_LAMBDA_FUNCTION_NAME"))),
            prometheus_multiproc_dir=_directory(
                "PROMETHEUS_MULTIPROC_DIR", env.text("PROMETHEUS_MULTIPROC_DIR")
            ),
        )


def _origins(values: tuple[str, ...]) -> tuple[str, ...]:
    """Browser origins (`https://app.example.com`, `http://localhost:5173`, `*`, `https://*.example.com`).

    An origin has no path: `https://app.example.com/` never matches what a browser sends, so it fails here.
    """
    for value in values:
        if value == "*":
            continue
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query:
            raise SettingsError(
                f"CORS_ALLOW_ORIGINS: {value!r} is not an origin (scheme://host[:port], no path; or *)"
            )
    return values


def _directory(name: str, value: str) -> str | None:
    """An existing directory, checked here: the Prometheus client would fail at the first stream instead."""
    if not value:
        return None
    if not os.path.isdir(value):
        raise SettingsError(f"{name}={value!r} is not an existing directory")
    return value


def _bedrock_models(values: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """`name=modelId` pairs; a bare model id or ARN is its own public name. Names must be unique."""
    pairs: list[tuple[str, str]] = []
    for value in values:
        # An ARN never holds '=', so it is always a bare id.
        name, equals, model_id = value.partition("=") if not value.startswith("arn:") else ("", "", value)
        if not equals:
            name = model_id = value
        name, model_id = name.strip(), model_id.strip()
        if not name or not model_id:
            raise SettingsError(f"BEDROCK_MODELS: {value!r} is not a model id or name=modelId")
        if any(name == known for known, _ in pairs):
            raise SettingsError(f"BEDROCK_MODELS: the name {name!r} is given twice")
        pairs.append((name, model_id))
    return tuple(pairs)


def _table_name(value: str) -> str | None:
    """A DynamoDB table name or ARN, checked so that a typo fails at cold start, not at the first cancel."""
    if not value:
        return None
    name = value.rsplit("/", 1)[-1] if value.startswith("arn:") else value
    if not re.fullmatch(r"[A-Za-z0-9_.-]{3,255}", name):
        raise SettingsError(f"CANCEL_TABLE={value!r} is not a DynamoDB table name (3-255 of A-Za-z0-9_.-)")
    return value


class _Env:
    """Typed accessors over a mapping, each failing with the variable's name and what was expected."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def text(self, name: str) -> str:
        return self._environ.get(name, "").strip()

    def csv(self, name: str) -> tuple[str, ...]:
        return tuple(part.strip() for part in self.text(name).split(",") if part.strip())

    def choice(self, name: str, allowed: tuple[str, ...], default: str) -> str:
        value = self.text(name)
        if not value:
            return default
        normalised = value.upper() if name == "LOG_LEVEL" else value.lower()
        if normalised not in allowed:
            raise SettingsError(f"{name}={value!r} is not one of: {', '.join(allowed)}")
        return normalised

    def flag(self, name: str, *, default: bool) -> bool:
        value = self.text(name).lower()
        if not value:
            return default
        if value in ("1", "true", "yes", "on"):
            return True
        if value in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{name}={value!r} is not a boolean (use true or false)")

    def number(
        self,
        name: str,
        default: float,
        *,
        minimum: float,
        maximum: float | None = None,
        integer: bool = False,
    ) -> float:
        raw = self.text(name)
        if not raw:
            return default
        try:
            value = int(raw) if integer else float(raw)
        except ValueError:
            kind = "an integer" if integer else "a number"
            raise SettingsError(f"{name}={raw!r} is not {kind}") from None
        if not math.isfinite(value):
            # `float()` accepts nan and inf: nan defeats every comparison (a ping storm, no deadline).
            raise SettingsError(f"{name}={raw!r} is not a finite number")
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
            raise SettingsError(f"{name}={raw!r} must be {bounds}")
        return value
