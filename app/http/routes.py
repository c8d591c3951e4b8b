"""HTTP route handlers: thin glue from decoded requests to sessions and their dialects."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, get, post, route
from litestar.datastructures import State
from litestar.enums import HttpMethod, MediaType
from litestar.params import FromPath

from app import VERSION
from app.errors import INVALID_REQUEST, STREAM_NOT_FOUND
from app.http.auth import request_owner
from app.http.disconnect import unless_gone
from app.http.openapi import openapi_document
from app.http.requests import (
    build_chat_request,
    chat_extra,
    check_query_encoding,
    check_query_names,
    decode_json_body,
    decode_messages_query,
    decode_mock_query,
    query_flag,
    query_int,
)
from app.http.sessions import (
    event_stream_response,
    follow_response,
    open_request_stream,
    refuse_resumable_whole,
    stream_headers,
)
from app.http.state import origins_of, services_of
from app.schemas import (
    CancelAccepted,
    ChatCompletionRequest,
    Health,
    Message,
    ModelCard,
    ModelList,
    StreamRequest,
    UserMessage,
)
from app.stream.consumer import collect
from app.stream.dialects.native import NativeDialect
from app.stream.dialects.openai_chat import CompletionDialect, OpenAIChatDialect
from app.stream.services import Services
from providers.protocol import MockDirectives, Tool, ToolChoice

_chat_decoder = msgspec.json.Decoder(ChatCompletionRequest)
_stream_decoder = msgspec.json.Decoder(StreamRequest)
# `GET /v1/stream`: what the query may hold (the page's EventSource sends no more).
_STREAM_QUERY = frozenset({"prompt", "messages", "model", "max_tokens", "mock", "resumable", "stream_id"})
_EVENTS_QUERY = frozenset({"last_event_id"})


@get(["/schema", "/schema/openapi.json"], include_in_schema=False)
async def openapi_json(state: State) -> Response[bytes]:
    services = services_of(state)
    document = openapi_document(services.settings, forwards_extra=services.provider.forwards_extra)
    return Response(document, media_type=MediaType.JSON)


@get("/healthz", tags=["ops"], summary="Liveness probe")
async def healthz(state: State) -> Health:
    return Health(status="ok", provider=services_of(state).provider.name, version=VERSION)


@get("/v1/models", tags=["openai"], summary="List the models this service can stream from")
async def list_models(state: State) -> ModelList:
    services = services_of(state)
    served = await services.provider.list_models() or (services.settings.default_model,)
    owner = services.provider.name
    return ModelList(data=[ModelCard(id=m, created=services.started, owned_by=owner) for m in served])


@post("/v1/chat/completions", status_code=200, tags=["openai"], summary="OpenAI-compatible chat completions")
async def chat_completions(request: Request[Any, Any, Any], state: State) -> Response[Any]:
    services = services_of(state)
    body = await decode_json_body(request, _chat_decoder, timeout_s=services.settings.request_body_timeout_s)
    refuse_resumable_whole(body.resumable, body.stream)
    chat = build_chat_request(
        services,
        messages=body.messages,
        model=body.model,
        max_tokens=body.max_completion_tokens or body.max_tokens,
        mock=body.mock,
        temperature=body.temperature,
        top_p=body.top_p,
        stop=body.stop,
        seed=body.seed,
        user=body.user,
        n=body.n,
        tools=body.tools,
        tool_choice=body.tool_choice,
        parallel_tool_calls=body.parallel_tool_calls,
        response_format=body.response_format,
        # The body is read by now; Litestar keeps it.
        extra=chat_extra(await request.body(), forwarded=services.provider.forwards_extra),
    )
    stream = await open_request_stream(services, request, chat, "chat.completions", resumable=body.resumable)
    session = stream.session
    completion_id = f"chatcmpl-{session.stream_id}"
    headers = stream_headers(session)
    if body.stream:
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        chunks = OpenAIChatDialect(session, completion_id=completion_id, include_usage=include_usage)
        return await event_stream_response(services, request, stream, chunks, headers=headers)
    whole = CompletionDialect(session, completion_id=completion_id)
    completion = await unless_gone(request.receive, collect(stream, whole))
    return Response(completion, media_type=MediaType.JSON, headers=headers)


async def _native_response(
    services: Services,
    request: Request[Any, Any, Any],
    messages: list[Message],
    model: str | None,
    max_tokens: int | None,
    mock: MockDirectives | None,
    tools: list[Tool] | None = None,
    tool_choice: ToolChoice | None = None,
    *,
    resumable: bool = False,
) -> Response[None]:
    chat = build_chat_request(
        services,
        messages=messages,
        model=model,
        max_tokens=max_tokens,
        mock=mock,
        tools=tools,
        tool_choice=tool_choice,
    )
    stream = await open_request_stream(services, request, chat, "stream", resumable=resumable)
    session = stream.session
    return await event_stream_response(
        services, request, stream, NativeDialect(session), headers=stream_headers(session)
    )


# One handler for both methods: Litestar answers `OPTIONS /v1/stream` with the methods of the first handler
# registered for a path only (`Allow: GET, OPTIONS`), and browsers and clients read that list.
@route("/v1/stream", http_method=[HttpMethod.GET, HttpMethod.POST], status_code=200)
async def stream(request: Request[Any, Any, Any], state: State) -> Response[None]:
    """`GET` for EventSource (the prompt in the query), `POST` for fetch (a JSON body)."""
    if request.method == HttpMethod.GET:
        return await _stream_from_query(request, state)
    return await _stream_from_body(request, state)


async def _stream_from_query(request: Request[Any, Any, Any], state: State) -> Response[None]:
    # A GET needs no CORS preflight: any page could start a stream.
    origins_of(state).refuse_disallowed(request)
    check_query_encoding(request.scope["query_string"])
    params = request.query_params
    check_query_names(params.keys(), _STREAM_QUERY)
    prompt = params.get("prompt")
    conversation = params.get("messages")
    if conversation is not None:
        # A conversation's history (the page's EventSource): the messages, or the prompt, never both.
        if prompt is not None:
            raise INVALID_REQUEST("give either 'prompt' or 'messages', not both", param="prompt")
        messages = decode_messages_query(conversation)
    elif not prompt:
        raise INVALID_REQUEST(
            "the query parameter 'prompt' (or 'messages') is required and must not be empty", param="prompt"
        )
    else:
        messages = [UserMessage(content=prompt)]
    return await _native_response(
        services_of(state),
        request,
        messages,
        params.get("model") or None,
        query_int(params, "max_tokens"),
        decode_mock_query(params.get("mock")),
        resumable=query_flag(params, "resumable"),
    )


async def _stream_from_body(request: Request[Any, Any, Any], state: State) -> Response[None]:
    services = services_of(state)
    body = await decode_json_body(
        request, _stream_decoder, timeout_s=services.settings.request_body_timeout_s
    )
    return await _native_response(
        services,
        request,
        body.messages,
        body.model,
        body.max_tokens,
        body.mock,
        body.tools,
        body.tool_choice,
        resumable=body.resumable,
    )


@post("/v1/streams/{stream_id:str}/cancel", status_code=202, tags=["stream"], summary="Stop a running stream")
async def cancel_stream(
    stream_id: FromPath[str], request: Request[Any, Any, Any], state: State
) -> CancelAccepted:
    services = services_of(state)
    # Another key's stream answers as an unknown one: a 404 tells nothing about streams that are not yours.
    if not await services.cancels.request_cancel(
        stream_id, request_owner(request, services.settings.api_keys)
    ):
        raise STREAM_NOT_FOUND(f"no running stream with id {stream_id!r}", param="stream_id")
    return CancelAccepted(stream_id=stream_id)


@get("/v1/streams/{stream_id:str}/events", tags=["stream"], summary="Resume a resumable stream")
async def stream_events(
    stream_id: FromPath[str], request: Request[Any, Any, Any], state: State
) -> Response[None]:
    """The events after `Last-Event-ID` (what `EventSource` sends on its own reconnect) or
    `?last_event_id=N` (for clients that cannot set headers), then the live ones to the terminal event."""
    check_query_names(request.query_params.keys(), _EVENTS_QUERY)
    header = request.headers.get("last-event-id")
    # The header wins: an EventSource opened on `?last_event_id=N` sends a newer id on its own reconnects.
    raw = header.strip() if header is not None else request.query_params.get("last_event_id")
    after = 0
    if raw:
        if not raw.isascii() or not raw.isdigit():
            raise INVALID_REQUEST(
                f"the last event id must be a whole number, got {raw!r}", param="last_event_id"
            )
        after = int(raw)
    return await follow_response(services_of(state), request, stream_id, after=after)
