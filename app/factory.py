"""Builds the Litestar app from settings and a provider; the one place where the parts meet."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request, Response, Router
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.plugins import PluginProtocol

from app.errors import ApiError, for_http_status, internal_error
from app.http.ai_sdk import resume_ui_chat, ui_chat
from app.http.auth import ApiKeyGuard
from app.http.disconnect import ClientGoneError
from app.http.origins import OriginPolicy, cors_config
from app.http.page import index, static_asset, vendored_asset
from app.http.responses_api import create_response
from app.http.routes import (
    cancel_stream,
    chat_completions,
    healthz,
    list_models,
    openapi_json,
    stream,
    stream_events,
)
from app.http.ws import stream_socket
from app.logs import log_event
from app.metrics.recorder import MetricsSink, StreamMetrics
from app.settings import Settings
from app.stream.cancel import CancelRegistry
from app.stream.cancel.memory import InMemoryCancelRegistry
from app.stream.dynamodb_client import DynamoDBClient
from app.stream.log import StreamLog
from app.stream.log.memory import InMemoryStreamLog
from app.stream.services import Services
from providers.protocol import Provider


class _Litestar(Litestar):
    """Litestar without the plugins it registers by itself for pydantic and attrs models.

    No route here takes or returns either (every wire shape is a msgspec Struct), but Litestar imports
    its pydantic plugin whenever pydantic is importable, and it always is: the openai SDK depends on it.
    That import was a quarter of the mock path's cold start (bench/coldstart.py: 312 -> 232 ms).
    """

    @staticmethod
    def _get_default_plugins(plugins: list[PluginProtocol]) -> list[PluginProtocol]:
        from litestar.plugins.core import MsgspecDIPlugin

        plugins.append(MsgspecDIPlugin())
        return plugins


def build_provider(settings: Settings) -> Provider:
    """The provider the settings select; an SDK (openai, botocore) is imported only when it is selected."""
    if settings.provider == "openai":
        from providers.openai import OpenAIProvider

        assert settings.openai_api_key is not None  # guaranteed by Settings.from_env
        return OpenAIProvider(
            api_key=settings.openai_api_key.reveal(),
            base_url=settings.openai_base_url,
            models=settings.openai_models,
            timeout_s=settings.openai_timeout_s,
            max_retries=settings.openai_max_retries,
            models_ttl_s=settings.openai_models_ttl_s,
        )
    if settings.provider == "bedrock":
        from providers.bedrock import BedrockProvider

        return BedrockProvider(
            models=settings.bedrock_models,
            region=settings.bedrock_region,
            timeout_s=settings.bedrock_timeout_s,
            max_retries=settings.bedrock_max_retries,
        )
    from providers.mock import MockProvider

    return MockProvider(token_delay_s=settings.mock_token_delay_ms / 1000)


def build_cancel_registry(settings: Settings, dynamodb: DynamoDBClient | None = None) -> CancelRegistry:
    """DynamoDB when `CANCEL_TABLE` is set (Lambda: the cancel reaches another instance), else in memory;
    `dynamodb`: the client shared with the stream log (built in the background on first use)."""
    if settings.cancel_table:
        from app.stream.cancel.dynamodb import DynamoDBCancelRegistry

        # Items outlive the longest possible stream, with slack for clock skew between instances.
        return DynamoDBCancelRegistry(
            settings.cancel_table,
            poll_interval_s=settings.cancel_poll_interval_s,
            ttl_s=settings.stream_deadline_s + 3600,
            client=dynamodb,
        )
    return InMemoryCancelRegistry()


def build_stream_log(settings: Settings, dynamodb: DynamoDBClient | None = None) -> StreamLog:
    """Where resumable streams are logged: in memory (one process) unless `STREAM_TABLE` is set."""
    if settings.stream_table:
        from app.stream.log.dynamodb import DynamoDBStreamLog

        return DynamoDBStreamLog(
            settings.stream_table,
            retention_s=settings.stream_retention_s,
            flush_interval_s=settings.stream_log_flush_s,
            flush_bytes=settings.stream_log_flush_bytes,
            poll_interval_s=settings.stream_log_poll_s,
            # As the cancel registry's items: longer than the longest stream, with slack for clock skew.
            live_ttl_s=settings.stream_deadline_s + 3600,
            client=dynamodb,
        )
    return InMemoryStreamLog(retention_s=settings.stream_retention_s)


def build_metrics(settings: Settings, provider: Provider) -> tuple[StreamMetrics, MetricsSink | None]:
    """EMF in the log lines where CloudWatch reads them (Lambda); Prometheus only with `METRICS=true`,
    imported only then (a Lambda cold start does not pay for a client it has no use for)."""
    if not settings.metrics:
        return StreamMetrics(emf=settings.metrics_emf), None
    from app.metrics.prometheus import PrometheusSink

    sink = PrometheusSink(models=provider.models(), multiprocess_dir=settings.prometheus_multiproc_dir)
    return StreamMetrics(emf=settings.metrics_emf, sinks=[sink]), sink


def _api_error_response(_: Request[Any, Any, Any], exc: ApiError) -> Response[Any]:
    return Response(exc.body(), status_code=exc.status_code, headers=exc.headers)


def _http_exception_response(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    if status >= 500:
        return _unexpected_error_response(request, exc)
    message = exc.detail
    if status == 413:
        message = "the request body is larger than this server accepts (MAX_BODY_BYTES)"
    error = for_http_status(status)(message)
    return Response(error.body(), status_code=status, headers=exc.headers or {})


def _client_gone_response(_: Request[Any, Any, Any], exc: ClientGoneError) -> Response[Any]:
    # Nobody reads it: the session has already ended (and logged `stream_end`, outcome `cancelled`).
    return Response(None, status_code=499)


def _unexpected_error_response(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log_event("unhandled_error", logging.ERROR, path=request.url.path, exc_type=type(exc).__name__)
    error = internal_error()
    return Response(error.body(), status_code=error.status_code)


def create_app(
    settings: Settings | None = None,
    provider: Provider | None = None,
    *,
    cancels: CancelRegistry | None = None,
    stream_log: StreamLog | None = None,
    aws_clients_at_start: bool = False,
) -> Litestar:
    """The ASGI app; tests and hosts pass their own provider, cancel registry and stream log.

    `aws_clients_at_start`: build the DynamoDB client now, as a long-lived server wants (`python -m app`: its
    first streams are then resumable and cancellable at once, and a bad AWS configuration fails the start);
    by default it is built in the background by the first stream, as a Lambda cold start wants.
    """
    settings = settings if settings is not None else Settings.from_env()
    provider = provider if provider is not None else build_provider(settings)
    metrics, prometheus = build_metrics(settings, provider)
    # One boto3 client for both tables' users, built in the background by the first stream.
    dynamodb = DynamoDBClient() if settings.cancel_table or settings.stream_table else None
    if dynamodb is not None and aws_clients_at_start:
        dynamodb.build_now()
    services = Services(
        settings=settings,
        provider=provider,
        cancels=cancels if cancels is not None else build_cancel_registry(settings, dynamodb),
        stream_log=stream_log if stream_log is not None else build_stream_log(settings, dynamodb),
        started=int(time.time()),
        metrics=metrics,
    )

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            # Resumable streams run on their own tasks: ended here, with their logs closed.
            await services.runs.stop_all()
            await provider.aclose()
            metrics.close()

    api_handlers: list[Any] = [
        list_models,
        chat_completions,
        create_response,
        ui_chat,
        resume_ui_chat,
        stream,
        cancel_stream,
        stream_events,
    ]
    if prometheus is not None:
        from app.http.metrics import metrics_endpoint

        # Behind the same keys as /v1/*: the counts tell who uses which model how much (scrapers send
        # `Authorization: Bearer`); without API_KEYS it is as open as the rest of the API.
        api_handlers.append(metrics_endpoint)
    api = Router(path="/", route_handlers=api_handlers, guards=[ApiKeyGuard(settings.api_keys)])
    return _Litestar(
        # The page is public; the WebSocket checks API keys itself (see app/http/ws.py for why not the guard).
        route_handlers=[healthz, openapi_json, index, static_asset, vendored_asset, stream_socket, api],
        state=State({"services": services, "origins": OriginPolicy(settings), "prometheus": prometheus}),
        lifespan=[lifespan],
        exception_handlers={
            ApiError: _api_error_response,
            ClientGoneError: _client_gone_response,
            HTTPException: _http_exception_response,
            Exception: _unexpected_error_response,
        },
        request_max_body_size=settings.max_body_bytes,
        # Behind a Lambda function URL with CORS settings of its own, the URL answers preflights and adds
        # the headers; adding them here too would send each twice, which browsers refuse.
        cors_config=None if settings.cors_headers_from_host else cors_config(settings),
        # The document is ours (app/http/openapi.py): the handlers decode their own bodies, so the
        # framework's would describe none of them, and its viewer pages load scripts from a CDN.
        openapi_config=None,
        debug=False,
    )
