"""Throughput of the Lambda streaming runtime: deltas/s of long streams through the fake Runtime API.

The same runtime (`bench/lambda_child.py`) serves ours or the bare ASGI app, over the mock at zero delay,
one invocation at a time; the fake Runtime API of the Lambda tests receives the chunked response and stamps
every chunk's arrival. Deltas/s runs from the first body chunk to the last; the HTTP chunks per 1,000
deltas show what write coalescing saves (events already queued share one chunk; the bare app writes one
per delta). Rounds alternate between the two runtimes; the table shows medians.

    python -m bench.lambda_stream [--tokens 2000] [--rounds 7] [--smoke]
"""

from __future__ import annotations

import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from bench import report, workload
from bench.coldstart_event import function_url_event
from bench.lambda_host import FakeRuntimeApi, lambda_environment, running_fake, start_runtime
from bench.report import Row, median, print_table, ratio
from tests.app.lambda_.fake_runtime_api import DELIMITER

TITLE = "Lambda streaming runtime: deltas/s of long streams, ours vs a bare ASGI app in the same runtime"
VS_BARE = 0.85
_DELTA = b'"type":"delta"'


@dataclass(frozen=True, slots=True)
class Sample:
    deltas_per_s: float
    chunks_per_1000: float


def sample(fake: FakeRuntimeApi, event: dict[str, object], tokens: int) -> Sample:
    """One invocation: its deltas over the time between its first and last body chunks."""
    response = fake.response(fake.invoke(event), timeout_s=60)
    body_chunks = []
    seen_prelude = False
    for chunk in response.chunks:
        if not seen_prelude:
            seen_prelude = DELIMITER in chunk.data
            continue
        body_chunks.append(chunk)
    deltas = sum(chunk.data.count(_DELTA) for chunk in body_chunks)
    if deltas != tokens:
        raise RuntimeError(f"{deltas} deltas arrived, {tokens} were asked for")
    span_s = body_chunks[-1].at - body_chunks[0].at
    return Sample(deltas / span_s, len(body_chunks) / deltas * 1000)


def measure(tokens: int, rounds: int) -> dict[str, list[Sample]]:
    path, _, query = workload.native_target(tokens).partition("?")
    event = function_url_event(path, query)
    out: dict[str, list[Sample]] = {}
    with running_fake() as ours_api, running_fake() as bare_api:
        fakes = {"ours": ours_api, "bare": bare_api}
        with (
            start_runtime(
                ours_api, [sys.executable, "-m", "bench.lambda_child", "ours"], lambda_environment(ours_api)
            ),
            start_runtime(
                bare_api, [sys.executable, "-m", "bench.lambda_child", "bare"], lambda_environment(bare_api)
            ),
        ):
            names = list(fakes)
            for name in names:  # warm-up, and both runtimes up
                sample(fakes[name], event, tokens)
            shuffler = random.Random(17)
            for _ in range(rounds):
                shuffler.shuffle(names)
                for name in names:
                    out.setdefault(name, []).append(sample(fakes[name], event, tokens))
    return out


def rows(samples: dict[str, list[Sample]]) -> list[Row]:
    ours = median([s.deltas_per_s for s in samples["ours"]])
    bare = median([s.deltas_per_s for s in samples["bare"]])
    ours_chunks = median([s.chunks_per_1000 for s in samples["ours"]])
    bare_chunks = median([s.chunks_per_1000 for s in samples["bare"]])
    return [
        Row(
            "/v1/stream deltas/s vs bare ASGI",
            f"{ours:,.0f}",
            f"{bare:,.0f}",
            ratio(ours, bare),
            f"≥ {VS_BARE:.2f}x",
            ours >= VS_BARE * bare,
        ),
        Row("HTTP chunks to the Runtime API per 1,000 deltas", f"{ours_chunks:,.0f}", f"{bare_chunks:,.0f}"),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = report.parser(__doc__)
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    tokens, rounds = (200, 1) if args.smoke else (args.tokens, args.rounds)
    print_table(
        TITLE,
        rows(measure(tokens, rounds)),
        [
            f"{tokens:,}-delta streams at zero delay, {rounds} alternated rounds, medians; the fake Runtime "
            "API of the Lambda tests on loopback, in the benchmark process."
        ],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
