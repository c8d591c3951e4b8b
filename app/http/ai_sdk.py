"""`POST /api/chat`: the Vercel AI SDK's UI message stream, so that a `useChat()` front end talks to us.

The path is `DefaultChatTransport`'s default, so a page served from this origin needs no configuration, and
one elsewhere sets `api` to this URL (`CORS_ALLOW_ORIGINS` lets it read the answer).
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
from litestar import Request, post
from litestar.datastructures import State

from app.http.requests import build_chat_request, decode_json_body
from app.http.responses import EventStreamResponse
from app.http.sessions import open_request_stream, stream_headers
from app.http.state import services_of
from app.http.ui_messages import response_message_id, to_messages
from app.schemas_ui import UIChatRequest
from app.stream.dialects.ui_message import UIMessageStreamDialect

DIALECT: Final = "ui-message-stream"
# What the AI SDK's own server helpers send (`UI_MESSAGE_STREAM_HEADERS`): the protocol and its version.
_PROTOCOL_HEADERS: Final = {"x-vercel-ai-ui-message-stream": "v1"}
_decoder = msgspec.json.Decoder(UIChatRequest)


@post("/api/chat", status_code=200, tags=["ai-sdk"], summary="Vercel AI SDK UI message stream (useChat)")
async def ui_chat(request: Request[Any, Any, Any], state: State) -> EventStreamResponse:
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
    stream = await open_request_stream(services, request, chat, DIALECT)
    session = stream.session
    message_id = response_message_id(body.messages, fresh=f"msg-{session.stream_id}")
    dialect = UIMessageStreamDialect(session, message_id=message_id)
    return EventStreamResponse(stream, dialect, headers={**stream_headers(session), **_PROTOCOL_HEADERS})
