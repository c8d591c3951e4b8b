"""`POST /api/chat`: the Vercel AI SDK's UI message stream, so that a `useChat()` front end talks to us.

The path is `DefaultChatTransport`'s default, so a page served from this origin needs no configuration, and
one elsewhere sets `api` to this URL (`CORS_ALLOW_ORIGINS` lets it read the answer).
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.params import FromPath

from app.errors import stream_log_unavailable
from app.http.auth import request_owner
from app.http.requests import build_chat_request, decode_json_body
from app.http.sessions import event_stream_response, follow_response, open_request_stream, stream_headers
from app.http.state import services_of
from app.http.ui_messages import response_message_id, to_messages
from app.schemas_ui import UIChatRequest
from app.stream.dialects.ui_message import UIMessageStreamDialect
from app.stream.log import StreamLogUnavailable

DIALECT: Final = "ui-message-stream"
# What the AI SDK's own server helpers send (`UI_MESSAGE_STREAM_HEADERS`): the protocol and its version.
_PROTOCOL_HEADERS: Final = {"x-vercel-ai-ui-message-stream": "v1"}
_decoder = msgspec.json.Decoder(UIChatRequest)


@post("/api/chat", status_code=200, tags=["ai-sdk"], summary="Vercel AI SDK UI message stream (useChat)")
async def ui_chat(request: Request[Any, Any, Any], state: State) -> Response[None]:
    services = services_of(state)
    body = await decode_json_body(request, _decoder, timeout_s=services.settings.request_body_timeout_s)
    chat = build_chat_request(
        services,
        messages=to_messages(body.messages, system=body.system),
        model=body.model,
        max_tokens=body.max_tokens,
        mock=body.mock,
        temperature=body.temperature,
        top_p=body.top_p,
        tools=body.tools,
        tool_choice=body.tool_choice,
    )
    stream = await open_request_stream(services, request, chat, DIALECT, resumable=body.resumable)
    session = stream.session
    message_id = response_message_id(body.messages, fresh=f"msg-{session.stream_id}")
    dialect = UIMessageStreamDialect(session, message_id=message_id)
    headers = {**stream_headers(session), **_PROTOCOL_HEADERS}
    return await event_stream_response(services, request, stream, dialect, headers=headers, chat_id=body.id)


@get("/api/chat/{chat_id:str}/stream", tags=["ai-sdk"], summary="Resume a chat's stream (useChat resume)")
async def resume_ui_chat(
    chat_id: FromPath[str], request: Request[Any, Any, Any], state: State
) -> Response[Any]:
    """`DefaultChatTransport.reconnectToStream`: the chat's stream still being produced, from its start
    (the SDK rebuilds the message from the whole stream), or 204 when the chat has none."""
    services = services_of(state)
    owner = request_owner(request, services.settings.api_keys)
    try:
        stream_id = await services.stream_log.active_for_chat(chat_id, owner)
    except StreamLogUnavailable:
        raise stream_log_unavailable() from None
    if stream_id is None:
        return Response(None, status_code=204)
    return await follow_response(services, request, stream_id, after=0, headers=_PROTOCOL_HEADERS)
