"""Every benchmark runs at smoke size and prints its table, so the scripts cannot rot.

Nothing here asserts a time: on a shared two-core machine the numbers of a smoke run mean nothing.
"""

from __future__ import annotations

import importlib
import re

import pytest

from bench.report import HEADER
from tests.support.browser import MISSING, find_chromium, in_ci

EXPECTED_ROWS = {
    "overhead": [
        "/v1/stream tokens/s vs bare ASGI",
        "/v1/chat/completions tokens/s vs FastAPI + sse-starlette",
    ],
    "ttfb": ["uvicorn /v1/stream added p50 (ms)", "Lambda streaming runtime /v1/stream added p50 (ms)"],
    "coldstart": [
        "ours buffered handler, mock vs import litestar",
        "ours streaming runtime, mock vs import litestar",
        "ours streaming runtime, mock, CANCEL_TABLE vs without the table",
        "mock path imports openai",
        "ours streaming runtime, bedrock vs import litestar",
    ],
    "memory": ["ours streaming runtime, mock: peak RSS after 3 streams (MB)"],
    "package": ["zipped artifact (MB)", "largest: tokenrelay (our code)"],
    "concurrency": ["lost tokens", "corrupted tokens", "server CPU per 1,000 tokens (ms)"],
    "bedrock_overhead": ["ours: bedrock vs mock, µs CPU per token"],
    "lambda_stream": ["/v1/stream deltas/s vs bare ASGI", "HTTP chunks to the Runtime API per 1,000 deltas"],
    "stream_log_writes": [
        "write requests per 1,000 tokens, no delay",
        "write requests per 1,000 tokens, 20 ms apart",
    ],
}


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", sorted(EXPECTED_ROWS))
def test_a_smoke_run_prints_the_table(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    module = importlib.import_module(f"bench.{name}")

    assert module.main(["--smoke"]) == 0

    printed = capsys.readouterr().out
    assert re.search(r"\s*\|\s*".join(re.escape(column) for column in HEADER), printed), printed
    for row in EXPECTED_ROWS[name]:
        assert f"| {row}" in printed, f"{row!r} missing from:\n{printed}"


@pytest.mark.browser
@pytest.mark.timeout(180)
def test_the_page_render_benchmark_runs_in_chromium(capsys: pytest.CaptureFixture[str]) -> None:
    if find_chromium() is None:
        if in_ci():
            pytest.fail(f"CI must run the browser benchmarks: {MISSING}")
        pytest.skip(MISSING)
    from bench import page_render

    assert page_render.main(["--smoke"]) == 0

    printed = capsys.readouterr().out
    # Both renderers were handed every delta of the answer.
    assert re.search(r"\| deltas rendered\s*\| 200\s*\| 200\s*\|", printed), printed
    for row in ("longest main-thread task (trace)", "main thread busy (sum of tasks)"):
        assert f"| {row}" in printed, f"{row!r} missing from:\n{printed}"
