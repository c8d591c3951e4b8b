"""End to end through AWS's Runtime Interface Emulator, the Lambda stand-in that `sam local invoke` runs.

The emulator buffers a streamed response (one body, trailers dropped), so it cannot show timing; what it
proves is the contract with a Runtime API that AWS wrote rather than us: it accepts our streaming POST,
our error reports and our init error, and starts the runtime through the wrapper script as Lambda does.
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.app.lambda_.conftest import function_url_event, load_event
from tests.app.lambda_.fake_runtime_api import DELIMITER, ROOT, WRAPPER
from tests.support.server import free_port
from tests.support.sse import events, parse_frames
from tests.support.tools import rie_binary

INVOKE_PATH = "/2015-03-31/functions/function/invocations"


@dataclass
class Emulator:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def invoke(self, event: dict[str, Any]) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request("POST", INVOKE_PATH, body=json.dumps(event))
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()


def wait_until_listening(port: int, process: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """The emulator logs nothing when its invoke port opens: try to connect until it does (or exits)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the emulator exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.02)
    raise AssertionError(f"the emulator did not listen on {port} within {timeout_s}s")


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Callable[..., Emulator]]:
    binary = rie_binary()
    if binary is None:
        pytest.skip(
            "the Runtime Interface Emulator is not fetched: `make test` does (python -m tests.support.tools)"
        )
    started: list[Emulator] = []

    def start(**env: str) -> Emulator:
        port = free_port()
        log = tmp_path / f"rie-{len(started)}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [
                    str(binary),
                    "--runtime-interface-emulator-address",
                    f"127.0.0.1:{port}",
                    "--runtime-api-address",
                    f"127.0.0.1:{free_port()}",
                    "--log-level",
                    "error",
                    # What Lambda's python3.12 bootstrap does when AWS_LAMBDA_EXEC_WRAPPER is set.
                    str(WRAPPER),
                    sys.executable,
                    "-u",
                    "/var/runtime/bootstrap.py",
                ],
                env={
                    "PATH": "/usr/local/bin:/usr/bin:/bin",
                    "LANG": "C.UTF-8",
                    "LAMBDA_TASK_ROOT": str(ROOT),
                    "AWS_LAMBDA_FUNCTION_TIMEOUT": "30",
                    "AWS_REGION": "eu-west-1",
                    **env,
                },
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        emulator = Emulator(process, port, log)
        started.append(emulator)
        wait_until_listening(port, process)
        return emulator

    yield start
    for emulator in started:
        emulator.process.terminate()
        emulator.process.wait(10)


def split(body: bytes) -> tuple[dict[str, Any], bytes]:
    prelude, sep, rest = body.partition(DELIMITER)
    assert sep, body[:200]
    decoded: dict[str, Any] = json.loads(prelude)
    return decoded, rest


def test_the_emulator_takes_our_streamed_responses_one_after_another(
    emulator: Callable[..., Emulator],
) -> None:
    rie = emulator()

    status, stream = rie.invoke(load_event("function-url-stream.json"))
    chat_status, chat = rie.invoke(load_event("function-url-chat.json"))

    assert (status, chat_status) == (200, 200)
    prelude, body = split(stream)
    assert prelude["statusCode"] == 200
    assert prelude["headers"]["content-type"] == "text/event-stream; charset=utf-8"
    frames = events(parse_frames(body))
    assert [f.event for f in frames] == ["start"] + ["delta"] * 24 + ["done"]
    assert events(parse_frames(split(chat)[1]))[-1].data == "[DONE]"
    assert rie.log.read_text().count('"event":"lambda_runtime_ready"') == 1


def test_a_mid_stream_failure_still_ends_the_body_in_band(emulator: Callable[..., Emulator]) -> None:
    rie = emulator()
    body = {"messages": [{"role": "user", "content": "x"}], "mock": {"fail_after": 2}}

    status, stream = rie.invoke(function_url_event("POST", "/v1/stream", body))

    # The emulator drops trailers (Lambda does not), so the in-band event is what a client sees here.
    assert status == 200
    frames = events(parse_frames(split(stream)[1]))
    assert [f.event for f in frames] == ["start", "delta", "delta", "error"]
    assert frames[-1].json()["error"]["code"] == "upstream_stream_error"


def test_an_event_that_cannot_stream_comes_back_as_the_function_error(
    emulator: Callable[..., Emulator],
) -> None:
    rie = emulator()

    status, body = rie.invoke(load_event("alb.json"))

    assert status == 200  # the emulator answers function errors with 200 and the error document
    assert json.loads(body)["errorType"] == "Function.UnsupportedEvent"


def test_an_init_error_fails_the_invocation_with_its_report(emulator: Callable[..., Emulator]) -> None:
    rie = emulator(PROVIDER="bogus")

    status, body = rie.invoke(load_event("function-url-stream.json"))

    assert status == 502
    report = json.loads(body)
    assert report["errorType"] == "Runtime.ConfigurationError"
    assert "PROVIDER='bogus'" in report["errorMessage"]
