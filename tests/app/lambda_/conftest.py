"""Lambda test fixtures: the fake Runtime API, the runtime as Lambda starts it, moto, sample events."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.app.lambda_.fake_runtime_api import (
    ROOT,
    WRAPPER,
    FakeRuntimeApi,
    lambda_environment,
    running_fake,
)
from tests.support.aws import create_declared_table, offline_aws

EVENTS = ROOT / "events"


def load_event(name: str, **changes: Any) -> dict[str, Any]:
    """A sample event from `events/`, with top-level keys replaced."""
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    event.update(changes)
    return event


def deadline_budget_s(message: str) -> float:
    """The budget a `deadline` error names: "the stream ran longer than 0.6s" -> 0.6."""
    match = re.fullmatch(r"the stream ran longer than ([0-9.]+)s", message)
    assert match is not None, message
    return float(match.group(1))


def function_url_event(method: str, path: str, body: Any = None, *, query: str = "") -> dict[str, Any]:
    """A function-URL (payload 2.0) event for any request, built on the sample one."""
    event = load_event("function-url-stream.json")
    event["rawPath"] = path
    event["rawQueryString"] = query
    event["requestContext"]["http"].update(method=method, path=path)
    event["body"] = None if body is None else json.dumps(body)
    return event


@pytest.fixture
def fake() -> Iterator[FakeRuntimeApi]:
    with running_fake() as api:
        yield api


@dataclass
class RuntimeProcess:
    """The streaming runtime in a child process, started the way Lambda starts a wrapper script."""

    process: subprocess.Popen[bytes]
    log_path: Path

    def logs(self) -> list[dict[str, Any]]:
        lines = self.log_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def wait(self, timeout_s: float = 15.0) -> int:
        return self.process.wait(timeout_s)


StartRuntime = Callable[..., RuntimeProcess]


@pytest.fixture
def start_runtime(fake: FakeRuntimeApi, tmp_path: Path) -> Iterator[StartRuntime]:
    """Start `app/lambda_/bootstrap <interpreter> <original args>`; SIGTERM and reap it after the test."""
    started: list[RuntimeProcess] = []

    def start(**env: str) -> RuntimeProcess:
        log_path = tmp_path / f"runtime-{len(started)}.log"
        with log_path.open("wb") as log:
            # Lambda passes the runtime's own start command; the wrapper must replace it, not run it.
            process = subprocess.Popen(
                [str(WRAPPER), sys.executable, "-u", "/var/runtime/bootstrap.py"],
                env=lambda_environment(fake, **env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        runtime = RuntimeProcess(process, log_path)
        started.append(runtime)
        return runtime

    yield start
    for runtime in started:
        if runtime.process.poll() is None:
            runtime.process.terminate()
        try:
            runtime.process.wait(10)
        except subprocess.TimeoutExpired:
            runtime.process.kill()
            runtime.process.wait(5)
            raise


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto's in-process AWS, with credentials that could never reach a real account."""
    with offline_aws(monkeypatch):
        yield


@pytest.fixture
def cancel_table(aws: None) -> str:
    """The cancel table, created in moto exactly as template.yaml declares it."""
    import boto3

    name = "tokenrelay-cancels"
    create_declared_table(boto3.client("dynamodb"), name)
    return name
