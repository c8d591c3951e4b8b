"""Per-token overhead: tokens/s of 10,000-token streams through ours, a bare ASGI app and FastAPI.

All three consume the same mock provider at zero delay and write byte-identical SSE frames; the apps are
called in-process with a recording `send`, so no network or client is measured. Runs are interleaved in a
shuffled order and repeated; the table shows medians.

    python -m bench.overhead [--tokens 10000] [--rounds 9] [--smoke]
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from app.factory import create_app
from bench import report, workload
from bench.asgi import call
from bench.baselines.bare_asgi import create_bare_app
from bench.baselines.fastapi_sse import create_fastapi_app
from bench.report import Row, median, print_table, ratio
from bench.stages import STAGES, time_stage
from providers.mock import MockProvider

TITLE = "Per-token overhead (in-process ASGI, mock at zero delay)"
STAGES_TITLE = "Where a token's time goes on /v1/stream (µs per token, in-process, same run)"
VS_BARE = 0.7
VS_FASTAPI = 2.0


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One of our two streaming endpoints, as every app under test serves it."""

    label: str
    method: str
    target: str
    body: bytes
    count: Callable[[bytes], int]


def endpoints(tokens: int) -> list[Endpoint]:
    return [
        Endpoint("/v1/stream", "GET", workload.native_target(tokens), b"", workload.count_native_deltas),
        Endpoint(
            "/v1/chat/completions",
            "POST",
            "/v1/chat/completions",
            workload.openai_body(tokens),
            workload.count_openai_deltas,
        ),
    ]


async def measure(tokens: int, rounds: int) -> dict[tuple[str, str], list[float]]:
    """tokens/s per (app, endpoint), and µs/token per pipeline stage; one sample per round."""
    provider = MockProvider()
    apps: dict[str, workload.ASGIApp] = {
        "ours": create_app(workload.settings(tokens), provider),
        "bare": create_bare_app(provider),
        "fastapi": create_fastapi_app(provider),
    }
    request = workload.chat_request(tokens)
    cases: list[tuple[str, Endpoint | None]] = [(name, e) for name in apps for e in endpoints(tokens)]
    cases += [(stage, None) for stage in STAGES]
    samples: dict[tuple[str, str], list[float]] = {}

    async def run(name: str, endpoint: Endpoint | None) -> None:
        gc.collect()
        if endpoint is None:
            micros = await time_stage(STAGES[name], provider, request, tokens)
            samples.setdefault(("stage", name), []).append(micros)
            return
        recorded = await call(apps[name], endpoint.method, endpoint.target, body=endpoint.body)
        delivered = endpoint.count(recorded.body)
        if recorded.status != 200 or delivered != tokens:
            raise RuntimeError(f"{name} {endpoint.label}: status {recorded.status}, {delivered} deltas")
        samples.setdefault((name, endpoint.label), []).append(tokens / recorded.seconds)

    for name, endpoint in cases:  # warm-up: imports, caches, first-call paths
        await run(name, endpoint)
    samples.clear()
    shuffler = random.Random(7)
    for _ in range(rounds):
        shuffler.shuffle(cases)
        for name, endpoint in cases:
            await run(name, endpoint)
    return samples


def stage_rows(samples: dict[tuple[str, str], list[float]]) -> list[Row]:
    out: list[Row] = []
    previous: float | None = None
    for stage in STAGES:
        micros = median(samples["stage", stage])
        step = "" if previous is None else f"+{micros - previous:.2f} µs"
        out.append(Row(stage, f"{micros:.2f}", "" if previous is None else f"{previous:.2f}", step))
        previous = micros
    ours = 1e6 / median(samples["ours", "/v1/stream"])
    bare = 1e6 / median(samples["bare", "/v1/stream"])
    assert previous is not None
    out += [
        Row(
            "+ Litestar: the whole of ours (/v1/stream)",
            f"{ours:.2f}",
            f"{previous:.2f}",
            f"+{ours - previous:.2f} µs",
        ),
        Row("bare ASGI app (the limit, for reference)", f"{bare:.2f}"),
    ]
    return out


def rows(samples: dict[tuple[str, str], list[float]], tokens: int) -> list[Row]:
    out: list[Row] = []
    for endpoint in endpoints(tokens):
        ours = median(samples["ours", endpoint.label])
        bare = median(samples["bare", endpoint.label])
        fastapi = median(samples["fastapi", endpoint.label])
        out += [
            Row(
                f"{endpoint.label} tokens/s vs bare ASGI",
                f"{ours:,.0f}",
                f"{bare:,.0f}",
                ratio(ours, bare),
                f"≥ {VS_BARE:.2f}x",
                ours >= VS_BARE * bare,
            ),
            Row(
                f"{endpoint.label} tokens/s vs FastAPI + sse-starlette",
                f"{ours:,.0f}",
                f"{fastapi:,.0f}",
                ratio(ours, fastapi),
                f"≥ {VS_FASTAPI:.2f}x",
                ours >= VS_FASTAPI * fastapi,
            ),
            Row(
                f"{endpoint.label} µs per token (bare: the limit)",
                f"{1e6 / ours:.2f}",
                f"{1e6 / bare:.2f}",
                f"+{1e6 / ours - 1e6 / bare:.2f} µs",
            ),
        ]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = report.parser(__doc__)
    parser.add_argument("--tokens", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args(argv)
    tokens, rounds = (200, 1) if args.smoke else (args.tokens, args.rounds)
    logging.getLogger("tokenrelay").setLevel(logging.WARNING)  # one `stream_end` line per run is noise here
    samples = asyncio.run(measure(tokens, rounds))
    print_table(
        TITLE,
        rows(samples, tokens),
        [f"{tokens:,}-token streams, {rounds} interleaved rounds, medians."],
    )
    print_table(
        STAGES_TITLE,
        stage_rows(samples),
        [
            "Each stage adds one layer to the one above: ours = µs/token of the stage, "
            "baseline = the stage above."
        ],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
