"""`WS /v1/ws`: many prompts over one WebSocket, each a supervised `StreamSession`.

The server answers with the same event Structs as `/v1/stream` (`start`, `delta`, `done`, `error`), each
carrying the `id` the client chose for its prompt. A prompt sent with `"resumable": true` is produced into
the stream log like a resumable `/v1/stream` (it goes on when its socket drops); its messages carry the
log's `event_id`, and a `resume` message on a new socket replays what came after it, then follows the live
stream, with the same ids. WebSockets need a long-lived ASGI server (local,
containers): Lambda function URLs do not carry them, so there the page uses its SSE transports.

Auth is done here rather than by `ApiKeyGuard`: a guard runs before the handshake completes, so it could
neither accept a key sent in the first message nor tell the browser why it refused (a browser sees a refused
handshake only as close code 1006).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Final

import msgspec
from litestar import WebSocket, websocket
from litestar.datastructures import State
from litestar.exceptions import WebSocketDisconnect

from app.errors import (
    CROSS_ORIGIN,
    DUPLICATE_ID,
    INVALID_REQUEST,
    REQUEST_TOO_LARGE,
    STREAM_NOT_FOUND,
    TOO_MANY_STREAMS,
    ApiError,
    cancelled_error,
)
from app.http.auth import bearer_token, key_matches, owner_of, unauthorized
from app.http.origins import OriginPolicy
from app.http.requests import build_chat_request, decode_json
from app.http.sessions import find_resumable, reader_deadline
from app.http.state import origins_of, services_of
from app.logs import log_event
from app.schemas import DoneEvent, ErrorEvent, Messages, ModelId, PositiveInt, Tools
from app.stream.consumer import OpenStream, frames, open_stream
from app.stream.dialects.native import NativeDialect
from app.stream.dialects.websocket import WebSocketDialect, logged_message, message
from app.stream.limits import host_deadline
from app.stream.log import StreamLogUnavailable
from app.stream.resumable import ResumableRun
from app.stream.services import Services, open_session
from app.stream.session import StreamSession
from app.trace import trace_context
from providers.protocol import MockDirectives, ToolChoice

# 4000 + the HTTP status, the convention Litestar itself uses for application close codes.
CLOSE_UNAUTHORIZED: Final = 4401
CLOSE_FORBIDDEN: Final = 4403
AUTH_TIMEOUT_S: Final = 10.0
MAX_IN_FLIGHT: Final = 16
# A resumable prompt's log holds `/v1/stream` events, so it is resumable over SSE as well.
_LOGGED_DIALECT: Final = "stream"

PromptId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class PromptMessage(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="prompt", forbid_unknown_fields=True
):
    """Client → server: start a generation; every event answering it carries `id`."""

    id: PromptId
    messages: Messages
    model: ModelId | None = None
    max_tokens: PositiveInt | None = None
    tools: Tools | None = None
    tool_choice: ToolChoice | None = None
    # Keep the stream in the stream log, so that it survives the socket (`resume`).
    resumable: bool = False
    mock: MockDirectives | None = None


class ResumeMessage(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="resume", forbid_unknown_fields=True
):
    """Client → server: go on with a resumable stream after event `last_event_id` (0: from its start),
    as prompt `id` on this socket. The server sends the same message when it stops following a stream
    before its end (its log unreadable for now, or the reader's deadline), to say how to go on."""

    id: PromptId
    stream_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    last_event_id: Annotated[int, msgspec.Meta(ge=0)] = 0


class CancelMessage(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="cancel", forbid_unknown_fields=True
):
    """Client → server: stop the generation with this `id`."""

    id: PromptId


class AuthMessage(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="auth", forbid_unknown_fields=True
):
    """Client → server, first message: the API key, for clients that cannot put it in the URL."""

    api_key: str


ClientMessage = PromptMessage | ResumeMessage | CancelMessage | AuthMessage


class _AnyId(msgspec.Struct):
    id: Any = None


_message_decoder: msgspec.json.Decoder[ClientMessage] = msgspec.json.Decoder(ClientMessage)
_encode = msgspec.json.Encoder().encode
_decode_id = msgspec.json.Decoder(_AnyId).decode


def decode_client_message(raw: str | bytes) -> ClientMessage:
    """Decode one client message, or raise `ApiError` naming the field at fault."""
    return decode_json(_message_decoder, raw, "the message")


def prompt_id_of(raw: str | bytes) -> str | None:
    """The `id` of a message that failed validation, if it has a usable one, to address the error to."""
    try:
        candidate = _decode_id(raw).id
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None
    return candidate if isinstance(candidate, str) and candidate else None


class _Refused(Exception):
    """Raised when a socket may not be used; it is told why, then closed with `code`."""

    def __init__(self, reason: str, *, code: int, error: ApiError) -> None:
        super().__init__(reason)
        self.code = code
        self.error = error


def _unauthorized(reason: str) -> _Refused:
    return _Refused(reason, code=CLOSE_UNAUTHORIZED, error=unauthorized(reason))


class _SocketSession:
    """One WebSocket: reads client messages in order and runs each prompt in its own task."""

    def __init__(self, socket: WebSocket[Any, Any, Any], services: Services, origins: OriginPolicy) -> None:
        self._socket = socket
        self._services = services
        self._origins = origins
        self._send_lock = asyncio.Lock()
        self._prompts: dict[str, asyncio.Task[None]] = {}
        # The stream id of each running resumable prompt: a cancel must stop its run, not only its reader.
        self._resumable: dict[str, str] = {}
        self._owner: str | None = None  # the key's digest, once authenticated (keys on)

    async def run(self) -> None:
        await self._socket.accept()
        try:
            headers = self._socket.headers
            if not self._origins.allows(headers.get("origin"), headers.get("host")):
                reason = "cross-origin WebSocket refused"
                raise _Refused(reason, code=CLOSE_FORBIDDEN, error=CROSS_ORIGIN(reason))
            await self._authenticate()
            while (raw := await self._receive()) is not None:
                await self._handle(raw)
        except _Refused as exc:
            reason = str(exc)
            log_event("ws_refused", logging.WARNING, reason=reason, code=exc.code)
            with contextlib.suppress(WebSocketDisconnect, OSError):
                await self._send_error(exc.error, None)
                await self._socket.close(code=exc.code, reason=reason)
        finally:
            await self._cancel_all()

    async def _receive(self) -> str | bytes | None:
        """The next message's payload, or None once the client has gone."""
        message = await self._socket.receive()
        if message["type"] != "websocket.receive":
            return None
        text: str | None = message.get("text")
        return text if text is not None else message.get("bytes") or b""

    async def _authenticate(self) -> None:
        keys = self._services.settings.api_keys
        if not keys:
            return
        offered = bearer_token(self._socket.headers.get("authorization"))
        if offered is None:
            offered = self._socket.query_params.get("api_key")
        if offered is None:
            try:
                async with asyncio.timeout(AUTH_TIMEOUT_S):
                    raw = await self._receive()
            except TimeoutError:
                raise _unauthorized(f"no API key within {AUTH_TIMEOUT_S:g}s") from None
            if raw is None:
                raise _unauthorized("closed before authenticating")
            first: ClientMessage | None
            try:
                first = decode_client_message(raw)
            except ApiError:
                first = None
            if not isinstance(first, AuthMessage):
                raise _unauthorized('missing API key: use ?api_key= or send {"type":"auth"} first')
            offered = first.api_key
        if not key_matches(offered, keys):
            raise _unauthorized("invalid API key")
        self._owner = owner_of(offered)

    async def _handle(self, raw: str | bytes) -> None:
        if len(raw) > self._services.settings.max_body_bytes:
            error = REQUEST_TOO_LARGE("the message is larger than MAX_BODY_BYTES")
            await self._send_error(error, prompt_id_of(raw))
            return
        try:
            message = decode_client_message(raw)
        except ApiError as exc:
            await self._send_error(exc, prompt_id_of(raw))
            return
        if isinstance(message, PromptMessage):
            await self._start(message)
        elif isinstance(message, ResumeMessage):
            await self._resume(message)
        elif isinstance(message, CancelMessage):
            await self._cancel(message.id)
        else:
            keys = self._services.settings.api_keys
            if keys and not key_matches(message.api_key, keys):
                raise _unauthorized("invalid API key")

    async def _refuse_new(self, prompt_id: str) -> bool:
        """Whether `prompt_id` may not start now (told why): still running, or too many are."""
        running = self._prompts.get(prompt_id)
        if running is not None and not running.done():
            error = DUPLICATE_ID(f"a prompt with id {prompt_id!r} is still running", param="id")
            await self._send_error(error, prompt_id)
            return True
        if sum(not task.done() for task in self._prompts.values()) >= MAX_IN_FLIGHT:
            error = TOO_MANY_STREAMS(f"at most {MAX_IN_FLIGHT} prompts may run at once on one socket")
            await self._send_error(error, prompt_id)
            return True
        return False

    async def _start(self, message: PromptMessage) -> None:
        prompt_id = message.id
        if await self._refuse_new(prompt_id):
            return
        services = self._services
        try:
            chat = build_chat_request(
                services,
                messages=message.messages,
                model=message.model,
                max_tokens=message.max_tokens,
                mock=message.mock,
                tools=message.tools,
                tool_choice=message.tool_choice,
            )
        except ApiError as exc:
            await self._send_error(exc, prompt_id)
            return
        session = open_session(
            services,
            chat,
            "ws",
            host_deadline=host_deadline(self._socket.scope),
            owner=self._owner,
            resumable=message.resumable,
            trace=trace_context(self._socket.headers, self._socket.scope),
        )
        relay = self._stream_resumable if message.resumable else self._stream
        task = asyncio.create_task(
            self._relay(prompt_id, lambda: relay(prompt_id, session)), name=f"ws-{session.stream_id}"
        )
        # A task cancelled before its first step never runs its coroutine, so the session never logs.
        task.add_done_callback(lambda _: session.end_unstarted())
        self._track(prompt_id, task, session.stream_id if message.resumable else None)

    def _track(self, prompt_id: str, task: asyncio.Task[None], stream_id: str | None) -> None:
        self._prompts[prompt_id] = task
        if stream_id is not None:
            self._resumable[prompt_id] = stream_id

    def _untrack(self, prompt_id: str) -> None:
        if self._prompts.get(prompt_id) is asyncio.current_task():
            del self._prompts[prompt_id]
            self._resumable.pop(prompt_id, None)

    async def _relay(self, prompt_id: str, relay: Callable[[], Awaitable[None]]) -> None:
        """One prompt's task: its relay, ended quietly when the client is gone, untracked however it ends.

        (The relay is called here, not before: a task cancelled before its first step never runs this.)
        """
        try:
            await relay()
        except (WebSocketDisconnect, OSError):
            return  # the client is gone; the receive loop notices and cancels the other prompts
        finally:
            self._untrack(prompt_id)

    async def _open(self, prompt_id: str, session: StreamSession) -> OpenStream | None:
        """The session read ahead to its first event; or None, once a failure before it is told (as on
        `/v1/stream`, such a failure comes without a `start`)."""
        try:
            return await open_stream(session)
        except ApiError as exc:
            await self._send_error(exc, prompt_id)
            return None

    async def _stream(self, prompt_id: str, session: StreamSession) -> None:
        """Relay one session's events; cancelling this task closes the session, which cancels the provider."""
        stream = await self._open(prompt_id, session)
        if stream is not None:
            async for text in frames(stream, WebSocketDialect(session, prompt_id=prompt_id)):
                await self._send_text(text)

    async def _stream_resumable(self, prompt_id: str, session: StreamSession) -> None:
        """Produce the session into the stream log (a run of its own, which outlives this socket) and
        relay the log; cancelling this task only detaches this socket from the run."""
        stream = await self._open(prompt_id, session)
        if stream is not None:
            run = await self._start_run(stream)
            await self._follow(prompt_id, run.stream_id, after=0, run=run)

    async def _start_run(self, stream: OpenStream) -> ResumableRun:
        services = self._services
        run = ResumableRun(
            stream,
            NativeDialect(stream.session),
            services.stream_log,
            grace_s=services.settings.resume_grace_s,
        )
        try:
            await run.start(owner=self._owner, dialect=_LOGGED_DIALECT)
        except BaseException:
            await stream.aclose()  # cancelled before the run owned the session: end it here
            raise
        services.runs.add(run)
        return run

    async def _resume(self, message: ResumeMessage) -> None:
        prompt_id, stream_id = message.id, message.stream_id
        if await self._refuse_new(prompt_id):
            return
        services = self._services
        try:
            logged = await find_resumable(services, stream_id, self._owner)
        except ApiError as exc:
            await self._send_error(exc, prompt_id)
            return
        if logged.dialect != _LOGGED_DIALECT:
            error = INVALID_REQUEST(
                f"stream {stream_id!r} is a {logged.dialect!r} stream: resume it with "
                f"GET /v1/streams/{stream_id}/events",
                param="stream_id",
            )
            await self._send_error(error, prompt_id)
            return
        services.metrics.stream_resumed(stream_id, "ws")
        run = services.runs.get(stream_id)
        after = message.last_event_id
        task = asyncio.create_task(
            self._relay(prompt_id, lambda: self._follow(prompt_id, stream_id, after=after, run=run)),
            name=f"ws-resume-{stream_id}",
        )
        self._track(prompt_id, task, stream_id)

    async def _follow(self, prompt_id: str, stream_id: str, *, after: int, run: ResumableRun | None) -> None:
        """Relay the logged events after `after`, then the live ones, to the terminal event; a reader
        that stops before it (log unreadable, deadline) sends the `resume` message to go on with."""
        services = self._services
        until = reader_deadline(services, self._socket.scope).at
        last_id, ended = after, False
        if run is not None:
            run.attach()
        events = services.stream_log.follow(stream_id, after, until=until)
        try:
            async for logged in events:
                payload, text = logged_message(logged, prompt_id=prompt_id)
                await self._send_text(text)
                last_id = payload.event_id or last_id
                ended = isinstance(payload, DoneEvent | ErrorEvent)
        except StreamLogUnavailable:
            log_event("stream_log_unreadable", logging.WARNING, stream_id=stream_id)
        finally:
            await events.aclose()
            if run is not None:
                run.detach()
        if not ended:
            hint = ResumeMessage(id=prompt_id, stream_id=stream_id, last_event_id=last_id)
            await self._send_text(_encode(hint).decode())

    async def _cancel(self, prompt_id: str) -> None:
        task = self._prompts.get(prompt_id)
        if task is None or task.done():
            await self._send_error(
                STREAM_NOT_FOUND(f"no running prompt with id {prompt_id!r}", param="id"), prompt_id
            )
            return
        stream_id = self._resumable.get(prompt_id)
        # A resumable prompt: stop its run (wherever it runs: the cancel registry reaches every instance);
        # its `cancelled` error is logged as the stream's terminal event, which this socket's reader relays.
        if stream_id is not None and await self._services.cancels.request_cancel(stream_id, self._owner):
            await asyncio.wait((task,))
            return
        task.cancel()
        # Wait until the session has closed (provider cancelled, `stream_end` logged), so no delta for this
        # id can follow the `cancelled` error.
        await asyncio.wait((task,))
        await self._send_error(cancelled_error(), prompt_id)

    async def _cancel_all(self) -> None:
        tasks = [task for task in self._prompts.values() if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self._prompts.clear()
        self._resumable.clear()

    async def _send_error(self, error: ApiError, prompt_id: str | None) -> None:
        await self._send_text(message(ErrorEvent(error=error.detail, id=prompt_id)))

    async def _send_text(self, text: str) -> None:
        # One writer at a time: prompts run concurrently, and a frame must not interleave with another.
        async with self._send_lock:
            await self._socket.send_text(text)


@websocket("/v1/ws", name="stream_socket")
async def stream_socket(socket: WebSocket[Any, Any, Any], state: State) -> None:
    """`WS /v1/ws`: prompts and cancels in, `start`/`delta`/`done`/`error` out, matched by `id`."""
    await _SocketSession(socket, services_of(state), origins_of(state)).run()
