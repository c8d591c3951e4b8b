"""The in-memory cancel registry: live streams only, cancels remembered until release."""

from __future__ import annotations

from app.stream.cancel import CancelRegistry
from app.stream.cancel.memory import InMemoryCancelRegistry
from tests.support.timeouts import run_async


def test_the_registry_tells_live_streams_from_typos() -> None:
    async def body() -> None:
        registry = InMemoryCancelRegistry()
        assert isinstance(registry, CancelRegistry)
        assert 0 < registry.poll_interval_s <= 1

        assert not await registry.request_cancel("s1")
        await registry.register("s1")
        await registry.register("s2")
        assert registry.live_streams == 2
        assert not await registry.is_cancelled("s1")

        assert await registry.request_cancel("s1")
        assert await registry.is_cancelled("s1")
        assert not await registry.is_cancelled("s2")

        await registry.release("s1")
        assert registry.live_streams == 1
        assert not await registry.is_cancelled("s1")
        assert not await registry.request_cancel("s1")
        await registry.release("never-registered")
        assert registry.live_streams == 1

    run_async(body, timeout_s=5)


def test_a_stream_is_cancelled_only_by_its_owner() -> None:
    async def body() -> None:
        registry = InMemoryCancelRegistry()
        await registry.register("s1", "owner-a")
        await registry.register("s2")

        assert not await registry.request_cancel("s1", "owner-b")
        assert not await registry.request_cancel("s1")
        assert not await registry.is_cancelled("s1")
        assert await registry.request_cancel("s1", "owner-a")
        assert await registry.is_cancelled("s1")
        assert not await registry.request_cancel("s2", "owner-a")  # a keyless stream is no key's
        assert await registry.request_cancel("s2")

    run_async(body, timeout_s=5)
