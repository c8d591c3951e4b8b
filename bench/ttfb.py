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
import sys
from collections.abc import Sequence

from bench import report, workload
from bench.client import Recording, fetch, request_bytes, serve
from bench.coldstart_event import function_url_event
from bench.lambda_host import FakeRuntimeApi, lambda_environment, running_fake, start_runtime
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


def lambda_added_ms(fake: FakeRuntimeApi, request_id: str) -> float:
    """From the provider's stamp to the fake Runtime API's receipt of the chunk that completed its frame."""
    response = fake.response(request_id, timeout_s=30)
    seen = b""
    for chunk in response.chunks:
        seen += chunk.data
        at = seen.find(_NATIVE_MARK)
        if at >= 0 and seen.find(b"\n\n", at) >= 0:
            start = at + len(_NATIVE_MARK)
            stamp_ns = int(seen[start : seen.index(b'"', start)])
            return (chunk.at * 1e9 - stamp_ns) / 1e6
    raise RuntimeError("no stamped delta in the streamed response")


def sample_lambda(samples: int) -> dict[tuple[str, str], list[float]]:
    """The same, through the streaming runtime under the fake Runtime API (one runtime per app)."""
    path, _, query = workload.native_target(3, stall_ms=1).partition("?")
    event = function_url_event(path, query)
    out: dict[tuple[str, str], list[float]] = {}
    with running_fake() as ours_api, running_fake() as bare_api:
        runtimes = {"ours": ours_api, "bare": bare_api}
        with (
            start_runtime(
                ours_api,
                [sys.executable, "-m", "bench.lambda_child", "ours", "--stamp"],
                lambda_environment(ours_api),
            ),
            start_runtime(
                bare_api,
                [sys.executable, "-m", "bench.lambda_child", "bare", "--stamp"],
                lambda_environment(bare_api),
            ),
        ):
            names = list(runtimes)
            for name in names:  # warm-up (and wait for both runtimes to be up)
                lambda_added_ms(runtimes[name], runtimes[name].invoke(event))
            shuffler = random.Random(13)
            for _ in range(samples):
                shuffler.shuffle(names)
                for name in names:
                    fake = runtimes[name]
                    added = lambda_added_ms(fake, fake.invoke(event))
                    out.setdefault((name, "/v1/stream"), []).append(added)
    return out


def rows(
    samples: dict[tuple[str, str], list[float]],
    host: str,
    labels: tuple[str, ...] = ("/v1/stream", "/v1/chat/completions"),
) -> list[Row]:
    out: list[Row] = []
    for label in labels:
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
    lambda_samples = sample_lambda(samples)
    print_table(
        TITLE,
        rows(uvicorn_samples, "uvicorn") + rows(lambda_samples, "Lambda streaming runtime", ("/v1/stream",)),
        [
            f"{samples} samples per figure, interleaved; baseline: a bare ASGI app (same provider, frames) "
            "under the same uvicorn, or in the same streaming runtime (`bench/lambda_child.py`) under the "
            "fake Runtime API of the Lambda tests. Client and fake in the benchmark process, loopback."
        ],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
