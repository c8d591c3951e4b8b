"""What every streaming route does first: open a session for the request and read ahead to its first event."""

from __future__ import annotations

from typing import Any

from litestar import Request

from app.http.auth import request_owner
from app.http.disconnect import unless_gone
from app.stream.consumer import OpenStream, open_stream
from app.stream.limits import host_deadline
from app.stream.services import Services, open_session
from app.stream.session import StreamSession
from providers.protocol import ChatRequest


async def open_request_stream(
    services: Services, request: Request[Any, Any, Any], chat: ChatRequest, dialect: str
) -> OpenStream:
    """A session for this request (the host's deadline, the caller's key), read ahead to its first event
    unless the client leaves first; a failure before it is raised as its status."""
    session = open_session(
        services,
        chat,
        dialect,
        host_deadline=host_deadline(request.scope),
        owner=request_owner(request, services.settings.api_keys),
    )
    return await unless_gone(request.receive, open_stream(session))


def stream_headers(session: StreamSession) -> dict[str, str]:
    """The stream's id, for `POST /v1/streams/{id}/cancel` and for finding its log line."""
    return {"X-Request-Id": session.stream_id, "X-Stream-Id": session.stream_id}
