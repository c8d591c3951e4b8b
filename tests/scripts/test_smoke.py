"""`make smoke` (scripts/smoke.py) run as users run it, against real servers on 127.0.0.1.

Our app under uvicorn streams; a proxy in front of it can buffer the whole answer (as an HTTP API or a
misconfigured CDN would), stand in for API Gateway's key check, or cut the stream before its last event. The
mock paces its tokens at the 100 ms the script asks for, so a streamed answer has clearly separated chunks
and a buffered one none: the verdict never depends on how fast this machine is.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import httpx
import pytest

from app.factory import create_app
from app.settings import Secret, Settings
from providers.mock import MockProvider
from scripts.smoke import Measurement, judge
from tests.support.aws import ROOT
from tests.support.server import serve

BEARER = "key-1"
GATEWAY_KEY = "gw-key-1"
Mode = Literal["buffer", "gateway", "cut"]


@pytest.fixture(scope="module")
def app_url() -> Iterator[str]:
    with serve(create_app(Settings(api_keys=(Secret(BEARER),)), MockProvider())) as server:
        yield server.base_url


def smoke(
    url: str, *, key: str | None = None, gateway_key: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", ""), "SMOKE_KEY": key or "", "SMOKE_GATEWAY_KEY": gateway_key or ""}
    done = subprocess.run(
        [sys.executable, "-m", "scripts.smoke", url],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    print(done.stdout + done.stderr)  # what `make smoke` printed (pytest -rP shows it)
    return done


def verdict(done: subprocess.CompletedProcess[str]) -> str:
    """The last line the script printed: its verdict."""
    return (done.stdout + done.stderr).strip().splitlines()[-1]


class _Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        mode: Mode = self.server.mode
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        forwarded = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
        if mode == "gateway" and self.headers.get("x-api-key") != GATEWAY_KEY:
            # What API Gateway answers for a missing or unknown key on a route that requires one.
            self._send(403, {"x-amzn-ErrorType": "ForbiddenException", "Content-Type": "application/json"})
            self._body(b'{"message":"Forbidden"}')
            return
        url = self.server.upstream + self.path
        with httpx.Client(timeout=30) as client:
            if mode == "buffer":
                answer = client.post(url, content=body, headers=forwarded)
                self._send(answer.status_code, {"Content-Type": answer.headers["content-type"]})
                self._body(answer.content)  # the whole answer, once the upstream has finished it
                return
            with client.stream("POST", url, content=body, headers=forwarded) as streamed:
                self._send(
                    streamed.status_code, {"Content-Type": streamed.headers["content-type"]}, chunked=True
                )
                for chunk in streamed.iter_raw():
                    if mode == "cut" and b"event: done" in chunk:
                        break  # as a proxy that drops the connection before the end
                    self.wfile.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

    def _send(self, status: int, headers: dict[str, str], *, chunked: bool = False) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()

    def _body(self, data: bytes) -> None:
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()


@contextmanager
def proxy(upstream: str, mode: Mode) -> Iterator[str]:
    """A proxy on 127.0.0.1 in front of `upstream`, behaving as `mode` says."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    server.daemon_threads = True
    server.mode = mode  # type: ignore[attr-defined]
    server.upstream = upstream  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host!s}:{port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_our_server_streams(app_url: str) -> None:
    done = smoke(app_url, key=BEARER)

    assert done.returncode == 0, done.stdout + done.stderr
    assert verdict(done).startswith("smoke: streamed: ")
    assert "ending with `done`" in verdict(done)
    figures = done.stdout.splitlines()[1]
    for figure in ("ttfb ", "chunks ", "gap median ", "gap max ", "total "):
        assert figure in figures


def test_a_proxy_that_buffers_the_whole_answer_is_caught(app_url: str) -> None:
    with proxy(app_url, "buffer") as url:
        done = smoke(url, key=BEARER)

    assert done.returncode == 1
    assert verdict(done).startswith("smoke: buffered: ")
    assert "in one burst" in verdict(done)


def test_a_wrong_bearer_key_names_the_authorization_header(app_url: str) -> None:
    done = smoke(app_url, key="not-a-key")

    assert done.returncode == 1
    assert verdict(done) == "smoke: auth failed: the Bearer key in the Authorization header (KEY) was refused"
    assert "not-a-key" not in done.stdout + done.stderr
    missing = smoke(app_url)
    assert missing.returncode == 1
    assert "wants a Bearer key in the Authorization header (KEY=...)" in verdict(missing)


def test_a_gateway_key_refused_by_api_gateway_names_the_x_api_key_header(app_url: str) -> None:
    with proxy(app_url, "gateway") as url:
        wrong = smoke(url, key=BEARER, gateway_key="not-a-gateway-key")
        missing = smoke(url, key=BEARER)
        right = smoke(url, key=BEARER, gateway_key=GATEWAY_KEY)

    assert wrong.returncode == 1
    assert "API Gateway refused the x-api-key header (GATEWAY_KEY)" in verdict(wrong)
    assert "not-a-gateway-key" not in wrong.stdout + wrong.stderr
    assert missing.returncode == 1
    assert "x-api-key header (GATEWAY_KEY=...)" in verdict(missing)
    # Both keys right: through a proxy that passes each chunk on as it comes, the answer still streams.
    assert right.returncode == 0, right.stdout + right.stderr
    assert verdict(right).startswith("smoke: streamed: ")


def test_a_stream_cut_before_its_terminal_event_is_caught(app_url: str) -> None:
    with proxy(app_url, "cut") as url:
        done = smoke(url, key=BEARER)

    assert done.returncode == 1
    assert verdict(done).startswith("smoke: terminal event missing: ")
    assert "(last: delta)" in verdict(done)


def _measured(events: list[tuple[str, str]], gap_s: float) -> Measurement:
    """A 200 whose SSE events arrived one per chunk, `gap_s` apart."""
    seen = Measurement(url="http://127.0.0.1:1/", status=200, started_at=0.0)
    for index, (name, data) in enumerate(events):
        seen.chunk_times.append(0.1 + index * gap_s)
        seen.body.extend(f"event: {name}\ndata: {data}\n\n".encode())
    return seen


def test_a_fast_model_streaming_a_few_ms_apart_is_not_called_buffered() -> None:
    # 40 deltas 5 ms apart: every gap is under BURST_GAP_S, but they spread over the server's whole answer.
    deltas = [("delta", '{"type":"delta","text":"x"}')] * 40
    done = ("done", '{"type":"done","timings":{"ttft_ms":5,"duration_ms":205}}')
    verdict = judge(
        _measured([("start", "{}"), *deltas, done], 0.005), key_given=False, gateway_key_given=False
    )

    assert verdict.streamed, verdict.line


def test_the_same_answer_arriving_at_once_is_buffered() -> None:
    deltas = [("delta", '{"type":"delta","text":"x"}')] * 40
    done = ("done", '{"type":"done","timings":{"ttft_ms":5,"duration_ms":205}}')
    verdict = judge(
        _measured([("start", "{}"), *deltas, done], 0.0001), key_given=False, gateway_key_given=False
    )

    assert not verdict.streamed
    assert verdict.line.startswith("buffered:")


def test_an_answer_that_fails_at_once_says_so_rather_than_too_short() -> None:
    error = ("error", '{"type":"error","error":{"message":"upstream down","code":"upstream_unavailable"}}')
    verdict = judge(_measured([("start", "{}"), error], 0.01), key_given=False, gateway_key_given=False)

    assert not verdict.streamed
    assert verdict.line.startswith("the answer failed before it streamed:")
    assert "upstream down" in verdict.line
