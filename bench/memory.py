"""Memory: peak resident set of the streaming Lambda runtime serving 100 streams, one after the other.

The runtime is started as Lambda starts it (`app/lambda_/bootstrap`) under the fake Runtime API of the
Lambda tests; each invocation is a function-URL `GET /v1/stream` answered in full before the next.
Peak RSS is the kernel's high-water mark (`VmHWM`) read just before the process is stopped; growth is the
resident set after the last stream minus after the first. Baselines, in fresh processes serving the same
invocations: a bare `import litestar` process, our buffered handler and a minimal Mangum + FastAPI one.

    python -m bench.memory [--streams 100] [--rounds 3] [--smoke]
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from bench import report
from bench.client import ROOT
from bench.coldstart import child_env
from bench.coldstart_event import function_url_event
from bench.fake_openai import fake_openai
from bench.lambda_host import lambda_environment, rss_mb, running_fake, start_runtime
from bench.report import Row, median, print_table, ratio

TITLE = "Memory: peak RSS serving sequential streams"
TARGET_MB = 80.0

_HANDLER_LOOP = """
import sys
{imports}
from bench.coldstart_event import function_url_event, lambda_context
def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
first = None
for index in range({streams}):
    response = handler(function_url_event(query=f"prompt=stream+{{index}}"), lambda_context())
    assert response["statusCode"] == 200, response
    if first is None:
        first = rss("VmRSS")
print(rss("VmHWM"), rss("VmRSS") - first)
"""
_FLOOR = """
import litestar
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        print(int(line.split()[1]) / 1024, 0.0)
"""
HANDLERS = {
    "ours buffered handler, mock": "from handler import handler",
    "Mangum + FastAPI (buffered)": "from bench.baselines.mangum_fastapi import handler",
}


def events(streams: int) -> list[dict[str, Any]]:
    return [function_url_event(query=f"prompt=stream+{index}") for index in range(streams)]


def streaming_runtime(streams: int, provider: str, base_url: str) -> tuple[float, float]:
    """Peak RSS and growth (MB) of the real runtime after `streams` sequential streamed invocations."""
    extra = {"PROVIDER": provider}
    if provider == "openai":
        extra.update(OPENAI_API_KEY="sk-bench", OPENAI_BASE_URL=base_url)
    with running_fake() as fake, start_runtime(fake, env=lambda_environment(fake, **extra)) as process:
        first_rss = 0.0
        for index, event in enumerate(events(streams)):
            response = fake.response(fake.invoke(event), timeout_s=60)
            if not response.chunks:
                raise RuntimeError(f"invocation {index} streamed nothing")
            if index == 0:
                first_rss = rss_mb(process.pid, "VmRSS")
        return rss_mb(process.pid), rss_mb(process.pid, "VmRSS") - first_rss


def python_process(code: str, env: dict[str, str]) -> tuple[float, float]:
    command = [sys.executable, "-c", code]
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    peak, growth = done.stdout.split()[-2:]
    return float(peak), float(growth)


def measure(streams: int, rounds: int) -> dict[str, list[tuple[float, float]]]:
    samples: dict[str, list[tuple[float, float]]] = {}
    with fake_openai() as base_url:
        env = child_env({"PROVIDER": "mock"}, base_url)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        for _ in range(rounds):
            for provider in ("mock", "openai"):
                samples.setdefault(f"ours streaming runtime, {provider}", []).append(
                    streaming_runtime(streams, provider, base_url)
                )
            for label, imports in HANDLERS.items():
                code = _HANDLER_LOOP.format(imports=imports, streams=streams)
                samples.setdefault(label, []).append(python_process(code, env))
            samples.setdefault("import litestar", []).append(python_process(_FLOOR, env))
    return samples


def rows(samples: dict[str, list[tuple[float, float]]], streams: int) -> list[Row]:
    peak = {label: median(p for p, _ in values) for label, values in samples.items()}
    growth = {label: median(g for _, g in values) for label, values in samples.items()}
    floor = peak["import litestar"]
    out = [Row("import litestar, nothing served (MB)", f"{floor:.1f}")]
    for provider in ("mock", "openai"):
        label = f"ours streaming runtime, {provider}"
        out += [
            Row(
                f"{label}: peak RSS after {streams} streams (MB)",
                f"{peak[label]:.1f}",
                f"{floor:.1f}",
                ratio(peak[label], floor),
                f"< {TARGET_MB:g} MB",
                peak[label] < TARGET_MB,
            ),
            Row(f"{label}: RSS growth, stream 1 to {streams} (MB)", f"{growth[label]:+.1f}"),
        ]
    ours, theirs = "ours buffered handler, mock", "Mangum + FastAPI (buffered)"
    out += [
        Row(
            f"buffered handler, mock: peak RSS after {streams} (MB) vs Mangum + FastAPI",
            f"{peak[ours]:.1f}",
            f"{peak[theirs]:.1f}",
            ratio(peak[ours], peak[theirs]),
        ),
        Row(
            f"buffered handler: RSS growth, 1 to {streams} (MB)",
            f"{growth[ours]:+.1f}",
            f"{growth[theirs]:+.1f}",
        ),
    ]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = report.parser(__doc__)
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    streams, rounds = (3, 1) if args.smoke else (args.streams, args.rounds)
    samples = measure(streams, rounds)
    print_table(
        TITLE,
        rows(samples, streams),
        [
            f"{streams} sequential invocations per process, {rounds} rounds, medians; "
            f"Python {sys.version.split()[0]} ({os.uname().machine}), the project's virtualenv."
        ],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
