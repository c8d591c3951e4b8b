"""Time to first byte over the provider's first token: the latency the service adds to the first delta.

The provider stamps its first delta with `perf_counter_ns()` (CLOCK_MONOTONIC, shared by every process on
the machine); the client notes when the bytes completing that delta's frame arrive. The difference is
what the app, the server and loopback add. Ours and a bare ASGI app (same provider, same frames) are
served by one uvicorn worker each, in their own processes, and asked in turn; the Lambda streaming
runtime is driven the same way under the fake Runtime API.

    python -m bench.ttfb [--samples 300] [--smoke]
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

from bench import report, workload
from bench.client import Recording, fetch, request_bytes, serve
from bench.report import Row, percentile, print_table
from bench.serve import STAMP_PREFIX

TITLE = "Time to first byte over the provider's first token (added latency)"
TARGET_MS = 1.0
_NATIVE_MARK = b'"text":"' + STAMP_PREFIX.encode()
_OPENAI_MARK = b'"content":"' + STAMP_PREFIX.encode()


def added_ms(recording: Recording, mark: bytes) -> float:
    """From the provider's stamp to the arrival of the read that completed the stamped frame."""
    seen = b""
    for arrived_ns, data in recording.reads:
        seen += data
        at = seen.find(mark)
        if at >= 0 and seen.find(b"\n\n", at) >= 0:
            start = at + len(mark)
            stamp_ns = int(seen[start : seen.index(b'"', start)])
            return (arrived_ns - stamp_ns) / 1e6
    raise RuntimeError("no stamped delta in the response")


async def sample_uvicorn(samples: int) -> dict[tuple[str, str], list[float]]:
    requests = {
        "/v1/stream": (request_bytes("GET", workload.native_target(3, stall_ms=1)), _NATIVE_MARK),
        "/v1/chat/completions": (
            request_bytes("POST", "/v1/chat/completions", workload.openai_body(3, stall_ms=1)),
            _OPENAI_MARK,
        ),
    }
    out: dict[tuple[str, str], list[float]] = {}
    with serve("ours", stamp=True) as ours, serve("bare", stamp=True) as bare:
        cases = [(server, label) for server in (ours, bare) for label in requests]
        for server, label in cases:  # warm-up
            await fetch(server.port, requests[label][0])
        shuffler = random.Random(11)
        for _ in range(samples):
            shuffler.shuffle(cases)
            for server, label in cases:
                request, mark = requests[label]
                recording = await fetch(server.port, request)
                out.setdefault((server.name, label), []).append(added_ms(recording, mark))
    return out


def rows(samples: dict[tuple[str, str], list[float]], host: str) -> list[Row]:
    out: list[Row] = []
    for label in ("/v1/stream", "/v1/chat/completions"):
        ours = samples[("ours", label)]
        bare = samples[("bare", label)]
        p50, base50 = percentile(ours, 50), percentile(bare, 50)
        p99, base99 = percentile(ours, 99), percentile(bare, 99)
        out += [
            Row(
                f"{host} {label} added p50 (ms)",
                f"{p50:.3f}",
                f"{base50:.3f}",
                f"+{p50 - base50:.3f} ms",
                f"< {TARGET_MS:g} ms",
                p50 < TARGET_MS,
            ),
            Row(f"{host} {label} added p99 (ms)", f"{p99:.3f}", f"{base99:.3f}", f"+{p99 - base99:.3f} ms"),
        ]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = report.parser(__doc__)
    parser.add_argument("--samples", type=int, default=300)
    args = parser.parse_args(argv)
    samples = 5 if args.smoke else args.samples
    uvicorn_samples = asyncio.run(sample_uvicorn(samples))
    print_table(
        TITLE,
        rows(uvicorn_samples, "uvicorn"),
        [
            f"{samples} samples per figure, interleaved; baseline: a bare ASGI app (same provider, frames) "
            "under the same uvicorn. One uvicorn worker per app, client in the benchmark process, loopback."
        ],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
