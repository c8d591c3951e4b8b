"""Resume across two processes of the service sharing the DynamoDB stream log: `python -m app` twice, as a
user runs it, both on a dynalite server (a DynamoDB-compatible server from npm) on 127.0.0.1. The stream
starts on A, its client drops after a few deltas, and a second client resumes it on B."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.aws import (
    REGION,
    ROOT,
    create_declared_table,
    dynamodb_client,
    offline_credentials,
)
from tests.support.server import free_port
from tests.support.sse import Frame, events, parse_frames

PROMPT = "Explain server-sent events"
TABLE = "tokenrelay-resume"


def _environment(endpoint: str, port: int) -> dict[str, str]:
    # Credentials that could never reach a real account, and no profile to find others.
    kept = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    return {
        **kept,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "MOCK_TOKEN_DELAY_MS": "10",
        "STREAM_TABLE": TABLE,
        "STREAM_LOG_FLUSH_MS": "50",
        "STREAM_LOG_POLL_MS": "50",
        "AWS_ENDPOINT_URL_DYNAMODB": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }


@contextmanager
def _service(endpoint: str, log_path: Path) -> Iterator[str]:
    """`python -m app` in a process of its own, until the block ends: its base URL."""
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "app"], cwd=ROOT, env=_environment(endpoint, port), stdout=log, stderr=log
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log_path.read_text()
            try:
                if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the service did not start"
            time.sleep(0.1)
        yield base_url
    finally:
        process.terminate()
        process.wait(10)


def _first_deltas(base_url: str, count: int) -> tuple[str, list[Frame]]:
    body = {"messages": [{"role": "user", "content": PROMPT}], "resumable": True}
    frames: list[Frame] = []
    with httpx.stream("POST", f"{base_url}/v1/stream", json=body, timeout=10) as response:
        assert response.status_code == 200
        stream_id = response.headers["x-stream-id"]
        buffer = b""
        for chunk in response.iter_bytes():
            complete, _, buffer = (buffer + chunk).rpartition(b"\n\n")
            if complete:
                frames += events(parse_frames(complete + b"\n\n"))
            if sum(frame.event == "delta" for frame in frames) >= count:
                break
    return stream_id, frames


def _text(frames: list[Frame]) -> str:
    return "".join(str(frame.json()["text"]) for frame in frames if frame.event == "delta")


def test_a_stream_started_on_one_process_is_resumed_on_another(
    dynalite_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    offline_credentials(monkeypatch)
    client: Any = dynamodb_client(dynalite_endpoint)
    create_declared_table(client, TABLE, time_to_live=False)

    with (
        _service(dynalite_endpoint, tmp_path / "a.log") as a,
        _service(dynalite_endpoint, tmp_path / "b.log") as b,
    ):
        stream_id, before = _first_deltas(a, 5)
        resumed = httpx.get(
            f"{b}/v1/streams/{stream_id}/events", headers={"Last-Event-ID": before[-1].id or ""}, timeout=30
        )
        whole = httpx.post(
            f"{a}/v1/stream", json={"messages": [{"role": "user", "content": PROMPT}]}, timeout=30
        )

    assert resumed.status_code == 200
    after = events(parse_frames(resumed.content))
    frames = before + after
    assert [frame.id for frame in frames] == [str(n) for n in range(1, len(frames) + 1)]
    assert _text(frames) == _text(events(parse_frames(whole.content)))
    assert after[-1].event == "done"
