"""Stream log writes: what a resumable stream costs in DynamoDB, per 1,000 tokens.

The DynamoDB stream log (`app/stream/log/dynamodb.py`) with the default flush settings (200 ms / 8 KB)
logs 1,000 SSE frames of ~90 bytes (`id: N\\nevent: delta\\ndata: {"type":"delta","text":"..."}`, a
native delta with a few words) into moto's DynamoDB, in-process and offline, on the table as
template.yaml declares it. Counted: every write request (PutItem, UpdateItem, ...) of the stream, its
open and close included, and the write request units DynamoDB bills for them (one per started KB of
each item, sized by DynamoDB's rules). The tokens come

- with no delay: the producer yields to the event loop once per token, as the session does, so what is
  written per batch depends on how long a write takes; at moto's own latency, and with 10 ms added to
  each request (a DynamoDB round trip within a region);
- 20 ms apart: a fast model's pace.

Baseline: an unbatched log, one PutItem per event (plus the same open and close). A second instance
follows the 20 ms stream from the table, as a resume served elsewhere does; its reads are counted too.

    python -m bench.stream_log_writes [--tokens 1000] [--rounds 3] [--event-bytes 90] [--flush-ms 200]
                                      [--smoke]
"""

from __future__ import annotations

import asyncio
import math
import os
import statistics
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from app.settings import Settings
from app.stream.log.dynamodb import DynamoDBStreamLog
from bench import report
from bench.report import Row, print_table, ratio
from tests.support.aws import create_declared_table, dynamodb_client

TITLE = "Stream log: DynamoDB requests per 1,000 tokens"
WRITES = frozenset({"put_item", "update_item", "delete_item", "batch_write_item"})
TABLE = "tokenrelay-bench"


def frame(event_id: int, size: int) -> bytes:
    """A native delta of `size` bytes (give or take the id's digits)."""
    head = b'id: %d\nevent: delta\ndata: {"type":"delta","text":"' % event_id
    tail = b'"}\n\n'
    words = (b" word" * (size // 5 + 1))[: max(1, size - len(head) - len(tail))]
    return head + words + tail


def value_bytes(value: dict[str, Any]) -> int:
    """The size DynamoDB counts for one attribute value (its documented item-size rules)."""
    kind, inner = next(iter(value.items()))
    if kind == "S":
        return len(inner.encode())
    if kind == "B":
        return len(inner)
    if kind == "N":
        return math.ceil(len(inner.lstrip("-").replace(".", "")) / 2) + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(1 + value_bytes(element) for element in inner)
    if kind == "M":
        return 3 + sum(1 + len(name.encode()) + value_bytes(v) for name, v in inner.items())
    raise ValueError(f"no size rule for {kind}")


def write_units(item: dict[str, Any]) -> int:
    """Write request units of a PutItem of `item`: one per started KB."""
    size = sum(len(name.encode()) + value_bytes(value) for name, value in item.items())
    return math.ceil(size / 1024)


class MeteredClient:
    """moto's client, counting requests and write units, each request `latency_s` slower."""

    def __init__(self, latency_s: float = 0.0) -> None:
        self._client = dynamodb_client()
        self.exceptions = self._client.exceptions
        self._latency_s = latency_s
        self._lock = threading.Lock()
        self.requests: dict[str, int] = {}
        self.units = 0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        def call(**kwargs: Any) -> Any:
            if self._latency_s:
                time.sleep(self._latency_s)  # in the worker thread, as a network round trip would be
            with self._lock:
                self.requests[name] = self.requests.get(name, 0) + 1
                if name == "put_item":
                    self.units += write_units(kwargs["Item"])
                elif name in WRITES:
                    self.units += 1  # small items here (the meta): one unit
            return method(**kwargs)

        return call

    @property
    def writes(self) -> int:
        return sum(count for name, count in self.requests.items() if name in WRITES)


def new_log(client: MeteredClient, flush_s: float) -> DynamoDBStreamLog:
    defaults = Settings()
    return DynamoDBStreamLog(
        TABLE,
        retention_s=defaults.stream_retention_s,
        flush_interval_s=flush_s,
        flush_bytes=defaults.stream_log_flush_bytes,
        poll_interval_s=defaults.stream_log_poll_s,
        client=client,
    )


@dataclass(frozen=True, slots=True)
class Sample:
    writes: int
    units: int
    reads: int = 0


async def stream(
    tokens: int,
    event_bytes: int,
    pause_s: float,
    *,
    flush_s: float,
    latency_s: float = 0.0,
    follow: bool = False,
) -> Sample:
    """One stream of `tokens` frames through a fresh log; with `follow`, read by a second instance."""
    producing, reading = MeteredClient(latency_s), MeteredClient(latency_s)
    producer, reader = new_log(producing, flush_s), new_log(reading, flush_s)
    stream_id = f"s{time.monotonic_ns()}"
    events = [frame(i, event_bytes) for i in range(1, tokens + 1)]
    await producer.open(stream_id, owner=None, dialect="stream")
    following: asyncio.Task[list[bytes]] | None = None
    for event_id, event in enumerate(events, start=1):
        await producer.append(stream_id, event_id, event)
        if follow and following is None and await reader.find(stream_id, None) is not None:
            following = asyncio.create_task(_read_all(reader, stream_id))
        await asyncio.sleep(pause_s)
    await producer.close(stream_id)
    if following is not None and await following != events:
        raise RuntimeError("the follower read something else than was written")
    if follow and following is None:
        raise RuntimeError("the follower never saw the stream")
    return Sample(producing.writes, producing.units, reading.requests.get("batch_get_item", 0))


async def _read_all(log: DynamoDBStreamLog, stream_id: str) -> list[bytes]:
    return [event async for event in log.follow(stream_id, 0)]


@contextmanager
def offline_dynamodb() -> Iterator[None]:
    """moto's DynamoDB with the table, and credentials that could never reach an account."""
    from moto import mock_aws

    fake = {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }
    saved = {name: os.environ.get(name) for name in (*fake, "AWS_PROFILE")}
    os.environ.update(fake)
    os.environ.pop("AWS_PROFILE", None)
    try:
        with mock_aws():
            create_declared_table(dynamodb_client(), TABLE)
            yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def per_1000(value: float, tokens: int) -> float:
    return value * 1000 / tokens


def main(argv: Sequence[str] | None = None) -> int:
    parser = report.parser(__doc__)
    parser.add_argument("--tokens", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--event-bytes", type=int, default=90)
    parser.add_argument("--flush-ms", type=int, default=round(Settings().stream_log_flush_s * 1000))
    args = parser.parse_args(argv)
    flush_s = args.flush_ms / 1000
    tokens, rounds = (50, 1) if args.smoke else (args.tokens, args.rounds)
    # name: (pause between tokens, added latency per request, a follower on another instance)
    cases = {
        "no delay": (0.0, 0.0, False),
        "no delay, +10 ms per request": (0.0, 0.010, False),
        "20 ms apart": (0.020, 0.0, True),
    }
    samples: dict[str, list[Sample]] = {name: [] for name in cases}
    with offline_dynamodb():
        for _ in range(rounds):
            for name, (pause_s, latency_s, follow) in cases.items():
                run = stream(
                    tokens, args.event_bytes, pause_s, flush_s=flush_s, latency_s=latency_s, follow=follow
                )
                samples[name].append(asyncio.run(run))
    size = len(frame(tokens // 2, args.event_bytes))
    # Unbatched: the meta's open and close, and one item of one event (under 1 KB: one unit) per token.
    unbatched = per_1000(tokens + 2, tokens)
    rows: list[Row] = []
    for name in cases:
        writes = per_1000(statistics.median(s.writes for s in samples[name]), tokens)
        units = per_1000(statistics.median(s.units for s in samples[name]), tokens)
        rows += [
            Row(
                f"write requests per 1,000 tokens, {name}",
                f"{writes:.0f}",
                f"{unbatched:.0f}",
                ratio(writes, unbatched),
            ),
            Row(f"  write request units (1 KB each), {name}", f"{units:.0f}", f"{unbatched:.0f}"),
        ]
    reads = per_1000(statistics.median(s.reads for s in samples["20 ms apart"]), tokens)
    rows.append(Row("  a follower on another instance: BatchGetItem requests, 20 ms apart", f"{reads:.0f}"))
    print_table(
        TITLE,
        rows,
        [
            f"Flush every {args.flush_ms} ms or at {Settings().stream_log_flush_bytes} bytes; "
            f"{tokens} frames of {size} bytes per stream, {rounds} rounds, medians, scaled to 1,000 tokens; "
            "moto in-process. "
            "Baseline: one PutItem per event, plus the open and the close.",
        ],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
