"""What every streaming route does: open a session for the request, read ahead to its first event, and
answer with its frames, straight (a plain stream) or through the stream log (a resumable one)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from litestar import Request, Response

from app.errors import DUPLICATE_ID, INVALID_REQUEST, STREAM_NOT_FOUND, stream_log_unavailable
from app.http.auth import request_owner
from app.http.disconnect import unless_gone
from app.http.follow import LogFollowResponse
from app.http.responses import EventStreamResponse
from app.stream.consumer import OpenStream, open_stream
from app.stream.dialects import Dialect
from app.stream.limits import Deadline, host_deadline
from app.stream.log import LoggedStream, StreamLogUnavailable
from app.stream.resumable import ResumableRun
from app.stream.services import Services, open_session
from app.stream.session import StreamSession
from app.trace import trace_context
from providers.protocol import ChatRequest


async def open_request_stream(
    services: Services,
    request: Request[Any, Any, Any],
    chat: ChatRequest,
    dialect: str,
    *,
    resumable: bool = False,
) -> OpenStream:
    """A session for this request (the host's deadline, the caller's key), read ahead to its first event
    unless the client leaves first; a failure before it is raised as its status."""
    session = open_session(
        services,
        chat,
        dialect,
        host_deadline=host_deadline(request.scope),
        owner=request_owner(request, services.settings.api_keys),
        resumable=resumable,
        trace=trace_context(request.headers, request.scope),
        stream_id=chosen_stream_id(services, request),
    )
    return await unless_gone(request.receive, open_stream(session))


# A client's own stream id: long and random enough that nobody else picks it (the page uses 32 hex digits).
_STREAM_ID = re.compile(r"[A-Za-z0-9_-]{16,128}")


def chosen_stream_id(services: Services, request: Request[Any, Any, Any]) -> str | None:
    """The stream id the client chose (`X-Stream-Id`, or `?stream_id=` for `EventSource`), if it did.

    The server's own id reaches the client only with the stream's first event (its headers come with it,
    so that a failure before it is still an HTTP status): a client that may want to cancel while it waits
    for the first token (a Stop on Lambda, where a closed connection is never seen) names the stream itself.
    """
    chosen = request.headers.get("x-stream-id")
    if chosen is None:
        chosen = request.query_params.get("stream_id")
    if chosen is None:
        return None
    if not _STREAM_ID.fullmatch(chosen):
        raise INVALID_REQUEST(
            "X-Stream-Id must be 16 to 128 letters, digits, '-' or '_' (a random value: anyone who knows "
            "it may cancel the stream when no API keys are set)",
            param="X-Stream-Id",
        )
    if services.cancels.is_live(chosen) or services.runs.get(chosen) is not None:
        raise DUPLICATE_ID(f"a stream with id {chosen!r} is still running", param="X-Stream-Id")
    return chosen


async def event_stream_response(
    services: Services,
    request: Request[Any, Any, Any],
    stream: OpenStream,
    frames: Dialect[bytes],
    *,
    headers: dict[str, str],
    chat_id: str | None = None,
) -> Response[None]:
    """The stream's response: its frames as they come, or, for a resumable stream, the stream log read
    by this request while the stream is produced into it (a resume reads the same log)."""
    session = stream.session
    if not session.resumable:
        return EventStreamResponse(stream, frames, headers=headers)
    settings = services.settings
    run = ResumableRun(stream, frames, services.stream_log, grace_s=settings.resume_grace_s)
    await run.start(owner=request_owner(request, settings.api_keys), dialect=session.dialect, chat_id=chat_id)
    services.runs.add(run)
    return LogFollowResponse(
        services.stream_log,
        session.stream_id,
        dialect=session.dialect,
        run=run,
        heartbeat_s=settings.heartbeat_interval_s,
        send_timeout_s=settings.stream_send_timeout_s,
        deadline=reader_deadline(services, request.scope),
        headers=headers,
    )


async def follow_response(
    services: Services,
    request: Request[Any, Any, Any],
    stream_id: str,
    *,
    after: int,
    headers: dict[str, str] | None = None,
) -> Response[None]:
    """A resume: the logged stream's events after id `after`, then the live ones, for its owner only
    (another key's stream answers 404, like an unknown or expired one)."""
    settings = services.settings
    logged = await find_resumable(services, stream_id, request_owner(request, settings.api_keys))
    services.metrics.stream_resumed(stream_id, logged.dialect)
    return LogFollowResponse(
        services.stream_log,
        stream_id,
        dialect=logged.dialect,
        after=after,
        run=services.runs.get(stream_id),
        heartbeat_s=settings.heartbeat_interval_s,
        send_timeout_s=settings.stream_send_timeout_s,
        deadline=reader_deadline(services, request.scope),
        headers={"X-Request-Id": stream_id, "X-Stream-Id": stream_id, **(headers or {})},
    )


async def find_resumable(services: Services, stream_id: str, owner: str | None) -> LoggedStream:
    """The logged stream a resume reads, for its owner only (another key's stream is not found, like an
    unknown or expired one); raises the `ApiError` a resume answers with when there is none to read."""
    try:
        logged = await services.stream_log.find(stream_id, owner)
    except StreamLogUnavailable:
        raise stream_log_unavailable() from None
    if logged is None:
        raise STREAM_NOT_FOUND(
            f"no resumable stream with id {stream_id!r} (unknown, or expired after "
            f"{services.settings.stream_retention_s:g}s)",
            param="stream_id",
        )
    return logged


def reader_deadline(services: Services, scope: Mapping[str, Any]) -> Deadline:
    """When a reader of the log gives up: the host's deadline, else the longest a stream can still live.

    A reader on another instance cannot tell a producer that crashed from a slow one; this bounds it.
    """
    settings = services.settings
    longest = Deadline.after(settings.stream_deadline_s + settings.resume_grace_s)
    host = host_deadline(scope)
    return longest if host is None or host.at > longest.at else host


def refuse_resumable_whole(resumable: bool, stream: bool) -> None:
    """`resumable` is for streams: a whole answer has no events to resume from."""
    if resumable and not stream:
        raise INVALID_REQUEST("`resumable: true` needs `stream: true`", param="resumable")


def stream_headers(session: StreamSession) -> dict[str, str]:
    """The stream's id, for `POST /v1/streams/{id}/cancel` and for finding its log line."""
    return {"X-Request-Id": session.stream_id, "X-Stream-Id": session.stream_id}
