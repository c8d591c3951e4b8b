"""A stand-in for an OpenAI-compatible server on 127.0.0.1: every chat completion streams a short answer.

Cold start with the OpenAI provider selected needs a real first request; this answers it at once, so what
is measured is our process, the SDK and loopback.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

ANSWER = ("Hello", " from", " the", " fake", " upstream", ".")


def _chunk(delta: dict[str, str], finish_reason: str | None = None) -> bytes:
    body: dict[str, Any] = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1764000000,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        events = [_chunk({"role": "assistant", "content": ""})]
        events += [_chunk({"content": piece}) for piece in ANSWER]
        events += [_chunk({}, "stop"), b"data: [DONE]\n\n"]
        body = b"".join(events)
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@contextmanager
def fake_openai() -> Iterator[str]:
    """Serve until the block exits; yields the base URL (`http://127.0.0.1:PORT/v1`)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, name="fake-openai", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
