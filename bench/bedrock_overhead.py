"""Per-token overhead of the Bedrock provider against the mock: the same app, the same dialect, the same
number of tokens, with the answer made by the mock (zero delay) or read by botocore from the fake Bedrock
Runtime (`tests/support/fake_bedrock.py`, in a process of its own so that it does not share our GIL).

Two figures per path, both per token: the wall time, and this process's CPU time (every thread of it,
botocore's worker included; the fake's work is in the other process). The provider alone, then the whole
of ours (`POST /v1/chat/completions`, streamed, in-process with a recording `send`). Rounds interleaved,
medians.

    python -m bench.bedrock_overhead [--tokens 5000] [--rounds 7] [--smoke]
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import random
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager

import msgspec

from app.factory import create_app
from bench import report, workload
from bench.asgi import call
from bench.client import ROOT
from bench.report import Row, median, print_table
from providers.bedrock import BedrockProvider
from providers.mock import MockProvider
from providers.protocol import ChatMessage, ChatRequest, Provider
from tests.support.fake_bedrock import REGION, offline_bedrock_credentials

TITLE = "Per-token overhead of the Bedrock provider (botocore, fake Bedrock Runtime) vs the mock"
# Ten words: the fake's echo answer is "You said:" and these, `repeat` times over.
_PROMPT = "alpha beta gamma delta epsilon zeta eta theta iota kappa"
_SERVE_FAKE = """
import sys
from tests.support.fake_bedrock import fake_bedrock
with fake_bedrock(repeat=int(sys.argv[1])) as fake:
    print(fake.port, flush=True)
    sys.stdin.read()
"""


@contextmanager
def fake_in_its_own_process(repeat: int) -> Iterator[str]:
    """The fake Bedrock Runtime in a child process; yields its endpoint URL."""
    with subprocess.Popen(
        [sys.executable, "-c", _SERVE_FAKE, str(repeat)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdout is not None
        assert child.stdin is not None
        port = child.stdout.readline().strip()
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            child.stdin.close()
            child.wait(10)


async def timed(run: Callable[[], Awaitable[int]]) -> tuple[int, float, float]:
    """(tokens, wall seconds, CPU seconds of this process) of one run."""
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    tokens = await run()
    return tokens, time.perf_counter() - wall, time.process_time() - cpu


async def measure(tokens: int, rounds: int, endpoint_url: str) -> dict[str, list[tuple[float, float]]]:
    """µs per token (wall, CPU) per figure; one sample per round."""
    mock = MockProvider()
    bedrock = BedrockProvider(models=(("fake", "fake.echo"),), region=REGION, endpoint_url=endpoint_url)
    mock_request = workload.chat_request(tokens)
    bedrock_request = ChatRequest(model="fake", messages=(ChatMessage(role="user", content=_PROMPT),))
    apps = {
        "mock": create_app(workload.settings(tokens), mock),
        "bedrock": create_app(workload.settings(tokens), bedrock),
    }
    bodies = {
        "mock": workload.openai_body(tokens),
        "bedrock": msgspec.json.encode(
            {"model": "fake", "stream": True, "messages": [{"role": "user", "content": _PROMPT}]}
        ),
    }

    def provider_alone(provider: Provider, request: ChatRequest) -> Callable[[], Awaitable[int]]:
        async def run() -> int:
            return sum([1 async for _ in provider.stream_chat(request)]) - 1  # the Finish is no token

        return run

    def through_ours(name: str) -> Callable[[], Awaitable[int]]:
        async def run() -> int:
            recorded = await call(apps[name], "POST", "/v1/chat/completions", body=bodies[name])
            if recorded.status != 200:
                raise RuntimeError(f"{name}: status {recorded.status}: {recorded.body[:300]!r}")
            return workload.count_openai_deltas(recorded.body)

        return run

    cases = {
        "mock provider alone": provider_alone(mock, mock_request),
        "bedrock provider alone": provider_alone(bedrock, bedrock_request),
        "ours, mock": through_ours("mock"),
        "ours, bedrock": through_ours("bedrock"),
    }
    samples: dict[str, list[tuple[float, float]]] = {}
    order = list(cases)
    for name in order:  # warm-up: imports, connections, first-call paths
        await timed(cases[name])
    shuffler = random.Random(11)
    for _ in range(rounds):
        shuffler.shuffle(order)
        for name in order:
            count, wall, cpu = await timed(cases[name])
            samples.setdefault(name, []).append((wall / count * 1e6, cpu / count * 1e6))
    await bedrock.aclose()
    return samples


def rows(samples: dict[str, list[tuple[float, float]]]) -> list[Row]:
    def figure(name: str, index: int) -> float:
        return median([sample[index] for sample in samples[name]])

    out: list[Row] = []
    for what, index in (("wall", 0), ("CPU", 1)):
        for scope in ("provider alone", "ours"):
            mock_name, bedrock_name = (
                ("mock provider alone", "bedrock provider alone")
                if scope == "provider alone"
                else ("ours, mock", "ours, bedrock")
            )
            ours, base = figure(bedrock_name, index), figure(mock_name, index)
            out.append(
                Row(
                    f"{scope}: bedrock vs mock, µs {what} per token",
                    f"{ours:.2f}",
                    f"{base:.2f}",
                    f"+{ours - base:.2f} µs",
                )
            )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = report.parser(__doc__)
    parser.add_argument("--tokens", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    tokens, rounds = (200, 1) if args.smoke else (args.tokens, args.rounds)
    logging.getLogger("tokenrelay").setLevel(logging.WARNING)
    os.environ.update(offline_bedrock_credentials())
    repeat = max(1, (tokens - 2) // 10)
    with fake_in_its_own_process(repeat) as endpoint_url:
        samples = asyncio.run(measure(2 + 10 * repeat, rounds, endpoint_url))
    print_table(
        TITLE,
        rows(samples),
        [
            f"{2 + 10 * repeat:,}-token streams, {rounds} interleaved rounds, medians; baseline: the mock "
            "at zero delay. The fake writes every frame at once: the wall figure is how fast we can read, "
            "not how fast a model writes."
        ],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
