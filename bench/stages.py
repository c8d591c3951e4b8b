"""Where a token's time goes on `/v1/stream`: the pipeline built up one stage at a time, in-process.

1. the provider alone (the mock at zero delay suspends once per token, as every provider must);
2. the same provider in its own task, handing tokens over a buffer with a future: the least any design
   pays that keeps the provider in a task of its own (what lets heartbeats, budgets and cancel checks
   fire without cancelling the provider mid-read);
3. our `StreamSession.events()` (that, plus budgets, timers and cancel checks);
4. plus the consumer loop driving the native dialect (`frames(stream, NativeDialect)`);
5. plus the event-stream response's writer task (no Litestar);
and, for reference, the bare ASGI app and the whole of ours are measured by `bench.overhead`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from app.http.responses import EventStreamResponse
from app.stream.cancel.memory import InMemoryCancelRegistry
from app.stream.consumer import frames, open_stream
from app.stream.dialects.native import NativeDialect
from app.stream.limits import StreamLimits
from app.stream.session import StreamSession
from providers.protocol import ChatRequest, Provider

Stage = Callable[[Provider, ChatRequest], Awaitable[None]]


async def provider_alone(provider: Provider, request: ChatRequest) -> None:
    async for _ in provider.stream_chat(request):
        pass


async def task_handoff(provider: Provider, request: ChatRequest) -> None:
    loop = asyncio.get_running_loop()
    items: deque[object] = deque()
    waiting: list[asyncio.Future[None]] = []
    finished = object()

    def hand_over(item: object) -> None:
        items.append(item)
        if waiting:
            waiting.pop().set_result(None)

    async def pump() -> None:
        async for item in provider.stream_chat(request):
            hand_over(item)
        hand_over(finished)

    task = asyncio.create_task(pump())
    while True:
        if not items:
            waiter = loop.create_future()
            waiting.append(waiter)
            await waiter
        if items.popleft() is finished:
            break
    await task


def _session(provider: Provider, request: ChatRequest) -> StreamSession:
    limits = StreamLimits(
        max_tokens=request.max_tokens or 4096, idle_timeout_s=60.0, deadline_s=300.0, heartbeat_s=15.0
    )
    return StreamSession(
        provider=provider,
        request=request,
        stream_id="stages",
        dialect="stream",
        limits=limits,
        cancels=InMemoryCancelRegistry(),
    )


async def session(provider: Provider, request: ChatRequest) -> None:
    async for _ in _session(provider, request).events():
        pass


async def framed(provider: Provider, request: ChatRequest) -> None:
    session = _session(provider, request)
    async for _ in frames(await open_stream(session), NativeDialect(session)):
        pass


async def response_writer(provider: Provider, request: ChatRequest) -> None:
    session = _session(provider, request)
    response = EventStreamResponse(await open_stream(session), NativeDialect(session))
    asgi = response.to_asgi_response(None, None)  # type: ignore[arg-type]  # no request needed here
    finished = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            finished.set()

    await asgi({}, receive, send)  # type: ignore[arg-type]


STAGES: dict[str, Stage] = {
    "provider alone": provider_alone,
    "+ provider in its own task (minimal handoff)": task_handoff,
    "+ our session (budgets, timers, cancel checks)": session,
    "+ SSE framing (consumer loop, native dialect)": framed,
    "+ response writer task (no Litestar)": response_writer,
}


async def time_stage(stage: Stage, provider: Provider, request: ChatRequest, tokens: int) -> float:
    """µs per token of one run."""
    started = time.perf_counter()
    await stage(provider, request)
    return (time.perf_counter() - started) / tokens * 1e6
