"""`WS /v1/ws`: many prompts over one WebSocket, each a supervised `StreamSession`.

The server answers with the same event Structs as `/v1/stream` (`start`, `delta`, `done`, `error`), each
carrying the `id` the client chose for its prompt. WebSockets need a long-lived ASGI server (local,
containers): Lambda function URLs do not carry them, so there the page uses its SSE transports.

Auth is done here rather than by `ApiKeyGuard`: a guard runs before the handshake completes, so it could
neither accept a key sent in the first message nor tell the browser why it refused (a browser sees a refused
handshake only as close code 1006).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Annotated, Any, Final

import msgspec
from litestar import WebSocket, websocket
from litestar.datastructures import State
from litestar.exceptions import WebSocketDisconnect

from app.errors import (
    CROSS_ORIGIN,
    DUPLICATE_ID,
    REQUEST_TOO_LARGE,
    STREAM_NOT_FOUND,
    TOO_MANY_STREAMS,
    ApiError,
    cancelled_error,
)
from app.http.auth import bearer_token, key_matches, owner_of, unauthorized
from app.http.origins import OriginPolicy
from app.http.requests import build_chat_request, decode_json
from app.http.state import origins_of, services_of
from app.logs import log_event
from app.schemas import ErrorEvent, Messages, ModelId, PositiveInt, Tools
from app.stream.consumer import frames, open_stream
from app.stream.dialects.websocket import WebSocketDialect, message
from app.stream.limits import host_deadline
from app.stream.services import Services, open_session
from app.stream.session import StreamSession
from app.trace import trace_context
from providers.protocol import MockDirectives, ToolChoice

# 4000 + the HTTP status, the convention Litestar itself uses for application close codes.
CLOSE_UNAUTHORIZED: Final = 4401
CLOSE_FORBIDDEN: Final = 4403
AUTH_TIMEOUT_S: Final = 10.0
MAX_IN_FLIGHT: Final = 16

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
    mock: MockDirectives | None = None


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


ClientMessage = PromptMessage | CancelMessage | AuthMessage


class _AnyId(msgspec.Struct):
    id: Any = None


_message_decoder: msgspec.json.Decoder[ClientMessage] = msgspec.json.Decoder(ClientMessage)
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
        elif isinstance(message, CancelMessage):
            await self._cancel(message.id)
        else:
            keys = self._services.settings.api_keys
            if keys and not key_matches(message.api_key, keys):
                raise _unauthorized("invalid API key")

    async def _start(self, message: PromptMessage) -> None:
        prompt_id = message.id
        running = self._prompts.get(prompt_id)
        if running is not None and not running.done():
            error = DUPLICATE_ID(f"a prompt with id {prompt_id!r} is still running", param="id")
            await self._send_error(error, prompt_id)
            return
        if sum(not task.done() for task in self._prompts.values()) >= MAX_IN_FLIGHT:
            error = TOO_MANY_STREAMS(f"at most {MAX_IN_FLIGHT} prompts may run at once on one socket")
            await self._send_error(error, prompt_id)
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
            trace=trace_context(self._socket.headers, self._socket.scope),
        )
        task = asyncio.create_task(self._stream(prompt_id, session), name=f"ws-{session.stream_id}")
        # A task cancelled before its first step never runs its coroutine, so the session never logs.
        task.add_done_callback(lambda _: session.end_unstarted())
        self._prompts[prompt_id] = task

    async def _stream(self, prompt_id: str, session: StreamSession) -> None:
        """Relay one session's events; cancelling this task closes the session, which cancels the provider."""
        try:
            try:
                stream = await open_stream(session)
            except ApiError as exc:
                # As on `/v1/stream`, a failure before the first token comes without a `start`.
                await self._send_error(exc, prompt_id)
                return
            async for text in frames(stream, WebSocketDialect(session, prompt_id=prompt_id)):
                await self._send_text(text)
        except (WebSocketDisconnect, OSError):
            return  # the client is gone; the receive loop notices and cancels the other prompts
        finally:
            if self._prompts.get(prompt_id) is asyncio.current_task():
                del self._prompts[prompt_id]

    async def _cancel(self, prompt_id: str) -> None:
        task = self._prompts.get(prompt_id)
        if task is None or task.done():
            await self._send_error(
                STREAM_NOT_FOUND(f"no running prompt with id {prompt_id!r}", param="id"), prompt_id
            )
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
