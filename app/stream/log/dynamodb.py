"""The stream log in DynamoDB, so that a resume served by one Lambda instance reads what another produced.

It lives in the cancel registry's table (`STREAM_TABLE`, by default `CANCEL_TABLE`), which has a hash key
`stream_id` (S) and nothing else, and whose TTL attribute is `expires_at` (epoch seconds). Its items are
therefore typed by their key; none can meet a cancel item, whose key is a bare (hex) stream id:

- `<id>#log`, the meta: `dialect`, `owner` and `chat_id` (when set), `closed`, `expires_at`; and, written
  at the close, `batches` (how many batch items) and `last_event` (the terminal event's id);
- `<id>#log#<n>`, batch n (1, 2, …): `first` (the id of its first event), `events` (a list of binaries,
  one SSE event each), `expires_at`;
- `chat#<owner>#<chat_id>`, the chat's newest stream: `stream` (its id), `expires_at` (`<owner>` is empty
  without API keys).

Writing never sits between a stream and its client. The boto3 client is built in a worker thread that the
first `open` starts (`app/stream/dynamodb_client.py`), `open` and `append` return at once; a writer task per
stream puts the meta and the chat's item, then one batch item per flush: when the oldest buffered event
is `flush_interval_s` old, or the buffer holds `flush_bytes`. Batches are written one after the other, a
batch only once the previous one is stored, so the table always holds a prefix of the stream with no hole;
a failed write is logged (`stream_log_error`, with the stream id and the exception's type, never an event)
and its events stay buffered for the next flush. `close` writes what is left and the closed meta, waiting
for both (within bounds): on Lambda an instance is frozen as soon as its invocation is over.

While live, every item expires `live_ttl_s` (longer than any stream runs) plus the retention after the
open, so a crashed instance's items vanish on their own. The close sets the meta's `expires_at` to the
end plus the retention; the batches keep theirs, unreachable without the meta. An item past its
`expires_at` counts as gone, even before DynamoDB's TTL deletes it (which can take days).

Reading: a stream this instance produces is served from a local in-memory mirror (`InMemoryStreamLog`),
so its own clients never wait on the table. A stream produced elsewhere is read with BatchGetItem: the
meta and the next few batches in one consistent request (the batches in full from the first: without a
range key nothing says which batch holds a given id, so the events up to `after` are skipped), then the
same every `poll_interval_s` until the meta is closed and its terminal event has been read. A closed meta
whose `last_event` is not in its batches (the producer's table failed) raises `StreamLogUnavailable`,
rather than end the stream early as if it were complete. So does any error of the table while reading.
A reader elsewhere cannot tell a producer that died from one that is slow: it waits for `until`, or for
the live meta to expire (`live_ttl_s` later), so a resume should always pass its own deadline.

`active_for_chat` reads the chat's item, then that stream's meta; each new stream of a chat overwrites the
item, and a closed or expired meta means no stream is active.

IAM on the table: dynamodb:PutItem, dynamodb:GetItem, dynamodb:BatchGetItem (no Scan, no Query, no index).
Writes per stream: a PutItem for the meta, one for the chat's item (AI SDK streams), one per flush and one
for the close. Measured for 1,000 frames of 90 bytes with the default flush (`bench/stream_log_writes.py`):
3 to 13 write requests when they arrive at once, 102 when they come 20 ms apart (an unbatched log: 1,002);
a reader on another instance makes one BatchGetItem per poll.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncGenerator, Coroutine
from typing import Any, Final

from app.logs import log_event
from app.stream.dynamodb_client import DynamoDBClient
from app.stream.log import LoggedStream, StreamLogUnavailable
from app.stream.log.memory import InMemoryStreamLog

# How long `close` waits for the last writes; a slower table finishes in the background.
_CLOSE_WAIT_S: Final = 5.0
# Event bytes per batch item at most: DynamoDB refuses items over 400 KB, attribute names and list
# overhead included. A backlog larger than this (a slow table) becomes several batches.
_MAX_BATCH_BYTES: Final = 300_000
# BatchGetItem reads at most 100 keys per request: the meta and 99 batches.
_MAX_BATCHES_PER_READ: Final = 99
# Batches asked for per poll of a live stream; doubled while each read finds them all (a late resume).
_FIRST_WINDOW: Final = 4
# BatchGetItem may leave keys unprocessed (throttling): asked again this many times, backing off.
_UNPROCESSED_RETRIES: Final = 5

Item = dict[str, Any]


def _meta_key(stream_id: str) -> str:
    return f"{stream_id}#log"


def _batch_key(stream_id: str, number: int) -> str:
    return f"{stream_id}#log#{number}"


def _chat_key(chat_id: str, owner: str | None) -> str:
    # Owners are hex digests (`app.http.auth.owner_of`), so the first `#` after the prefix ends the owner;
    # readers check the owner on the meta anyway.
    return f"chat#{owner or ''}#{chat_id}"


def _key(key: str) -> Item:
    return {"stream_id": {"S": key}}


def _text(item: Item, name: str) -> str | None:
    value = item.get(name)
    return None if value is None else str(value["S"])


def _number(item: Item, name: str) -> int:
    return int(item[name]["N"])


def _live(item: Item) -> bool:
    return float(item["expires_at"]["N"]) > time.time()


class _Producer:
    """One stream this instance is writing: its events not yet in the table, and what is."""

    __slots__ = (
        "batches",
        "chat_id",
        "closing",
        "dialect",
        "expires_at",
        "first_pending",
        "meta_written",
        "oldest_at",
        "owner",
        "pending",
        "pending_bytes",
        "pointer_written",
        "retry_at",
        "stream_id",
        "wake",
        "writer",
    )

    def __init__(
        self, stream_id: str, owner: str | None, dialect: str, chat_id: str | None, expires_at: int
    ) -> None:
        self.stream_id = stream_id
        self.owner = owner
        self.dialect = dialect
        self.chat_id = chat_id
        self.expires_at = expires_at  # of its items while it is live (epoch seconds)
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.first_pending = 1  # the id of pending[0]
        self.oldest_at = 0.0  # when pending[0] was appended (monotonic)
        self.retry_at = 0.0  # after a failed write, no new attempt before this (monotonic)
        self.batches = 0  # batch items stored
        self.meta_written = False
        self.pointer_written = chat_id is None
        self.closing = False
        # Set when the writer may have something to do: a first buffered event (its timer starts), a full
        # buffer, the close. Not per event: an append stays a list append.
        self.wake = asyncio.Event()
        self.writer: asyncio.Task[None] | None = None

    @property
    def last_event(self) -> int:
        return self.first_pending + len(self.pending) - 1


class DynamoDBStreamLog:
    """A `StreamLog` in the DynamoDB table of the cancel registry, read by every instance."""

    def __init__(
        self,
        table: str,
        *,
        retention_s: float,
        flush_interval_s: float,
        flush_bytes: int,
        poll_interval_s: float,
        live_ttl_s: float = 3600.0,
        client: Any | None = None,
    ) -> None:
        for name, value in (
            ("retention_s", retention_s),
            ("flush_interval_s", flush_interval_s),
            ("flush_bytes", flush_bytes),
            ("poll_interval_s", poll_interval_s),
            ("live_ttl_s", live_ttl_s),
        ):
            if not value > 0:
                raise ValueError(f"DynamoDBStreamLog: {name} must be positive, not {value!r}")
        # A boto3 client (tests), or the shared one the factory builds in the background; None: our own.
        self._client = client if isinstance(client, DynamoDBClient) else DynamoDBClient(client)
        self._table = table
        self._retention_s = retention_s
        self._flush_s = flush_interval_s
        self._flush_bytes = flush_bytes
        self._poll_s = poll_interval_s
        self._live_ttl_s = live_ttl_s
        # Every event this instance produces, as the memory backend keeps it: its readers here are served
        # from it, woken by each append, never by polling the table.
        self._local = InMemoryStreamLog(retention_s=retention_s)
        self._producing: dict[str, _Producer] = {}
        # Strong references: the event loop keeps only weak ones, and a writer outlives a cancelled close.
        self._background: set[asyncio.Task[None]] = set()

    async def open(
        self, stream_id: str, *, owner: str | None, dialect: str, chat_id: str | None = None
    ) -> None:
        self._client.warm()  # built while this stream waits for its first token
        await self._local.open(stream_id, owner=owner, dialect=dialect, chat_id=chat_id)
        expires_at = math.ceil(time.time() + self._live_ttl_s + self._retention_s)
        producer = _Producer(stream_id, owner, dialect, chat_id, expires_at)
        self._producing[stream_id] = producer
        producer.writer = self._spawn(self._write(producer), f"stream-log-{stream_id}")

    async def append(self, stream_id: str, event_id: int, event: bytes) -> None:
        producer = self._producing[stream_id]  # KeyError, as in memory: never opened here, or closed
        await self._local.append(stream_id, event_id, event)  # the order check ("does not follow")
        if not producer.pending:
            producer.oldest_at = time.monotonic()
            producer.wake.set()
        producer.pending.append(event)
        producer.pending_bytes += len(event)
        if producer.pending_bytes >= self._flush_bytes:
            producer.wake.set()

    async def close(self, stream_id: str) -> None:
        producer = self._producing.pop(stream_id)
        await self._local.close(stream_id)  # this instance's readers end now, not after the writes
        producer.closing = True
        producer.wake.set()
        assert producer.writer is not None
        done, _ = await asyncio.wait((producer.writer,), timeout=_CLOSE_WAIT_S)
        if not done:
            log_event(
                "stream_log_error",
                logging.WARNING,
                operation="close",
                stream_id=stream_id,
                exc_type="TimeoutError",
            )
            return
        # The writer catches every error of the table; what it raised is a bug, and must not pass unseen.
        producer.writer.result()

    async def find(self, stream_id: str, owner: str | None) -> LoggedStream | None:
        if stream_id in self._local:
            return await self._local.find(stream_id, owner)
        meta = await self._meta("find", stream_id)
        if meta is None or _text(meta, "owner") != owner:
            return None
        return LoggedStream(
            stream_id=stream_id,
            owner=owner,
            dialect=_text(meta, "dialect") or "",
            closed=bool(meta["closed"]["BOOL"]),
            chat_id=_text(meta, "chat_id"),
        )

    async def active_for_chat(self, chat_id: str, owner: str | None) -> str | None:
        here = await self._local.active_for_chat(chat_id, owner)
        producer = None if here is None else self._producing.get(here)
        if producer is not None and not producer.pointer_written:
            # The chat's item is not written yet (or could not be): when it is, it will name this stream.
            return here
        response = await self._read(
            "active_for_chat",
            None,
            "get_item",
            TableName=self._table,
            Key=_key(_chat_key(chat_id, owner)),
            ConsistentRead=True,
        )
        pointer: Item | None = response.get("Item")
        if pointer is None or not _live(pointer):
            return here
        newest = str(pointer["stream"]["S"])
        found = await self.find(newest, owner)
        return newest if found is not None and not found.closed and found.chat_id == chat_id else None

    def follow(
        self, stream_id: str, after: int, *, until: float | None = None
    ) -> AsyncGenerator[bytes, None]:
        if stream_id in self._local:
            return self._local.follow(stream_id, after, until=until)
        return self._follow_table(stream_id, after, until)

    async def _follow_table(
        self, stream_id: str, after: int, until: float | None
    ) -> AsyncGenerator[bytes, None]:
        meta_key = _meta_key(stream_id)
        position = max(0, after)  # the id of the last event yielded or skipped
        number = 1  # the next batch to read
        window = _FIRST_WINDOW
        closed_before = False
        while True:
            keys = [meta_key, *(_batch_key(stream_id, n) for n in range(number, number + window))]
            items = await self._batch_get(stream_id, keys)
            meta = items.get(meta_key)
            if meta is None or not _live(meta):
                return  # expired (or gone) since `find`: the client's next resume gets a 404
            found = 0
            while (batch := items.get(_batch_key(stream_id, number))) is not None:
                first = _number(batch, "first")
                for offset, value in enumerate(batch["events"]["L"]):
                    if first + offset > position:
                        yield bytes(value["B"])
                        position = first + offset
                number += 1
                found += 1
            if meta["closed"]["BOOL"]:
                last, batches = _number(meta, "last_event"), _number(meta, "batches")
                if position >= last:
                    return
                # A batch read in the same request as the closed meta may have been read before it was
                # written; one read after that, a missing batch is missing for good.
                if number > batches or (closed_before and found == 0):
                    raise StreamLogUnavailable(
                        f"the log of stream {stream_id} ends at event {position} of {last}: "
                        "its producer could not write the rest"
                    )
                closed_before = True
                window = min(_MAX_BATCHES_PER_READ, batches - number + 1)
                continue
            if found == window:
                window = min(_MAX_BATCHES_PER_READ, window * 2)
                continue  # more may be written already: no wait
            wait_s = self._poll_s
            if until is not None:
                wait_s = min(wait_s, until - time.monotonic())
                if wait_s <= 0:
                    return
            await asyncio.sleep(wait_s)

    async def _meta(self, operation: str, stream_id: str) -> Item | None:
        response = await self._read(
            operation,
            stream_id,
            "get_item",
            TableName=self._table,
            Key=_key(_meta_key(stream_id)),
            ConsistentRead=True,
        )
        meta: Item | None = response.get("Item")
        return meta if meta is not None and _live(meta) else None

    async def _batch_get(self, stream_id: str, keys: list[str]) -> dict[str, Item]:
        request: dict[str, Any] = {"Keys": [_key(key) for key in keys], "ConsistentRead": True}
        found: dict[str, Item] = {}
        for attempt in range(_UNPROCESSED_RETRIES + 1):
            response = await self._read(
                "follow",
                stream_id,
                "batch_get_item",
                RequestItems={self._table: request},
            )
            # Keyed by the table as DynamoDB names it (a name given as an ARN may come back as the name).
            for items in response.get("Responses", {}).values():
                for item in items:
                    found[str(item["stream_id"]["S"])] = item
            unprocessed = next(iter(response.get("UnprocessedKeys", {}).values()), None)
            if not unprocessed or not unprocessed.get("Keys"):
                return found
            request = unprocessed
            await asyncio.sleep(0.05 * 2**attempt)
        raise StreamLogUnavailable(f"the log of stream {stream_id} could not be read: throttled")

    async def _read(self, operation: str, stream_id: str | None, method: str, **kwargs: Any) -> Item:
        """One blocking boto3 read off the event loop; any failure (the client's build included) becomes
        `StreamLogUnavailable`."""
        try:
            client = await self._client.get()
            response: Item = await asyncio.to_thread(getattr(client, method), **kwargs)
        except Exception as exc:
            log_event(
                "stream_log_error",
                logging.WARNING,
                operation=operation,
                stream_id=stream_id,
                exc_type=type(exc).__name__,
            )
            raise StreamLogUnavailable(
                f"the stream log cannot be read now ({operation}: {type(exc).__name__})"
            ) from exc
        return response

    async def _write(self, producer: _Producer) -> None:
        """The producer's writes, in order: meta and chat item, one batch per flush, the closed meta."""
        await self._write_head(producer)
        while not producer.closing:
            await self._until_due(producer)
            if producer.closing:
                break
            await self._write_head(producer)  # again only if the first attempt failed
            await self._flush(producer, len(producer.pending))
        await self._flush(producer, len(producer.pending))
        await self._put_meta(producer, closed=True)

    async def _until_due(self, producer: _Producer) -> None:
        while not producer.closing:
            timeout_s: float | None = None
            if producer.pending:
                full = producer.pending_bytes >= self._flush_bytes
                due = 0.0 if full else producer.oldest_at + self._flush_s
                timeout_s = max(due, producer.retry_at) - time.monotonic()
                if timeout_s <= 0:
                    return
            producer.wake.clear()
            try:
                await asyncio.wait_for(producer.wake.wait(), timeout_s)
            except TimeoutError:
                return

    async def _flush(self, producer: _Producer, count: int) -> None:
        """Store the first `count` buffered events (those that came during the write wait their turn)."""
        while count > 0:
            size = taken = 0
            for event in producer.pending[:count]:
                if taken and size + len(event) > _MAX_BATCH_BYTES:
                    break
                size += len(event)
                taken += 1
            number = producer.batches + 1
            started = time.monotonic()
            stored = await self._call(
                "flush",
                producer.stream_id,
                "put_item",
                TableName=self._table,
                Item={
                    **_key(_batch_key(producer.stream_id, number)),
                    "first": {"N": str(producer.first_pending)},
                    "events": {"L": [{"B": event} for event in producer.pending[:taken]]},
                    "expires_at": {"N": str(producer.expires_at)},
                },
            )
            if not stored:
                producer.retry_at = time.monotonic() + self._flush_s
                return
            # Appends only add at the end: the first `taken` are still the ones written.
            del producer.pending[:taken]
            producer.pending_bytes -= size
            producer.first_pending += taken
            producer.batches = number
            producer.oldest_at = started  # the rest came during the write: no older than its start
            count -= taken

    async def _write_head(self, producer: _Producer) -> None:
        if not producer.meta_written:
            await self._put_meta(producer, closed=False)
        # After the meta: a reader that finds the chat's item pointing here must find the stream too.
        if producer.meta_written and not producer.pointer_written:
            await self._put_pointer(producer)

    async def _put_meta(self, producer: _Producer, *, closed: bool) -> None:
        # The whole item each time, so that the close also repairs an open whose write failed.
        expires_at = math.ceil(time.time() + self._retention_s) if closed else producer.expires_at
        item: Item = {
            **_key(_meta_key(producer.stream_id)),
            "dialect": {"S": producer.dialect},
            "closed": {"BOOL": closed},
            "batches": {"N": str(producer.batches)},
            "last_event": {"N": str(producer.last_event if closed else 0)},
            "expires_at": {"N": str(expires_at)},
        }
        if producer.owner is not None:
            item["owner"] = {"S": producer.owner}
        if producer.chat_id is not None:
            item["chat_id"] = {"S": producer.chat_id}
        operation = "close" if closed else "open"
        if await self._call(operation, producer.stream_id, "put_item", TableName=self._table, Item=item):
            producer.meta_written = True
        else:
            producer.retry_at = time.monotonic() + self._flush_s

    async def _put_pointer(self, producer: _Producer) -> None:
        assert producer.chat_id is not None
        item: Item = {
            **_key(_chat_key(producer.chat_id, producer.owner)),
            "stream": {"S": producer.stream_id},
            "expires_at": {"N": str(producer.expires_at)},
        }
        if await self._call("open", producer.stream_id, "put_item", TableName=self._table, Item=item):
            producer.pointer_written = True
        else:
            producer.retry_at = time.monotonic() + self._flush_s

    async def _call(self, operation: str, stream_id: str, method: str, **kwargs: Any) -> bool:
        """One blocking boto3 write off the event loop; a failure (the client's build included) is logged,
        never raised into a stream."""
        try:
            client = await self._client.get()
            await asyncio.to_thread(getattr(client, method), **kwargs)
        except Exception as exc:
            log_event(
                "stream_log_error",
                logging.WARNING,
                operation=operation,
                stream_id=stream_id,
                exc_type=type(exc).__name__,
            )
            return False
        return True

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(work, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task
