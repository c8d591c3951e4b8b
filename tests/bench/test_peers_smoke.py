"""`make bench-peers` at smoke size: every column streams the whole workload and the table comes out.

Nothing here asserts a time. LiteLLM runs from its own virtualenv (`.venv-peers`, which `make bench-peers`
installs); without it, its test is skipped, saying so.
"""

from __future__ import annotations

import re

import pytest

from bench import peers


def _row(printed: str, figure: str) -> list[str]:
    line = next(line for line in printed.splitlines() if line.startswith(f"| {figure}"))
    return [cell.strip() for cell in line.strip("|").split("|")][1:]


def _smoke(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert peers.main(["--smoke", *args]) == 0
    return capsys.readouterr().out


@pytest.mark.timeout(120)
def test_every_app_streams_the_same_chunks_on_both_stacks(capsys: pytest.CaptureFixture[str]) -> None:
    printed = _smoke(capsys, "--no-litellm", "--stacks", "fast,h11")

    labels = [t.label for t in peers.targets(["fast", "h11"]) if t.app != "litellm"]
    header = next(line for line in printed.splitlines() if line.startswith("| figure"))
    assert [cell.strip() for cell in header.strip("|").split("|")][1:] == labels
    wrong = _row(printed, "streams with a wrong chunk count or text")
    assert all(re.fullmatch(r"0 of [1-9]\d*", cell) for cell in wrong), wrong
    rates = _row(printed, "content chunks/s at concurrency 1 / 16 / 64")
    assert all(re.fullmatch(r"(\d+\.\d\dk / ){2}\d+\.\d\dk", cell) for cell in rates), rates
    assert "tokenrelay `/v1/chat/completions` / tokenrelay chat, h11:" in printed


@pytest.mark.timeout(180)
@pytest.mark.skipif(
    peers.litellm_missing() is not None, reason=f"LiteLLM column not tested: {peers.litellm_missing()}"
)
def test_litellm_streams_the_same_chunks_as_ours(capsys: pytest.CaptureFixture[str]) -> None:
    printed = _smoke(capsys, "--stacks", "fast")

    header = next(line for line in printed.splitlines() if line.startswith("| figure"))
    column = [cell.strip() for cell in header.strip("|").split("|")][1:].index(
        "LiteLLM proxy (`mock_response`)"
    )
    assert re.fullmatch(r"0 of [1-9]\d*", _row(printed, "streams with a wrong chunk count or text")[column])
    assert _row(printed, "startup to first stream (s)")[column] != "not run"
