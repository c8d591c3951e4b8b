"""Concurrency: a thousand streams at once, paced at 20 ms per token, on one uvicorn worker.

Every stream asks for the same deterministic answer, so each delivered token is checked against the
expected one (lost or corrupted tokens must be 0). Inter-token gaps are measured where a client sees
them, minus the provider's own pacing; CPU is the server process's user + system time. Ours, a bare ASGI
app and FastAPI + sse-starlette (same provider, same frames) take turns under the same load.

    python -m bench.concurrency [--streams 1000] [--tokens 100] [--delay-ms 20] [--rounds 2] [--smoke]
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench import report, workload
from bench.client import Recording, Server, fetch, request_bytes, serve
from bench.report import Row, median, percentile, print_table, ratio
from bench.serve import raise_fd_limit

TITLE = "Concurrency (one uvicorn worker, streams paced by the provider)"
_DELTA_MARK = b'"type":"delta"'


@dataclass(slots=True)
class Run:
    """One app under one load."""

    tokens_delivered: int = 0
    lost: int = 0
    corrupted: int = 0
    failed_streams: int = 0
    gaps_ms: list[float] = field(default_factory=list)
    cpu_s: float = 0.0
    wall_s: float = 0.0

    @property
    def cpu_ms_per_1000(self) -> float:
        return self.cpu_s * 1000 / max(self.tokens_delivered, 1) * 1000


def arrivals(recording: Recording) -> list[int]:
    """When each delta frame arrived (ns), from the reads' timestamps."""
    out: list[int] = []
    tail = b""
    keep = len(_DELTA_MARK) - 1
    for arrived_ns, data in recording.reads:
        window = tail + data
        out.extend([arrived_ns] * window.count(_DELTA_MARK))
        tail = window[-keep:]
    return out


def check(recording: Recording, expected: list[str], delay_ms: float, run: Run) -> None:
    try:
        body = recording.body()
    except ValueError:
        run.failed_streams += 1
        run.lost += len(expected)
        return
    texts = workload.decode_native_deltas(body)
    if b"\nevent: done\n" not in body:
        run.failed_streams += 1
    run.tokens_delivered += len(texts)
    run.lost += max(0, len(expected) - len(texts))
    run.corrupted += sum(got != want for got, want in zip(texts, expected, strict=False))
    times = arrivals(recording)
    run.gaps_ms.extend((b - a) / 1e6 - delay_ms for a, b in itertools.pairwise(times))


async def load(server: Server, streams: int, tokens: int, delay_ms: int, expected: list[str]) -> Run:
    request = request_bytes("GET", workload.native_target(tokens, delay_ms=delay_ms))
    run = Run()
    cpu_before = server.cpu_seconds()
    started = time.perf_counter()
    recordings = await asyncio.gather(*(fetch(server.port, request) for _ in range(streams)))
    run.wall_s = time.perf_counter() - started
    run.cpu_s = server.cpu_seconds() - cpu_before
    for recording in recordings:
        check(recording, expected, delay_ms, run)
    return run


async def measure(streams: int, tokens: int, delay_ms: int, rounds: int) -> dict[str, list[Run]]:
    expected = workload.expected_tokens(tokens)
    runs: dict[str, list[Run]] = {}
    with serve("ours") as ours, serve("bare") as bare, serve("fastapi") as fastapi:
        servers = [ours, bare, fastapi]
        for server in servers:  # warm-up
            await load(server, 5, 5, 0, workload.expected_tokens(5))
        shuffler = random.Random(3)
        for _ in range(rounds):
            shuffler.shuffle(servers)
            for server in servers:
                runs.setdefault(server.name, []).append(
                    await load(server, streams, tokens, delay_ms, expected)
                )
    return runs


def rows(runs: dict[str, list[Run]], streams: int, tokens: int, delay_ms: int) -> list[Row]:
    def pooled(name: str) -> Run:
        out = Run()
        for run in runs[name]:
            out.tokens_delivered += run.tokens_delivered
            out.lost += run.lost
            out.corrupted += run.corrupted
            out.failed_streams += run.failed_streams
            out.gaps_ms.extend(run.gaps_ms)
        return out

    ours, bare, fastapi = pooled("ours"), pooled("bare"), pooled("fastapi")
    cpu = {name: median(run.cpu_ms_per_1000 for run in runs[name]) for name in runs}
    wall = {name: median(run.wall_s for run in runs[name]) for name in runs}
    ideal_s = tokens * delay_ms / 1000
    p50 = {
        name: percentile(run.gaps_ms, 50)
        for name, run in (("ours", ours), ("bare", bare), ("fastapi", fastapi))
    }
    p99 = {
        name: percentile(run.gaps_ms, 99)
        for name, run in (("ours", ours), ("bare", bare), ("fastapi", fastapi))
    }
    return [
        Row("lost tokens", str(ours.lost), str(bare.lost), "", "0", ours.lost == 0),
        Row("corrupted tokens", str(ours.corrupted), str(bare.corrupted), "", "0", ours.corrupted == 0),
        Row(
            "streams without `done`",
            str(ours.failed_streams),
            str(bare.failed_streams),
            "",
            "0",
            ours.failed_streams == 0,
        ),
        Row(
            f"inter-token gap over {delay_ms} ms, p50 (ms)",
            f"{p50['ours']:.2f}",
            f"{p50['bare']:.2f}",
            f"+{p50['ours'] - p50['bare']:.2f} ms",
        ),
        Row(
            f"inter-token gap over {delay_ms} ms, p99 (ms)",
            f"{p99['ours']:.2f}",
            f"{p99['bare']:.2f}",
            f"+{p99['ours'] - p99['bare']:.2f} ms",
        ),
        Row(
            "  FastAPI + sse-starlette: gap p50 / p99 (ms)",
            f"{p50['ours']:.2f} / {p99['ours']:.2f}",
            f"{p50['fastapi']:.2f} / {p99['fastapi']:.2f}",
        ),
        Row(
            "server CPU per 1,000 tokens (ms)",
            f"{cpu['ours']:.1f}",
            f"{cpu['bare']:.1f}",
            ratio(cpu["ours"], cpu["bare"]),
        ),
        Row(
            "  vs FastAPI + sse-starlette (ms)",
            f"{cpu['ours']:.1f}",
            f"{cpu['fastapi']:.1f}",
            ratio(cpu["ours"], cpu["fastapi"]),
        ),
        Row(
            f"wall time of the load (ideal {ideal_s:.1f} s)",
            f"{wall['ours']:.2f} s",
            f"{wall['bare']:.2f} s",
            ratio(wall["ours"], wall["bare"]),
        ),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = report.parser(__doc__)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--delay-ms", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    streams, tokens, rounds = (20, 10, 1) if args.smoke else (args.streams, args.tokens, args.rounds)
    raise_fd_limit()
    runs = asyncio.run(measure(streams, tokens, args.delay_ms, rounds))
    print_table(
        TITLE,
        rows(runs, streams, tokens, args.delay_ms),
        [
            f"{streams:,} concurrent `GET /v1/stream`, {tokens} tokens each at {args.delay_ms} ms/token, "
            f"{rounds} interleaved rounds per app. Baseline: a bare ASGI app under the same uvicorn; "
            "gaps pooled over all rounds, CPU and wall time are medians of rounds."
        ],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
