"""The stream log's contract, which every backend meets: tests take `stream_log` and know nothing else.

The fixture lists the backends (tests/app/stream/conftest.py): memory, and DynamoDB where its fixtures can
run one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
import uvloop

from app.stream.log import LoggedStream, StreamLog
from app.stream.log.memory import InMemoryStreamLog
from tests.support.timeouts import run_async


def _event(event_id: int, text: str = "x") -> bytes:
    return b'id: %d\ndata: {"text":"%s"}\n\n' % (event_id, text.encode())


async def _collect(log: StreamLog, stream_id: str, after: int, *, until: float | None = None) -> list[bytes]:
    return [event async for event in log.follow(stream_id, after, until=until)]


def test_a_closed_log_replays_every_event_after_an_id(stream_log: StreamLog) -> None:
    async def body() -> tuple[list[bytes], list[bytes], list[bytes]]:
        await stream_log.open("s1", owner=None, dialect="stream")
        for event_id in range(1, 8):
            await stream_log.append("s1", event_id, _event(event_id))
        await stream_log.close("s1")
        return (
            await _collect(stream_log, "s1", 0),
            await _collect(stream_log, "s1", 5),
            await _collect(stream_log, "s1", 7),
        )

    everything, rest, none = run_async(body, timeout_s=20)

    assert everything == [_event(i) for i in range(1, 8)]
    assert rest == [_event(6), _event(7)]
    assert none == []


def test_a_reader_follows_the_live_stream_to_its_end_without_gap_or_duplicate(stream_log: StreamLog) -> None:
    async def body() -> list[bytes]:
        await stream_log.open("live", owner=None, dialect="responses")
        for event_id in range(1, 4):
            await stream_log.append("live", event_id, _event(event_id))
        reader = asyncio.create_task(_collect(stream_log, "live", 2))
        for event_id in range(4, 30):
            await asyncio.sleep(0.005)
            await stream_log.append("live", event_id, _event(event_id, f"t{event_id}"))
        await stream_log.close("live")
        return await reader

    events = run_async(body, timeout_s=20)

    assert events == [_event(3)] + [_event(i, f"t{i}") for i in range(4, 30)]


def test_a_reader_with_a_deadline_stops_before_the_end(stream_log: StreamLog) -> None:
    async def body() -> tuple[list[bytes], float]:
        await stream_log.open("slow", owner=None, dialect="stream")
        await stream_log.append("slow", 1, _event(1))
        started = time.monotonic()
        events = await _collect(stream_log, "slow", 0, until=started + 0.3)
        return events, time.monotonic() - started

    events, waited_s = run_async(body, timeout_s=20)

    assert events == [_event(1)]
    assert 0.25 <= waited_s < 5


@pytest.mark.parametrize(
    "loop_factory", [asyncio.new_event_loop, uvloop.new_event_loop], ids=["asyncio", "uvloop"]
)
def test_a_reader_with_a_deadline_ends_only_once_the_deadline_has_passed(
    stream_log: StreamLog, loop_factory: Callable[[], asyncio.AbstractEventLoop]
) -> None:
    """By `time.monotonic()`, the clock of `until`, on either loop: the follower compares the end with it to
    decide on its resume hint, and uvloop's millisecond timers may fire a little before it."""

    async def body() -> list[float]:
        await stream_log.open("edge", owner=None, dialect="stream")
        late_by: list[float] = []
        for _ in range(20):
            until = time.monotonic() + 0.013
            await _collect(stream_log, "edge", 0, until=until)
            late_by.append(time.monotonic() - until)
        return late_by

    async def guarded() -> list[float]:
        async with asyncio.timeout(20):
            return await body()

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        late_by = runner.run(guarded())

    assert min(late_by) >= 0


def test_a_stream_is_found_by_its_owner_only(stream_log: StreamLog) -> None:
    async def body() -> list[LoggedStream | None]:
        await stream_log.open("mine", owner="key-a", dialect="chat.completions")
        await stream_log.append("mine", 1, _event(1))
        found = await stream_log.find("mine", "key-a")
        other = await stream_log.find("mine", "key-b")
        anonymous = await stream_log.find("mine", None)
        unknown = await stream_log.find("nope", "key-a")
        await stream_log.close("mine")
        closed = await stream_log.find("mine", "key-a")
        return [found, other, anonymous, unknown, closed]

    found, other, anonymous, unknown, closed = run_async(body, timeout_s=20)

    assert found is not None
    assert (found.stream_id, found.owner, found.dialect, found.closed) == (
        "mine",
        "key-a",
        "chat.completions",
        False,
    )
    assert (other, anonymous, unknown) == (None, None, None)
    assert closed is not None
    assert closed.closed


def test_the_active_stream_of_a_chat_is_the_open_one(stream_log: StreamLog) -> None:
    async def body() -> list[str | None]:
        await stream_log.open("first", owner=None, dialect="ui-message-stream", chat_id="chat-1")
        await stream_log.close("first")
        before = await stream_log.active_for_chat("chat-1", None)
        await stream_log.open("second", owner=None, dialect="ui-message-stream", chat_id="chat-1")
        during = await stream_log.active_for_chat("chat-1", None)
        other_owner = await stream_log.active_for_chat("chat-1", "key-b")
        other_chat = await stream_log.active_for_chat("chat-2", None)
        await stream_log.close("second")
        after = await stream_log.active_for_chat("chat-1", None)
        return [before, during, other_owner, other_chat, after]

    assert run_async(body, timeout_s=20) == [None, "second", None, None, None]


def test_an_event_out_of_order_is_refused(stream_log: StreamLog) -> None:
    async def body() -> None:
        await stream_log.open("gap", owner=None, dialect="stream")
        await stream_log.append("gap", 1, _event(1))
        await stream_log.append("gap", 3, _event(3))

    with pytest.raises(ValueError, match="does not follow"):
        run_async(body, timeout_s=20)


def test_a_closed_memory_log_expires_after_its_retention() -> None:
    log = InMemoryStreamLog(retention_s=0.05)

    async def body() -> tuple[bool, bool]:
        await log.open("old", owner=None, dialect="stream")
        await log.append("old", 1, _event(1))
        await log.close("old")
        kept = await log.find("old", None) is not None
        await asyncio.sleep(0.1)
        return kept, await log.find("old", None) is not None

    assert run_async(body, timeout_s=20) == (True, False)


# --- A producer on one instance, a reader on another (DynamoDB: two instances on one table; memory: one
# process, the same object twice). Writes reach the table in the background, so a reader on another
# instance first waits until it sees the stream, as a resume arriving a moment later would.


async def _until(check: Callable[[], Awaitable[bool]]) -> None:
    """Await a condition another instance's writes make true; the caller's timeout bounds the wait."""
    while not await check():  # noqa: ASYNC110 - the state is in the shared storage: nothing to await
        await asyncio.sleep(0.01)


def _visible(log: StreamLog, stream_id: str, owner: str | None = None) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await log.find(stream_id, owner) is not None

    return check


def test_another_instance_replays_a_closed_log_across_its_batches(
    stream_log_pair: tuple[StreamLog, StreamLog],
) -> None:
    producer, reader = stream_log_pair
    events = [_event(i, f"token-{i:03d}-" + "x" * 60) for i in range(1, 61)]

    async def body() -> tuple[LoggedStream | None, list[bytes], list[bytes], list[bytes]]:
        await producer.open("long", owner="key-a", dialect="stream")
        for event_id, event in enumerate(events, start=1):
            await producer.append("long", event_id, event)
            if event_id % 5 == 0:
                await asyncio.sleep(0.002)  # room for the writer: ~6 KB in several batches, not one
        await producer.close("long")
        return (
            await reader.find("long", "key-a"),
            await _collect(reader, "long", 0),
            await _collect(reader, "long", 37),
            await _collect(reader, "long", 60),
        )

    found, everything, rest, none = run_async(body, timeout_s=20)

    assert found is not None
    assert (found.dialect, found.closed, found.owner) == ("stream", True, "key-a")
    assert everything == events
    assert rest == events[37:]
    assert none == []


def test_another_instance_follows_the_live_stream_to_its_end(
    stream_log_pair: tuple[StreamLog, StreamLog],
) -> None:
    producer, reader = stream_log_pair

    async def body() -> list[bytes]:
        await producer.open("live", owner=None, dialect="chat.completions")
        for event_id in range(1, 4):
            await producer.append("live", event_id, _event(event_id))
        await _until(_visible(reader, "live"))
        following = asyncio.create_task(_collect(reader, "live", 2))
        for event_id in range(4, 41):
            await asyncio.sleep(0.005)
            await producer.append("live", event_id, _event(event_id, f"t{event_id}"))
        await producer.close("live")
        return await following

    events = run_async(body, timeout_s=20)

    assert events == [_event(3)] + [_event(i, f"t{i}") for i in range(4, 41)]


def test_a_reader_on_another_instance_stops_at_its_deadline(
    stream_log_pair: tuple[StreamLog, StreamLog],
) -> None:
    producer, reader = stream_log_pair

    async def body() -> tuple[list[bytes], float]:
        await producer.open("slow", owner=None, dialect="stream")
        await producer.append("slow", 1, _event(1))
        await _until(_visible(reader, "slow"))
        started = time.monotonic()
        # A second, not 0.3 s as above: time for the event's batch to be written and read back too.
        events = await _collect(reader, "slow", 0, until=started + 1.0)
        return events, time.monotonic() - started

    events, waited_s = run_async(body, timeout_s=20)

    assert events == [_event(1)]
    assert 0.95 <= waited_s < 5


def test_another_instance_finds_a_stream_by_its_owner_only(
    stream_log_pair: tuple[StreamLog, StreamLog],
) -> None:
    producer, reader = stream_log_pair

    async def body() -> list[LoggedStream | None]:
        await producer.open("mine", owner="key-a", dialect="responses", chat_id="chat-9")
        await producer.append("mine", 1, _event(1))
        await _until(_visible(reader, "mine", "key-a"))
        found = await reader.find("mine", "key-a")
        other = await reader.find("mine", "key-b")
        anonymous = await reader.find("mine", None)
        unknown = await reader.find("nope", "key-a")
        await producer.close("mine")
        closed = await reader.find("mine", "key-a")
        return [found, other, anonymous, unknown, closed]

    found, other, anonymous, unknown, closed = run_async(body, timeout_s=20)

    assert found == LoggedStream("mine", "key-a", "responses", closed=False, chat_id="chat-9")
    assert (other, anonymous, unknown) == (None, None, None)
    # `close` returns once the closed log is stored: another instance sees it closed at once.
    assert closed == LoggedStream("mine", "key-a", "responses", closed=True, chat_id="chat-9")


def test_another_instance_sees_the_active_stream_of_a_chat(
    stream_log_pair: tuple[StreamLog, StreamLog],
) -> None:
    producer, reader = stream_log_pair

    async def body() -> list[str | None]:
        await producer.open("first", owner="key-a", dialect="ui-message-stream", chat_id="chat-1")
        await producer.close("first")
        before = await reader.active_for_chat("chat-1", "key-a")
        await producer.open("second", owner="key-a", dialect="ui-message-stream", chat_id="chat-1")

        async def second_is_active() -> bool:
            return await reader.active_for_chat("chat-1", "key-a") == "second"

        await _until(second_is_active)
        other_owner = await reader.active_for_chat("chat-1", "key-b")
        anonymous = await reader.active_for_chat("chat-1", None)
        other_chat = await reader.active_for_chat("chat-2", "key-a")
        await producer.close("second")
        after = await reader.active_for_chat("chat-1", "key-a")
        return [before, other_owner, anonymous, other_chat, after]

    assert run_async(body, timeout_s=20) == [None, None, None, None, None]
