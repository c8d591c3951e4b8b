"""Run every benchmark and print its table: `python -m bench [--smoke] [--only overhead,ttfb,...]`."""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import subprocess
import time
from collections.abc import Sequence

from bench.client import ROOT

SCRIPTS = (
    "overhead",
    "ttfb",
    "lambda_stream",
    "coldstart",
    "memory",
    "package",
    "concurrency",
    "stream_log_writes",
    "bedrock_overhead",
)


def machine() -> str:
    def output(*command: str) -> str:
        try:
            return subprocess.run(
                command, capture_output=True, text=True, check=False, cwd=ROOT
            ).stdout.strip()
        except OSError:
            return "?"

    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in output("lscpu").splitlines()
            if line.startswith("Model name")
        ),
        platform.processor() or "?",
    )
    return (
        f"{time.strftime('%Y-%m-%d %H:%M:%S')} · commit {output('git', 'rev-parse', '--short', 'HEAD')} · "
        f"{os.cpu_count()} CPUs ({model}) · {platform.system()} {platform.release()} · "
        f"Python {platform.python_version()}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: proves every script runs")
    parser.add_argument(
        "--only", default=",".join(SCRIPTS), help="comma-separated subset of " + ", ".join(SCRIPTS)
    )
    args = parser.parse_args(argv)
    chosen = [name for name in args.only.split(",") if name]
    unknown = sorted(set(chosen) - set(SCRIPTS))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    print(f"## Benchmarks{' (smoke)' if args.smoke else ''}\n\n{machine()}\n", flush=True)
    for name in chosen:
        module = importlib.import_module(f"bench.{name}")
        started = time.perf_counter()
        module.main(["--smoke"] if args.smoke else [])
        print(f"_{name}: {time.perf_counter() - started:.0f} s_\n", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
