"""What every host hands the stream core: settings, the provider, the cancel registry; and new sessions."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field

import msgspec

from app.logs import bind_log_context, log_event
from app.metrics.recorder import StreamMetrics
from app.settings import Settings
from app.stream.cancel import CancelRegistry
from app.stream.limits import Deadline, StreamLimits
from app.stream.log import StreamLog
from app.stream.resumable import RunRegistry
from app.stream.session import StreamSession
from app.trace import log_fields
from providers.protocol import ChatRequest, Provider, TraceContext


@dataclass(frozen=True, slots=True)
class Services:
    """What the handlers need, built once by the app factory."""

    settings: Settings
    provider: Provider
    cancels: CancelRegistry
    stream_log: StreamLog
    started: int
    # The resumable streams this process is producing (`app.stream.resumable`).
    runs: RunRegistry = field(default_factory=RunRegistry)
    # What every session reports its start and end to (`app.metrics`).
    metrics: StreamMetrics = field(default_factory=StreamMetrics)


def open_session(
    services: Services,
    chat: ChatRequest,
    dialect: str,
    *,
    host_deadline: Deadline | None,
    owner: str | None = None,
    resumable: bool = False,
    trace: TraceContext | None = None,
    stream_id: str | None = None,
) -> StreamSession:
    """A session for one generation, with budgets from settings and from the host (Lambda's deadline).

    `owner` identifies the API key that asked (`app.http.auth.owner_of`): only it may cancel the stream.
    `trace` (`app.trace.trace_context` of the request) goes upstream with the request and onto every log
    line of the stream from here on.
    """
    settings = services.settings
    limits = StreamLimits(
        # Per choice: `n` choices may produce `n` times as many tokens.
        max_tokens=(chat.max_tokens or settings.max_tokens_limit) * chat.n,
        idle_timeout_s=settings.stream_idle_timeout_s,
        deadline_s=settings.stream_deadline_s,
        heartbeat_s=settings.heartbeat_interval_s,
        send_timeout_s=settings.stream_send_timeout_s,
        host_deadline=host_deadline,
    )
    # The client's own (`X-Stream-Id`, checked by the caller), so that it can cancel before the first token.
    stream_id = stream_id or secrets.token_hex(12)
    if trace is not None:
        chat = msgspec.structs.replace(chat, trace=trace)
        bind_log_context(log_fields(trace))
    if settings.log_prompts:
        log_event(
            "stream_prompt",
            logging.INFO,
            request_id=stream_id,
            messages=[{"role": m.role, "content": m.text} for m in chat.messages],
        )
    return StreamSession(
        provider=services.provider,
        request=chat,
        stream_id=stream_id,
        dialect=dialect,
        limits=limits,
        cancels=services.cancels,
        owner=owner,
        resumable=resumable,
        metrics=services.metrics,
    )
