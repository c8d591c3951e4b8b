"""`OpenAIProvider` chained to this app's own OpenAI-compatible `/v1`, served by uvicorn on 127.0.0.1.

The provider contract runs against it to prove that our endpoint is OpenAI-compatible enough for the
OpenAI SDK, and that closing the provider's stream releases the generation on the serving side.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager

from app.factory import create_app
from app.settings import Settings
from providers.mock import MockProvider
from providers.openai import OpenAIProvider
from providers.protocol import ChatRequest, StreamItem
from tests.support.server import serve


class ObservedMockProvider(MockProvider):
    """The mock, telling other threads whenever one of its streams ends."""

    def __init__(self) -> None:
        super().__init__(token_delay_s=0)
        self._changed = threading.Condition()

    async def stream_chat(self, request: ChatRequest) -> AsyncIterator[StreamItem]:
        items = super().stream_chat(request)
        try:
            async for item in items:
                yield item
        finally:
            await items.aclose()  # type: ignore[attr-defined]
            with self._changed:
                self._changed.notify_all()

    def open_streams(self, *, settle_s: float = 5.0) -> int:
        """Streams still open, once any release already on its way over the socket has landed."""
        with self._changed:
            self._changed.wait_for(lambda: self.active_streams == 0, settle_s)
            return self.active_streams


@contextmanager
def openai_chained_to_this_app() -> Iterator[tuple[OpenAIProvider, Callable[[], int]]]:
    """An `OpenAIProvider` whose upstream is this app (serving the mock), and a count of open mock streams."""
    upstream = ObservedMockProvider()
    with serve(create_app(Settings(mock_token_delay_ms=0), upstream)) as server:
        provider = OpenAIProvider(
            api_key="chained-test-key", base_url=f"{server.base_url}/v1", max_retries=0, timeout_s=10
        )
        yield provider, upstream.open_streams
