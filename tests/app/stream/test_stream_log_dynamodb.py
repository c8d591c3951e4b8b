"""The DynamoDB stream log's own promises, against moto and dynalite (tests/app/stream/conftest.py).

What the contract suite cannot see: how many writes a stream costs, that a failing table never reaches a
stream, that items expire by their `expires_at`, and which reads go to the table and which do not.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from app.factory import build_stream_log
from app.settings import Settings
from app.stream.log import StreamLog, StreamLogUnavailable
from app.stream.log.dynamodb import DynamoDBStreamLog
from app.stream.log.memory import InMemoryStreamLog
from tests.app.stream.conftest import DynamoDBTable
from tests.support.aws import offline_aws
from tests.support.timeouts import run_async

WRITES = ("put_item", "update_item", "batch_write_item", "delete_item")
READS = ("get_item", "batch_get_item", "query", "scan")


def frame(event_id: int, text: str = " word") -> bytes:
    """A delta as the native dialect writes it (~60 bytes)."""
    return b'id: %d\nevent: delta\ndata: {"type":"delta","text":"%b"}\n\n' % (event_id, text.encode())


class CountingClient:
    """A real client (moto's or dynalite's) that counts its calls, and fails those `failing` picks."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.exceptions = client.exceptions
        self.calls: Counter[str] = Counter()
        self.answered = 0
        self.failing: Callable[[str, dict[str, Any]], bool] = lambda name, kwargs: False
        self._lock = threading.Lock()  # boto3 calls run in worker threads

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        def call(**kwargs: Any) -> Any:
            from botocore.exceptions import ClientError

            with self._lock:
                self.calls[name] += 1
            if self.failing(name, kwargs):
                raise ClientError({"Error": {"Code": "InternalServerError", "Message": "down"}}, name)
            result = method(**kwargs)
            with self._lock:
                self.answered += 1
            return result

        return call

    def count(self, names: tuple[str, ...]) -> int:
        with self._lock:
            return sum(self.calls[name] for name in names)


def writes_batch(kwargs: dict[str, Any]) -> bool:
    return "#log#" in kwargs.get("Item", {}).get("stream_id", {}).get("S", "")


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.fields: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.fields.append({"event": record.getMessage(), **getattr(record, "fields", {})})

    def errors(self) -> list[dict[str, Any]]:
        return [r for r in self.fields if r["event"] == "stream_log_error"]


@pytest.fixture
def records() -> Iterator[Records]:
    handler = Records()
    logger = logging.getLogger("tokenrelay")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


async def until(check: Callable[[], Awaitable[bool]] | Callable[[], bool]) -> None:
    """Await a condition that background writes make true; the caller's timeout bounds the wait."""
    while True:
        result = check()
        if await result if isinstance(result, Awaitable) else result:
            return
        await asyncio.sleep(0.01)


async def collect(events: AsyncGenerator[bytes, None]) -> list[bytes]:
    return [event async for event in events]


def stored_events(table: DynamoDBTable, stream_id: str) -> list[bytes]:
    """Every event in the stream's batch items, in batch order, checking that their ids run on."""
    meta = table.item(f"{stream_id}#log")
    assert meta is not None
    events: list[bytes] = []
    for number in range(1, int(meta["batches"]["N"]) + 1):
        batch = table.item(f"{stream_id}#log#{number}")
        assert batch is not None
        assert int(batch["first"]["N"]) == len(events) + 1
        events.extend(bytes(value["B"]) for value in batch["events"]["L"])
    return events


def test_it_is_a_stream_log() -> None:
    log: StreamLog = DynamoDBStreamLog(
        "t-1", retention_s=1, flush_interval_s=1, flush_bytes=1, poll_interval_s=1, client=object()
    )
    assert isinstance(log, StreamLog)
    with pytest.raises(ValueError, match="flush_interval_s must be positive"):
        DynamoDBStreamLog(
            "t-1", retention_s=1, flush_interval_s=0, flush_bytes=1, poll_interval_s=1, client=object()
        )


def test_a_thousand_events_are_tens_of_writes_not_thousands(dynamodb_table: DynamoDBTable) -> None:
    # The defaults (STREAM_LOG_FLUSH_MS=200, STREAM_LOG_FLUSH_BYTES=8192).
    client = CountingClient(dynamodb_table.client())
    log = dynamodb_table.log(client=client, flush_interval_s=0.2, flush_bytes=8192)
    events = [frame(i) for i in range(1, 1001)]

    async def stream(stream_id: str, pause_s: float) -> tuple[int, int]:
        before = client.count(WRITES)
        await log.open(stream_id, owner=None, dialect="stream")
        for event_id, event in enumerate(events, start=1):
            await log.append(stream_id, event_id, event)
            await asyncio.sleep(pause_s)  # 0: the provider still yields to the loop once per token
        during = client.count(WRITES) - before
        await log.close(stream_id)
        return during, client.count(WRITES) - before

    async def body() -> tuple[tuple[int, int], tuple[int, int], float]:
        burst = await stream("burst", 0)
        started = time.monotonic()
        paced = await stream("paced", 0.002)
        return burst, paced, time.monotonic() - started

    (_, burst), (paced_during, paced), paced_s = run_async(body, timeout_s=60)

    assert stored_events(dynamodb_table, "burst") == events
    assert stored_events(dynamodb_table, "paced") == events
    # 60 KB of events: an open, batches of at most 8 KB plus what came during a write, a close.
    assert 3 <= burst <= 30, burst
    # Paced over ~2 s, the batches are written as the stream goes, not at its end: one per 200 ms plus
    # the write's own time (up to 100 ms allowed, for a loaded machine). And still tens. (The timer and
    # the size trigger each have a test of their own below.)
    assert paced_during >= int(paced_s / 0.3), (paced_during, paced_s)
    assert paced <= 40, paced


def test_the_buffer_is_written_once_it_passes_flush_bytes(dynamodb_table: DynamoDBTable) -> None:
    log = dynamodb_table.log(flush_interval_s=60, flush_bytes=1024)  # the timer never fires here

    async def body() -> dict[str, Any] | None:
        await log.open("full", owner=None, dialect="stream")
        for event_id in range(1, 41):
            await log.append("full", event_id, frame(event_id, "x" * 40))
            await asyncio.sleep(0.001)
        await until(lambda: dynamodb_table.item("full#log#1") is not None)
        first = dynamodb_table.item("full#log#1")
        await log.close("full")
        return first

    first = run_async(body, timeout_s=20)

    assert first is not None
    assert int(first["first"]["N"]) == 1
    assert sum(len(value["B"]) for value in first["events"]["L"]) >= 1024
    assert len(stored_events(dynamodb_table, "full")) == 40


def test_the_buffer_is_written_after_flush_interval(dynamodb_table: DynamoDBTable) -> None:
    log = dynamodb_table.log(flush_interval_s=0.2, flush_bytes=1_000_000)  # never full here

    async def body() -> tuple[dict[str, Any] | None, float]:
        await log.open("timed", owner=None, dialect="stream")
        appended = time.monotonic()
        for event_id in range(1, 4):
            await log.append("timed", event_id, frame(event_id))
        await until(lambda: dynamodb_table.item("timed#log#1") is not None)
        waited_s = time.monotonic() - appended
        first = dynamodb_table.item("timed#log#1")
        await log.close("timed")
        return first, waited_s

    first, waited_s = run_async(body, timeout_s=20)

    assert first is not None
    assert [bytes(value["B"]) for value in first["events"]["L"]] == [frame(1), frame(2), frame(3)]
    assert 0.19 <= waited_s < 5  # not before the oldest event is 200 ms old


def test_a_slow_table_delays_neither_open_nor_append(dynamodb_table: DynamoDBTable) -> None:
    client = CountingClient(dynamodb_table.client())
    gate = threading.Event()

    def held(name: str, kwargs: dict[str, Any]) -> bool:
        if not gate.wait(10):
            raise TimeoutError("the test never opened the gate")
        return False

    client.failing = held
    log = dynamodb_table.log(client=client, flush_interval_s=0.01, flush_bytes=256)
    events = [frame(i) for i in range(1, 1001)]

    async def body() -> tuple[int, int, float]:
        started = time.monotonic()
        await log.open("held", owner=None, dialect="stream")
        for event_id, event in enumerate(events, start=1):
            await log.append("held", event_id, event)
            await asyncio.sleep(0)
        appending_s = time.monotonic() - started
        asked, answered = client.count(WRITES), client.answered
        gate.set()
        await log.close("held")
        return asked, answered, appending_s

    asked, answered, appending_s = run_async(body, timeout_s=30)

    # The meta's write was asked for and held at the gate, and all 1,000 appends returned meanwhile.
    assert asked >= 1
    assert answered == 0
    assert appending_s < 5  # (held calls give up after 10 s: an append that waited would take that)
    assert stored_events(dynamodb_table, "held") == events


def test_a_failing_table_never_raises_into_append_or_close(
    dynamodb_table: DynamoDBTable, records: Records
) -> None:
    log = DynamoDBStreamLog(
        "no-such-table",
        retention_s=60,
        flush_interval_s=0.02,
        flush_bytes=256,
        poll_interval_s=0.02,
        client=dynamodb_table.client(),
    )
    events = [frame(i, f"secret-{i}") for i in range(1, 51)]

    async def body() -> tuple[list[bytes], float]:
        await log.open("doomed", owner="key-a", dialect="stream", chat_id="chat-1")
        reader = asyncio.create_task(collect(log.follow("doomed", 0)))
        for event_id, event in enumerate(events, start=1):
            await log.append("doomed", event_id, event)
            await asyncio.sleep(0.002)
        started = time.monotonic()
        await log.close("doomed")
        return await reader, time.monotonic() - started

    read, close_s = run_async(body, timeout_s=20)

    # This instance's own readers are served from memory: they lose nothing.
    assert read == events
    assert close_s < 5
    operations = {r["operation"] for r in records.errors()}
    assert {"open", "flush", "close"} <= operations
    assert {r["exc_type"] for r in records.errors()} == {"ResourceNotFoundException"}
    assert not any("secret-" in repr(r) for r in records.fields)  # never an event in a log line


def test_writes_that_failed_for_a_while_are_retried_without_a_gap(dynamodb_table: DynamoDBTable) -> None:
    client = CountingClient(dynamodb_table.client())
    producer = dynamodb_table.log(client=client, flush_interval_s=0.02, flush_bytes=256)
    reader = dynamodb_table.log()
    events = [frame(i) for i in range(1, 101)]
    down = threading.Event()
    client.failing = lambda name, kwargs: down.is_set() and name == "put_item" and writes_batch(kwargs)

    async def body() -> list[bytes]:
        await producer.open("flaky", owner=None, dialect="stream")
        for event_id, event in enumerate(events, start=1):
            if event_id == 30:
                down.set()
            if event_id == 70:
                down.clear()
            await producer.append("flaky", event_id, event)
            await asyncio.sleep(0.003)
        await producer.close("flaky")
        return await collect(reader.follow("flaky", 0))

    assert run_async(body, timeout_s=20) == events
    assert stored_events(dynamodb_table, "flaky") == events


def test_a_log_missing_its_last_events_is_unavailable_not_complete(dynamodb_table: DynamoDBTable) -> None:
    # The table refused the last batch: a reader must not end the stream there as if it were complete.
    client = CountingClient(dynamodb_table.client())
    producer = dynamodb_table.log(client=client, flush_interval_s=60, flush_bytes=256)
    reader = dynamodb_table.log()
    events = [frame(i, "y" * 30) for i in range(1, 21)]

    async def body() -> tuple[list[bytes], BaseException | None]:
        await producer.open("cut", owner=None, dialect="stream")
        for event_id, event in enumerate(events[:10], start=1):
            await producer.append("cut", event_id, event)
            await asyncio.sleep(0.002)
        await until(lambda: dynamodb_table.item("cut#log#1") is not None)
        client.failing = lambda name, kwargs: name == "put_item" and writes_batch(kwargs)
        for event_id, event in enumerate(events[10:], start=11):
            await producer.append("cut", event_id, event)
        await producer.close("cut")
        read: list[bytes] = []
        try:
            async for event in reader.follow("cut", 0):
                read.append(event)
        except StreamLogUnavailable as exc:
            return read, exc
        return read, None

    read, error = run_async(body, timeout_s=20)

    stored = stored_events(dynamodb_table, "cut")
    assert 0 < len(stored) < 20
    assert read == stored == events[: len(stored)]
    assert isinstance(error, StreamLogUnavailable)
    assert f"ends at event {len(stored)} of 20" in str(error)


def test_reads_of_a_failing_table_raise_stream_log_unavailable(
    dynamodb_table: DynamoDBTable, records: Records
) -> None:
    log = DynamoDBStreamLog(
        "no-such-table",
        retention_s=60,
        flush_interval_s=0.05,
        flush_bytes=1024,
        poll_interval_s=0.02,
        client=dynamodb_table.client(),
    )
    attempts: list[Callable[[], Awaitable[object]]] = [
        lambda: log.find("elsewhere", None),
        lambda: log.active_for_chat("chat-1", None),
        lambda: collect(log.follow("elsewhere", 0)),
    ]
    for attempt in attempts:
        with pytest.raises(StreamLogUnavailable, match="ResourceNotFoundException") as raised:
            run_async(attempt, timeout_s=10)
        assert type(raised.value.__cause__).__name__ == "ResourceNotFoundException"
    assert [r["operation"] for r in records.errors()] == ["find", "active_for_chat", "follow"]


def test_items_expire_by_expires_at_before_dynamodb_deletes_them(dynamodb_table: DynamoDBTable) -> None:
    producer = dynamodb_table.log(retention_s=30, live_ttl_s=600, flush_interval_s=0.02)
    reader = dynamodb_table.log()

    def expires_at(key: str) -> int:
        item = dynamodb_table.item(key)
        assert item is not None, key
        return int(item["expires_at"]["N"])

    async def body() -> tuple[dict[str, int], int, list[object]]:
        opened = time.time()
        await producer.open("crashed", owner=None, dialect="ui-message-stream", chat_id="chat-7")
        await producer.append("crashed", 1, frame(1))
        await until(lambda: dynamodb_table.item("crashed#log#1") is not None)
        live = {
            key: expires_at(key) - round(opened) for key in ("crashed#log", "crashed#log#1", "chat##chat-7")
        }
        found_live = await reader.find("crashed", None) is not None
        active_live = await reader.active_for_chat("chat-7", None)
        # The instance dies here, before its close; its items' time comes (DynamoDB deletes them later).
        client = dynamodb_table.client()
        client.update_item(
            TableName=dynamodb_table.name,
            Key={"stream_id": {"S": "crashed#log"}},
            UpdateExpression="SET expires_at = :past",
            ExpressionAttributeValues={":past": {"N": str(int(time.time()) - 1)}},
        )
        await producer.open("ended", owner=None, dialect="stream")
        closing = time.time()
        await producer.close("ended")
        closed_for = expires_at("ended#log") - round(closing)
        return (
            live,
            closed_for,
            [
                found_live,
                active_live,
                await reader.find("crashed", None),
                await reader.active_for_chat("chat-7", None),
                await collect(reader.follow("crashed", 0)),
            ],
        )

    live, closed_for, seen = run_async(body, timeout_s=20)

    # Live items outlive the longest stream and its retention (600 + 30 s); a closed log, its retention.
    assert all(629 <= seconds <= 632 for seconds in live.values()), live
    assert 29 <= closed_for <= 32, closed_for
    assert seen == [True, "crashed", None, None, []]


def test_a_closed_log_is_gone_for_another_instance_after_its_retention(dynamodb_table: DynamoDBTable) -> None:
    producer = dynamodb_table.log(retention_s=1)
    reader = dynamodb_table.log(retention_s=1)

    async def body() -> tuple[bool, float]:
        await producer.open("brief", owner=None, dialect="stream")
        await producer.append("brief", 1, frame(1))
        await producer.close("brief")
        closed = time.time()
        found = await reader.find("brief", None) is not None

        async def gone() -> bool:
            return await reader.find("brief", None) is None

        await until(gone)
        return found, time.time() - closed

    found, gone_after_s = run_async(body, timeout_s=20)

    assert found
    assert 0.9 <= gone_after_s <= 3.0  # expires_at is whole seconds: between 1 and 2 s after the close


def test_a_remote_reader_polls_for_new_batches_and_the_producers_reader_never_reads_the_table(
    dynamodb_table: DynamoDBTable,
) -> None:
    producing_client, reading_client = (
        CountingClient(dynamodb_table.client()),
        CountingClient(dynamodb_table.client()),
    )
    producer = dynamodb_table.log(client=producing_client, flush_interval_s=0.02)
    reader = dynamodb_table.log(client=reading_client, poll_interval_s=0.02)
    events = [frame(i) for i in range(1, 31)]

    async def body() -> tuple[list[bytes], list[bytes], int]:
        await producer.open("polled", owner=None, dialect="stream")
        await producer.append("polled", 1, events[0])
        await until(lambda: dynamodb_table.item("polled#log#1") is not None)
        here = asyncio.create_task(collect(producer.follow("polled", 0)))
        there = asyncio.create_task(collect(reader.follow("polled", 0)))
        polls_before = reading_client.count(("batch_get_item",))
        for burst in range(3):  # three bursts, each in its own batch, all after the reader started
            await asyncio.sleep(0.15)
            for event_id in range(2 + burst * 10, min(31, 12 + burst * 10)):
                await producer.append("polled", event_id, events[event_id - 1])
        await producer.close("polled")
        return await here, await there, reading_client.count(("batch_get_item",)) - polls_before

    here, there, polls = run_async(body, timeout_s=20)

    assert here == there == events
    assert polls >= 4  # it read the table again and again while the stream went on
    assert producing_client.count(READS) == 0  # the producer's own reader was served from memory


def test_until_ends_a_remote_reader_of_a_stream_that_goes_on(dynamodb_table: DynamoDBTable) -> None:
    producer = dynamodb_table.log(flush_interval_s=0.02)
    reader = dynamodb_table.log(poll_interval_s=0.02)

    async def body() -> tuple[list[bytes], float, int]:
        await producer.open("endless", owner=None, dialect="stream")
        await producer.append("endless", 1, frame(1))
        await until(lambda: dynamodb_table.item("endless#log#1") is not None)
        appended = 1

        async def produce() -> None:
            nonlocal appended
            while True:
                await asyncio.sleep(0.01)
                appended += 1
                await producer.append("endless", appended, frame(appended))

        producing = asyncio.create_task(produce())
        started = time.monotonic()
        read = await collect(reader.follow("endless", 0, until=started + 0.4))
        elapsed = time.monotonic() - started
        producing.cancel()
        await producer.close("endless")
        return read, elapsed, appended

    read, elapsed, appended = run_async(body, timeout_s=20)

    # The log is closed only after the reader returned: had `until` not ended it, it would never have.
    assert 0.35 <= elapsed < 3
    assert read == [frame(i) for i in range(1, len(read) + 1)]  # a prefix: no gap, no duplicate
    assert 1 < len(read) <= appended  # it kept up with the table while it read (it may be level)


def test_the_newest_stream_of_a_chat_wins_across_instances(dynamodb_table: DynamoDBTable) -> None:
    first_instance, second_instance = dynamodb_table.log(), dynamodb_table.log()

    async def body() -> tuple[str | None, str | None]:
        await first_instance.open("older", owner="key-a", dialect="ui-message-stream", chat_id="chat-3")
        await until(lambda: dynamodb_table.item("chat#key-a#chat-3") is not None)
        await second_instance.open("newer", owner="key-a", dialect="ui-message-stream", chat_id="chat-3")

        async def newer_written() -> bool:
            item = dynamodb_table.item("chat#key-a#chat-3")
            return item is not None and item["stream"]["S"] == "newer"

        await until(newer_written)
        # The first instance still streams "older", but the chat has moved on to "newer".
        seen_by_first = await first_instance.active_for_chat("chat-3", "key-a")
        seen_by_second = await second_instance.active_for_chat("chat-3", "key-a")
        await first_instance.close("older")
        await second_instance.close("newer")
        return seen_by_first, seen_by_second

    assert run_async(body, timeout_s=20) == ("newer", "newer")


def test_the_settings_choose_the_log(monkeypatch: pytest.MonkeyPatch) -> None:
    with offline_aws(monkeypatch):
        dynamodb = build_stream_log(Settings(stream_table="tokenrelay-cancels", stream_log_flush_s=0.1))
        in_memory = build_stream_log(Settings())

    assert isinstance(dynamodb, DynamoDBStreamLog)
    assert isinstance(in_memory, InMemoryStreamLog)
