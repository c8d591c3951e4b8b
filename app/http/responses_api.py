"""`POST /v1/responses`: the OpenAI Responses API over the same sessions as every other endpoint."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, post
from litestar.datastructures import State
from litestar.enums import MediaType

from app.http.disconnect import unless_gone
from app.http.requests import decode_json_body
from app.http.responses_input import responses_chat_request
from app.http.sessions import (
    event_stream_response,
    open_request_stream,
    refuse_resumable_whole,
    stream_headers,
)
from app.http.state import services_of
from app.schemas_responses import ResponsesRequest
from app.stream.consumer import collect
from app.stream.dialects.responses import ResponseDialect, ResponsesStreamDialect, response_template

_decoder = msgspec.json.Decoder(ResponsesRequest)


@post("/v1/responses", status_code=200, tags=["openai"], summary="OpenAI Responses API")
async def create_response(request: Request[Any, Any, Any], state: State) -> Response[Any]:
    services = services_of(state)
    body = await decode_json_body(request, _decoder, timeout_s=services.settings.request_body_timeout_s)
    refuse_resumable_whole(body.resumable, body.stream)
    chat = responses_chat_request(services, body)
    stream = await open_request_stream(services, request, chat, "responses", resumable=body.resumable)
    session = stream.session
    template = response_template(body, response_id=f"resp_{session.stream_id}", model=chat.model)
    headers = stream_headers(session)
    if body.stream:
        return await event_stream_response(
            services, request, stream, ResponsesStreamDialect(template), headers=headers
        )
    whole = await unless_gone(request.receive, collect(stream, ResponseDialect(template)))
    return Response(whole, media_type=MediaType.JSON, headers=headers)
