"""Lambda, played locally: the fake Runtime API of the Lambda tests, and runtimes started as Lambda would.

The fake (`tests/app/lambda_/fake_runtime_api.py`) records every streamed chunk with the `time.monotonic()` of
its arrival; that is CLOCK_MONOTONIC, the clock `time.perf_counter()` reads in every process here.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.client import ROOT
from tests.app.lambda_.fake_runtime_api import (
    DELIMITER,
    WRAPPER,
    FakeRuntimeApi,
    Request,
    running_fake,
)
from tests.app.lambda_.fake_runtime_api import lambda_environment as base_environment

__all__ = ["FakeRuntimeApi", "first_body_chunk_at", "lambda_environment", "running_fake", "start_runtime"]


def lambda_environment(fake: FakeRuntimeApi, **overrides: str) -> dict[str, str]:
    """Lambda's variables (as the Lambda tests set them), sized and quietened for benchmarks."""
    return base_environment(
        fake,
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE="128",
        LOG_LEVEL="WARNING",
        PYTHONDONTWRITEBYTECODE="1",
        **overrides,
    )


@contextmanager
def start_runtime(
    fake: FakeRuntimeApi, command: list[str] | None = None, env: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A runtime process: by default the real one, through the wrapper, as Lambda starts it.

    Its output goes to a temporary file, shown if the block fails: a runtime that cannot start is
    otherwise only a timeout.
    """
    argv = command or [str(WRAPPER), sys.executable, "-u", "/var/runtime/bootstrap.py"]
    environment = dict(env) if env is not None else lambda_environment(fake)
    environment.setdefault("PYTHONPATH", str(ROOT))
    with (
        tempfile.TemporaryFile() as log,
        subprocess.Popen(
            argv, cwd=ROOT, env=environment, stdin=subprocess.DEVNULL, stdout=log, stderr=log
        ) as process,
    ):
        try:
            yield process
        except BaseException:
            log.seek(0)
            print(log.read()[-4000:].decode(errors="replace"), file=sys.stderr)
            raise
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def first_body_chunk_at(response: Request) -> float:
    """When the first chunk holding body bytes (after the prelude's delimiter) arrived (monotonic s)."""
    seen = b""
    for chunk in response.chunks:
        seen += chunk.data
        _, found, body = seen.partition(DELIMITER)
        if found and body:
            return chunk.at
    raise RuntimeError(f"no body after the prelude in {len(response.chunks)} chunks")


def wait_response(fake: FakeRuntimeApi, request_id: str, timeout_s: float = 60.0) -> Request:
    return fake.response(request_id, timeout_s=timeout_s)


def rss_mb(pid: int, field: str = "VmHWM") -> float:
    """The process's peak (VmHWM) or current (VmRSS) resident set, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for process {pid}")


def now() -> float:
    return time.perf_counter()


def invoke_all(fake: FakeRuntimeApi, events: list[dict[str, Any]], timeout_s: float = 60.0) -> list[Request]:
    """One invocation after the other, each waited for."""
    return [wait_response(fake, fake.invoke(event), timeout_s) for event in events]
