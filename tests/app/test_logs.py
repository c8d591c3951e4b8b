"""Structured logs: one JSON object per line on stderr, one `stream_end` per stream, no secrets ever."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from litestar.testing import TestClient

from app.factory import create_app
from app.logs import JsonFormatter, configure_logging, log_event
from app.settings import Secret, Settings
from tests.app.helpers import ScriptedProvider, deltas, user

_CLIENT_KEY = "tr-client-key-SHOULD-NOT-LEAK-4417"
_UPSTREAM_KEY = "sk-upstream-SHOULD-NOT-LEAK-9921"
_PROMPT = "my confidential prompt text"
_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def restore_loggers() -> Iterator[None]:
    """`configure_logging` rewires process-wide loggers; put them back for the next test."""
    names = ("tokenrelay", "uvicorn", "uvicorn.error", "providers")
    saved = [
        (logging.getLogger(n), logging.getLogger(n).handlers[:], logging.getLogger(n).level) for n in names
    ]
    propagate = [logging.getLogger(n).propagate for n in names]
    yield
    for (logger, handlers, level), flag in zip(saved, propagate, strict=True):
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = flag


def _record(message: str, level: int = logging.INFO, **fields: Any) -> logging.LogRecord:
    record = logging.LogRecord("tokenrelay", level, __file__, 1, message, None, None)
    record.fields = fields
    return record


def test_the_formatter_writes_one_json_object_on_one_line() -> None:
    line = JsonFormatter().format(_record("stream_end", outcome="completed", text="two\nlines", n=3))

    assert "\n" not in line
    entry = msgspec.json.decode(line)
    assert entry["event"] == "stream_end"
    assert (entry["level"], entry["logger"]) == ("info", "tokenrelay")
    assert (entry["outcome"], entry["text"], entry["n"]) == ("completed", "two\nlines", 3)
    assert isinstance(entry["ts"], float)


def test_an_exception_is_logged_as_its_type_only() -> None:
    try:
        raise ValueError("the prompt was: " + _PROMPT)
    except ValueError:
        record = _record("unhandled_error", logging.ERROR)
        record.exc_info = sys.exc_info()

    line = JsonFormatter().format(record)

    assert msgspec.json.decode(line)["exc_type"] == "ValueError"
    assert _PROMPT not in line
    assert "Traceback" not in line


def test_configure_logging_sends_json_lines_to_stderr(
    restore_loggers: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO")

    log_event("hello", answer=42)
    logging.getLogger("uvicorn.error").info("server says %s", "hi")
    logging.getLogger("providers.bedrock").warning("Amazon Bedrock failed (%s)", "ThrottlingException")
    log_event("quiet", logging.DEBUG)

    out, err = capsys.readouterr()
    assert out == ""
    lines = [msgspec.json.decode(line) for line in err.splitlines()]
    assert [(line["event"], line["logger"]) for line in lines] == [
        ("hello", "tokenrelay"),
        ("server says hi", "uvicorn.error"),
        ("Amazon Bedrock failed (ThrottlingException)", "providers.bedrock"),
    ]
    assert lines[0]["answer"] == 42


def test_no_secret_or_prompt_reaches_the_logs_or_the_clients(
    restore_loggers: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("DEBUG")
    settings = Settings(
        mock_token_delay_ms=0,
        api_keys=(Secret(_CLIENT_KEY),),
        openai_api_key=Secret(_UPSTREAM_KEY),
    )
    good = {"authorization": f"Bearer {_CLIENT_KEY}"}
    responses: list[httpx.Response] = []
    with TestClient(create_app(settings)) as client:
        responses += [
            client.post("/v1/stream", json={"messages": user(_PROMPT)}, headers=good),
            client.post(
                "/v1/chat/completions", json={"messages": user(_PROMPT), "stream": True}, headers=good
            ),
            client.post("/v1/chat/completions", json={"messages": user(_PROMPT)}, headers=good),
            client.get("/v1/stream", params={"prompt": _PROMPT, "mock": '{"fail_after": 2}'}, headers=good),
            client.post(
                "/v1/stream", json={"messages": user(_PROMPT), "mock": {"error": "auth"}}, headers=good
            ),
            client.post("/v1/stream", json={"messages": user(_PROMPT), "mock": {"error": "x"}}, headers=good),
            client.post(
                "/v1/stream", json={"messages": user(_PROMPT)}, headers={"authorization": "Bearer wrong"}
            ),
            client.post(
                "/v1/stream",
                json={"messages": user(_PROMPT)},
                headers={"authorization": f"Bearer {_CLIENT_KEY}x"},
            ),
            client.post(
                "/v1/stream", content=b"{broken", headers={**good, "content-type": "application/json"}
            ),
            client.get("/v1/models", headers=good),
        ]
    # A provider bug whose message quotes a secret: the client gets "internal server error", the log a type.
    buggy = ScriptedProvider([*deltas("a"), RuntimeError(f"bug while holding {_UPSTREAM_KEY}")])
    with TestClient(create_app(settings, buggy)) as client:
        responses.append(client.post("/v1/stream", json={"messages": user(_PROMPT)}, headers=good))

    err = capsys.readouterr().err
    lines = [msgspec.json.decode(line) for line in err.splitlines() if line.startswith("{")]
    assert [r.status_code for r in responses] == [200, 200, 200, 200, 401, 400, 401, 401, 400, 200, 200]
    assert sum(line["event"] == "stream_end" for line in lines) == 6
    assert [line["exc_type"] for line in lines if line["event"] == "provider_bug"] == ["RuntimeError"]
    assert "internal server error" in responses[-1].text
    for text in [err, *(r.text for r in responses), *(str(r.headers) for r in responses)]:
        assert _CLIENT_KEY not in text
        assert _UPSTREAM_KEY not in text
        assert "Traceback" not in text
    assert _PROMPT not in err


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_the_server_process_logs_json_lines_without_secrets() -> None:
    """`python -m app` as deployed: settings from the environment, uvicorn, JSON on stderr."""
    port = _free_port()
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("OPENAI_", "PROVIDER", "API_KEYS", "LOG_"))
        },
        "PROVIDER": "mock",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "API_KEYS": _CLIENT_KEY,
        "OPENAI_API_KEY": _UPSTREAM_KEY,
        "MOCK_TOKEN_DELAY_MS": "0",
        "PYTHONPATH": str(_ROOT),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "app"],
        cwd=_ROOT,
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump_stderr() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=pump_stderr, daemon=True)
    reader.start()
    seen: list[str] = []
    try:
        while not any("Application startup complete" in line for line in seen):
            line = lines.get(timeout=15)
            assert line is not None, f"the server exited early: {seen}"
            seen.append(line)
        good = {"authorization": f"Bearer {_CLIENT_KEY}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            ok = client.post("/v1/stream", json={"messages": user(_PROMPT)}, headers=good)
            failing = client.post(
                "/v1/stream", json={"messages": user(_PROMPT), "mock": {"fail_after": 1}}, headers=good
            )
            refused = client.get("/v1/models", headers={"authorization": "Bearer nope"})
            limited = client.post(
                "/v1/chat/completions",
                json={"messages": user(_PROMPT), "mock": {"error": "rate_limit"}},
                headers=good,
            )
        assert (ok.status_code, failing.status_code, refused.status_code, limited.status_code) == (
            200,
            200,
            401,
            429,
        )
        _exercise_every_key_carrying_transport(port)
    finally:
        process.terminate()
        process.wait(timeout=15)
        assert process.stdout is not None
        process.stdout.close()
    reader.join(timeout=5)
    while (line := lines.get(timeout=5)) is not None:
        seen.append(line)
    assert process.stderr is not None
    process.stderr.close()

    entries = [msgspec.json.decode(line) for line in seen]  # every line is one JSON object
    events = [entry["event"] for entry in entries]
    assert events[0] == "server_start"
    assert entries[0]["auth"] == "api_keys"
    ends = [entry for entry in entries if entry["event"] == "stream_end"]
    # POST ok, GET, two WebSocket prompts (key in the URL, key in the first message); two failures.
    assert sorted(entry["outcome"] for entry in ends) == ["completed"] * 4 + ["error"] * 2
    assert all(
        {"request_id", "provider", "model", "ttft_ms", "duration_ms", "completion_tokens"} <= set(e)
        for e in ends
    )
    text = "".join(seen)
    assert _CLIENT_KEY not in text
    assert _WRONG_KEY not in text
    assert _UPSTREAM_KEY not in text
    assert _PROMPT not in text
    assert "Traceback" not in text
    # uvicorn logs each WebSocket handshake with its path: the query string (keys, prompts) is redacted.
    with_query = [entry["event"] for entry in entries if "WebSocket /v1/ws?" in entry["event"]]
    assert len(with_query) == 2
    assert all('"WebSocket /v1/ws?[redacted]"' in line for line in with_query)


_WRONG_KEY = "k1-wrong-key-typed-by-someone"


def _exercise_every_key_carrying_transport(port: int) -> None:
    """Keys travel in a header (HTTP), in the WebSocket URL (browsers cannot set headers there) or in its
    first message; prompts travel in query strings too (`GET /v1/stream`, EventSource)."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    base = f"127.0.0.1:{port}"
    with httpx.Client(base_url=f"http://{base}", timeout=10) as client:
        got = client.get(
            "/v1/stream", params={"prompt": _PROMPT}, headers={"authorization": f"Bearer {_CLIENT_KEY}"}
        )
        assert got.status_code == 200
    for key in (_CLIENT_KEY, _WRONG_KEY):
        url = f"ws://{base}/v1/ws?api_key={key}&prompt={_PROMPT.replace(' ', '+')}"
        # The server answers the wrong key with an error message, then closes.
        with connect(url) as socket, contextlib.suppress(ConnectionClosed):
            socket.send('{"type": "prompt", "id": "p1", "messages": [{"role": "user", "content": "hi"}]}')
            while msgspec.json.decode(socket.recv(timeout=10))["type"] not in ("done", "error"):
                pass
    with connect(f"ws://{base}/v1/ws") as socket:
        socket.send(msgspec.json.encode({"type": "auth", "api_key": _CLIENT_KEY}).decode())
        socket.send('{"type": "prompt", "id": "p1", "messages": [{"role": "user", "content": "hi"}]}')
        while msgspec.json.decode(socket.recv(timeout=10))["type"] not in ("done", "error"):
            pass
