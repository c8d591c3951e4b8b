"""`frames(..., join=...)`: events already queued share one frame (one write); none waits for another."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from app.stream.cancel.memory import InMemoryCancelRegistry
from app.stream.consumer import frames, open_stream
from app.stream.dialects.native import NativeDialect
from app.stream.limits import StreamLimits
from app.stream.session import StreamSession
from providers.protocol import ChatRequest, StreamItem, TextDelta
from tests.app.helpers import mock_request
from tests.support.timeouts import run_async


class BurstProvider:
    """Yields `burst` deltas without suspending between them (a provider that read several from one
    network read), then one more after `gate` is set, and ends after `end` is set."""

    def __init__(self, burst: int) -> None:
        self.burst = burst
        self.gate = asyncio.Event()
        self.end = asyncio.Event()

    @property
    def name(self) -> str:
        return "burst"

    @property
    def forwards_extra(self) -> bool:
        return False

    def models(self) -> Sequence[str]:
        return ()

    async def list_models(self) -> Sequence[str]:
        return ()

    async def stream_chat(self, request: ChatRequest) -> AsyncIterator[StreamItem]:
        for index in range(self.burst):
            yield TextDelta(f"b{index} ")
        await self.gate.wait()
        yield TextDelta("alone")
        await self.end.wait()

    async def aclose(self) -> None:
        return None


def _session(provider: BurstProvider) -> StreamSession:
    return StreamSession(
        provider=provider,
        request=mock_request("hi"),
        stream_id="batching",
        dialect="stream",
        limits=StreamLimits(max_tokens=100, idle_timeout_s=30, deadline_s=60, heartbeat_s=15),
        cancels=InMemoryCancelRegistry(),
    )


def _deltas(frame: bytes) -> int:
    return frame.count(b"event: delta\n")


def test_queued_events_come_out_as_one_frame_and_a_lone_one_at_once() -> None:
    async def main() -> list[bytes]:
        provider = BurstProvider(burst=6)
        session = _session(provider)
        body = frames(await open_stream(session), NativeDialect(session), join=b"".join)
        out = [await anext(body), await anext(body), await anext(body)]
        # The provider now waits for the gate: the queued deltas came out without waiting for it.
        assert not provider.gate.is_set()
        provider.gate.set()
        out.append(await anext(body))
        # Alone in the queue, so out at once: the provider has not ended yet.
        assert not provider.end.is_set()
        provider.end.set()
        out += [frame async for frame in body]
        return out

    start, first, burst, lone, done = run_async(main)
    assert start.startswith(b"id: 1\nevent: start\n")
    assert _deltas(first) == 1  # read ahead by `open_stream`, before the others were queued
    assert _deltas(burst) == 5
    # Each event of the joined frame keeps its own id, in order.
    assert [line for line in burst.split(b"\n") if line.startswith(b"id: ")] == [
        b"id: %d" % n for n in range(3, 8)
    ]
    assert _deltas(lone) == 1
    assert b"alone" in lone
    assert b"event: done\n" in done


def test_without_join_every_event_is_a_frame_of_its_own() -> None:
    async def main() -> list[bytes]:
        provider = BurstProvider(burst=6)
        provider.gate.set()
        provider.end.set()
        session = _session(provider)
        return [frame async for frame in frames(await open_stream(session), NativeDialect(session))]

    out = run_async(main)
    assert [_deltas(frame) for frame in out] == [0, 1, 1, 1, 1, 1, 1, 1, 0]
