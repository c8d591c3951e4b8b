"""HTTP route handlers: thin glue from decoded requests to sessions and framed responses."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.params import FromPath

from app.cancel import CancelRegistry
from app.errors import ApiError, invalid_request
from app.framing import native_stream, openai_stream, usage_info
from app.logs import log_event
from app.requests import (
    build_chat_request,
    check_query_encoding,
    decode_json_body,
    decode_mock_query,
    query_int,
)
from app.responses import EventStreamResponse
from app.schemas import (
    AssistantMessage,
    CancelAccepted,
    ChatCompletion,
    ChatCompletionRequest,
    CompletionChoice,
    Health,
    Message,
    ModelCard,
    ModelList,
    StreamRequest,
)
from app.settings import Settings
from app.streaming import (
    DEADLINE_SCOPE_EXTENSION,
    STREAM_FAILURE_SCOPE_EXTENSION,
    Completed,
    Failed,
    SessionEvent,
    StreamLimits,
    StreamSession,
)
from providers.protocol import ChatRequest, Provider, TextDelta

VERSION = "0.1.0"

_chat_decoder = msgspec.json.Decoder(ChatCompletionRequest)
_stream_decoder = msgspec.json.Decoder(StreamRequest)


@dataclass(frozen=True, slots=True)
class Services:
    """What the handlers need, built once by the app factory."""

    settings: Settings
    provider: Provider
    cancels: CancelRegistry
    started: int


def services_of(state: State) -> Services:
    services: Services = state.services
    return services


def open_session(
    services: Services, connection: ASGIConnection[Any, Any, Any, Any], chat: ChatRequest, endpoint: str
) -> StreamSession:
    """A session for one generation, with budgets from settings and from the host (Lambda deadline).

    `connection` is the HTTP request or the WebSocket the generation answers.
    """
    settings = services.settings
    extensions: dict[str, Any] = connection.scope.get("extensions") or {}
    deadline = extensions.get(DEADLINE_SCOPE_EXTENSION)
    limits = StreamLimits(
        max_tokens=chat.max_tokens or settings.max_tokens_limit,
        idle_timeout_s=settings.stream_idle_timeout_s,
        deadline_s=settings.stream_deadline_s,
        heartbeat_s=settings.heartbeat_interval_s,
        deadline_epoch_s=float(deadline) if deadline is not None else None,
    )
    stream_id = secrets.token_hex(12)
    if settings.log_prompts:
        log_event(
            "stream_prompt",
            logging.INFO,
            request_id=stream_id,
            messages=[{"role": m.role, "content": m.content} for m in chat.messages],
        )
    return StreamSession(
        provider=services.provider,
        request=chat,
        stream_id=stream_id,
        endpoint=endpoint,
        limits=limits,
        cancels=services.cancels,
        on_failure=extensions.get(STREAM_FAILURE_SCOPE_EXTENSION),
    )


def _stream_headers(session: StreamSession) -> dict[str, str]:
    return {"X-Request-Id": session.stream_id, "X-Stream-Id": session.stream_id}


@get("/healthz", tags=["ops"], summary="Liveness probe")
async def healthz(state: State) -> Health:
    return Health(status="ok", provider=services_of(state).provider.name, version=VERSION)


@get("/v1/models", tags=["openai"], summary="List the models this service can stream from")
async def list_models(state: State) -> ModelList:
    services = services_of(state)
    served = services.provider.models() or (services.settings.default_model,)
    owner = services.provider.name
    return ModelList(data=[ModelCard(id=m, created=services.started, owned_by=owner) for m in served])


@post("/v1/chat/completions", status_code=200, tags=["openai"], summary="OpenAI-compatible chat completions")
async def chat_completions(request: Request[Any, Any, Any], state: State) -> Response[Any]:
    services = services_of(state)
    body = await decode_json_body(request, _chat_decoder)
    chat = build_chat_request(
        settings=services.settings,
        provider=services.provider,
        messages=body.messages,
        model=body.model,
        max_tokens=body.max_completion_tokens or body.max_tokens,
        mock=body.mock,
        temperature=body.temperature,
        top_p=body.top_p,
        stop=body.stop,
        seed=body.seed,
        user=body.user,
    )
    session = open_session(services, request, chat, "chat.completions")
    completion_id = f"chatcmpl-{session.stream_id}"
    first, events = await _read_ahead(session)
    if body.stream:
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        frames = openai_stream(
            session, first, events, completion_id=completion_id, include_usage=include_usage
        )
        return EventStreamResponse(frames, headers=_stream_headers(session))
    return Response(await _complete(session, first, events, completion_id), headers=_stream_headers(session))


async def _read_ahead(
    session: StreamSession,
) -> tuple[SessionEvent, AsyncGenerator[SessionEvent, None]]:
    """The session's first event and the rest; a failure before any byte is sent is raised as its status."""
    events = session.events()
    first = await anext(events)
    if isinstance(first, Failed):
        await events.aclose()
        raise first.error
    return first, events


async def _complete(
    session: StreamSession,
    first: SessionEvent,
    events: AsyncGenerator[SessionEvent, None],
    completion_id: str,
) -> ChatCompletion:
    """Collect a whole generation for `stream: false`."""
    parts: list[str] = []
    event = first
    try:
        while True:
            if isinstance(event, TextDelta):
                parts.append(event.text)
            elif isinstance(event, Completed):
                return ChatCompletion(
                    id=completion_id,
                    created=int(time.time()),
                    model=session.request.model,
                    choices=[
                        CompletionChoice(
                            index=0,
                            message=AssistantMessage(content="".join(parts)),
                            finish_reason=event.finish_reason,
                        )
                    ],
                    usage=usage_info(event.usage),
                )
            elif isinstance(event, Failed):
                raise event.error
            event = await anext(events)
    finally:
        await events.aclose()


async def _native_response(
    services: Services,
    request: Request[Any, Any, Any],
    messages: list[Message],
    model: str | None,
    max_tokens: int | None,
    mock: Any,
) -> EventStreamResponse:
    chat = build_chat_request(
        settings=services.settings,
        provider=services.provider,
        messages=messages,
        model=model,
        max_tokens=max_tokens,
        mock=mock,
    )
    session = open_session(services, request, chat, "stream")
    first, events = await _read_ahead(session)
    return EventStreamResponse(native_stream(session, first, events), headers=_stream_headers(session))


@get("/v1/stream", tags=["stream"], summary="Stream an answer as named SSE events (EventSource-friendly)")
async def stream_get(request: Request[Any, Any, Any], state: State) -> EventStreamResponse:
    check_query_encoding(request.scope["query_string"])
    params = request.query_params
    prompt = params.get("prompt")
    if not prompt:
        raise invalid_request(
            "the query parameter 'prompt' is required and must not be empty", param="prompt"
        )
    return await _native_response(
        services_of(state),
        request,
        [Message(role="user", content=prompt)],
        params.get("model") or None,
        query_int(params, "max_tokens"),
        decode_mock_query(params.get("mock")),
    )


@post("/v1/stream", status_code=200, tags=["stream"], summary="Stream an answer as named SSE events (fetch)")
async def stream_post(request: Request[Any, Any, Any], state: State) -> EventStreamResponse:
    body = await decode_json_body(request, _stream_decoder)
    return await _native_response(
        services_of(state), request, body.messages, body.model, body.max_tokens, body.mock
    )


@post("/v1/streams/{stream_id:str}/cancel", status_code=202, tags=["stream"], summary="Stop a running stream")
async def cancel_stream(stream_id: FromPath[str], state: State) -> CancelAccepted:
    if not await services_of(state).cancels.request_cancel(stream_id):
        raise ApiError(
            404, f"no running stream with id {stream_id!r}", code="stream_not_found", param="stream_id"
        )
    return CancelAccepted(stream_id=stream_id)
