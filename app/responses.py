"""An event-stream response that cancels its producer when the client goes away, and closes it always.

Litestar's own `Stream` stops iterating on disconnect but leaves the async generator to the garbage
collector; here the generator is closed explicitly, so the provider's upstream request ends at once
and the stream's single `stream_end` log line is written before the response returns.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Iterable
from typing import TYPE_CHECKING, Any

from litestar import Response
from litestar.response.base import ASGIResponse

from app.sse import EVENT_STREAM_HEADERS

if TYPE_CHECKING:
    from litestar.app import Litestar
    from litestar.background_tasks import BackgroundTask, BackgroundTasks
    from litestar.connection import Request
    from litestar.datastructures import Cookie
    from litestar.types import Receive, Scope, Send, TypeEncodersMap


class EventStreamResponse(Response[None]):
    """A `text/event-stream` response whose body is an async generator of ready-framed bytes."""

    def __init__(self, body: AsyncGenerator[bytes, None], *, headers: dict[str, str] | None = None) -> None:
        super().__init__(content=None, headers={**EVENT_STREAM_HEADERS, **(headers or {})})
        self.body = body

    def to_asgi_response(
        self,
        app: Litestar | None,
        request: Request[Any, Any, Any],
        *,
        background: BackgroundTask | BackgroundTasks | None = None,
        cookies: Iterable[Cookie] | None = None,
        encoded_headers: Iterable[tuple[bytes, bytes]] | None = None,
        headers: dict[str, str] | None = None,
        is_head_response: bool = False,
        media_type: Any = None,
        status_code: int | None = None,
        type_encoders: TypeEncodersMap | None = None,
    ) -> ASGIResponse:
        merged = {**(headers or {}), **self.headers}
        raw_headers = [
            (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in merged.items()
        ]
        raw_headers.extend(encoded_headers or ())
        return _EventStreamASGI(self.body, raw_headers)


class _EventStreamASGI(ASGIResponse):
    __slots__ = ("_body", "_raw_headers")

    def __init__(self, body: AsyncGenerator[bytes, None], headers: list[tuple[bytes, bytes]]) -> None:
        super().__init__()
        self._body = body
        self._raw_headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        writer = asyncio.create_task(self._write(send))
        listener = asyncio.create_task(_wait_for_disconnect(receive))
        try:
            await asyncio.wait((writer, listener), return_when=asyncio.FIRST_COMPLETED)
        finally:
            listener.cancel()
            if not writer.done():
                writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def _write(self, send: Send) -> None:
        body = self._body
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self._raw_headers})
            async for chunk in body:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await body.aclose()


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
