"""A fake Amazon Bedrock Runtime on 127.0.0.1: `POST /model/{modelId}/converse-stream` answered in the real
wire format, for botocore (the real SDK) to talk to over a socket.

The body is `application/vnd.amazon.eventstream`: binary frames of a prelude (total length, headers length,
the prelude's CRC32), typed headers (`:event-type`, `:content-type`, `:message-type`, or `:exception-type`
for an exception), a JSON payload and the CRC32 of the whole message; one frame per HTTP chunk, as Bedrock
sends them (botocore reads a chunked body chunk by chunk, a plain one only in 64 KiB reads).
`botocore.eventstream` decodes but has no encoder, hence `frame` below (checked against its decoder in
the tests).

The fake behaves like a small model whose model id says what to do:
- `fake.echo` (or any other id): text that echoes the last user text in several deltas; with `toolConfig` and
  no tool result yet, a call of the first tool (or the one `toolChoice` names) with arguments in fragments;
  after a tool result, text quoting it;
- `fake.throttled`, `fake.denied`, `fake.not-enabled`, `fake.invalid`, `fake.unavailable`, `fake.timeout`:
  an HTTP error before any event (429, 403, 403, 400, 503, 408) with Bedrock's `x-amzn-errortype`;
- `fake.fails-mid-stream`: two deltas, then a `modelStreamErrorException` frame;
- `fake.throttled-in-stream`: a `throttlingException` frame before any content;
- `fake.hangs`: two deltas, then nothing until the client closes the connection, which it records.
Every request is recorded, body decoded, with its headers (the SigV4 `authorization` among them).
"""

from __future__ import annotations

import binascii
import http.server
import json
import struct
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import unquote

REGION: Final = "us-east-1"
ACCESS_KEY_ID: Final = "AKIDTOKENRELAYFAKE01"
_ERRORS: Final = {
    "fake.throttled": (429, "ThrottlingException", "Too many requests, please wait before trying again."),
    "fake.denied": (
        403,
        "AccessDeniedException",
        "User: arn:aws:sts::123456789012:assumed-role/fn/tokenrelay is not authorized to perform: "
        "bedrock:InvokeModelWithResponseStream on resource: arn:aws:bedrock:us-east-1::foundation-model/x",
    ),
    "fake.not-enabled": (
        403,
        "AccessDeniedException",
        "You don't have access to the model with the specified model ID.",
    ),
    "fake.invalid": (400, "ValidationException", "The provided model identifier is invalid."),
    "fake.unavailable": (503, "ServiceUnavailableException", "Bedrock is unable to process your request."),
    "fake.timeout": (408, "ModelTimeoutException", "Model has timed out in processing the request."),
}


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude, prelude CRC, string headers (type 7), payload, message CRC."""
    encoded = b"".join(
        struct.pack(">B", len(name)) + name.encode() + struct.pack(">BH", 7, len(value)) + value.encode()
        for name, value in headers.items()
    )
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    prelude += struct.pack(">I", binascii.crc32(prelude))
    message = prelude + encoded + payload
    return message + struct.pack(">I", binascii.crc32(message))


def event(event_type: str, body: dict[str, Any]) -> bytes:
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    return frame(headers, json.dumps(body).encode())


def exception(exception_type: str, message: str) -> bytes:
    headers = {
        ":exception-type": exception_type,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return frame(headers, json.dumps({"message": message}).encode())


def text_events(
    pieces: Sequence[str], *, stop_reason: str = "end_turn", input_tokens: int = 12
) -> list[bytes]:
    """A whole answer of text deltas, as Bedrock streams it (with its `p` padding field)."""
    frames = [event("messageStart", {"role": "assistant", "p": "abcd"})]
    frames += [
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}, "p": "abcdefgh"})
        for piece in pieces
    ]
    frames += [
        event("contentBlockStop", {"contentBlockIndex": 0}),
        event("messageStop", {"stopReason": stop_reason}),
    ]
    frames.append(_metadata(input_tokens, len(pieces)))
    return frames


def tool_events(tool_use_id: str, name: str, arguments: str, *, lead_text: str = "") -> list[bytes]:
    """A call of `name`, its arguments' JSON in fragments, after an optional text block."""
    frames = [event("messageStart", {"role": "assistant"})]
    block = 0
    if lead_text:
        frames += [
            event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": lead_text}}),
            event("contentBlockStop", {"contentBlockIndex": 0}),
        ]
        block = 1
    start = {"toolUse": {"toolUseId": tool_use_id, "name": name}}
    frames.append(event("contentBlockStart", {"contentBlockIndex": block, "start": start}))
    step = max(1, len(arguments) // 4)
    for offset in range(0, len(arguments), step):
        piece = arguments[offset : offset + step]
        frames.append(
            event("contentBlockDelta", {"contentBlockIndex": block, "delta": {"toolUse": {"input": piece}}})
        )
    frames += [
        event("contentBlockStop", {"contentBlockIndex": block}),
        event("messageStop", {"stopReason": "tool_use"}),
    ]
    frames.append(_metadata(30, 8))
    return frames


def _metadata(input_tokens: int, output_tokens: int) -> bytes:
    usage = {
        "inputTokens": input_tokens,
        "outputTokens": output_tokens,
        "totalTokens": input_tokens + output_tokens,
    }
    return event("metadata", {"usage": usage, "metrics": {"latencyMs": 42}})


class Hold:
    """In a reply: send nothing more until the client closes the connection."""


@dataclass
class RecordedRequest:
    path: str
    model_id: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeBedrock:
    """The running fake: where it listens, what it was asked, and whether a client hung up on it."""

    port: int = 0
    requests: list[RecordedRequest] = field(default_factory=list)
    client_closed: threading.Event = field(default_factory=threading.Event)
    # Tokens of `fake.echo` answers are the prompt's words, this many times over (for long benchmark streams).
    repeat: int = 1

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reply(self, request: RecordedRequest) -> tuple[int, str, str] | list[bytes | Hold]:
        """What the model id asks for: an HTTP error (status, type, message) or the frames of a stream."""
        model_id = request.model_id
        if model_id in _ERRORS:
            return _ERRORS[model_id]
        if model_id == "fake.fails-mid-stream":
            failure = exception("modelStreamErrorException", "The model failed.")
            return [*text_events(["Half ", "an "])[:3], failure]
        if model_id == "fake.throttled-in-stream":
            return [
                event("messageStart", {"role": "assistant"}),
                exception("throttlingException", "Slow down."),
            ]
        if model_id == "fake.hangs":
            return [*text_events(["Still ", "thinking"])[:3], Hold()]
        return self._model_answer(request.body)

    def _model_answer(self, body: dict[str, Any]) -> list[bytes | Hold]:
        turns = body.get("messages", [])
        last = turns[-1]["content"] if turns else []
        results = [block["toolResult"] for block in last if "toolResult" in block]
        if results:
            quoted = " ".join(
                part.get("text", "") for result in results for part in result.get("content", [])
            )
            return list(text_events(["The tool said: ", quoted]))
        tools = body.get("toolConfig", {}).get("tools", [])
        if tools:
            chosen = body["toolConfig"].get("toolChoice", {}).get("tool", {}).get("name")
            name = chosen or tools[0]["toolSpec"]["name"]
            arguments = json.dumps({"location": "Lyon", "unit": "celsius"})
            return list(tool_events(f"tooluse_{len(self.requests) - 1:04d}", name, arguments))
        text = " ".join(block.get("text", "") for block in last).split() or ["Hello"]
        words = ["You", " said:"] + [f" {word}" for word in text] * self.repeat
        return list(text_events(words))


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        fake = self.server.fake
        prefix, _, rest = self.path.partition("/model/")
        model_id, _, action = rest.rpartition("/")
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))) or b"{}")
        request = RecordedRequest(
            self.path, unquote(model_id), {k.lower(): v for k, v in self.headers.items()}, body
        )
        fake.requests.append(request)
        if prefix or action != "converse-stream":
            self._error(404, "UnknownOperationException", f"no such operation: {self.path}")
            return
        reply = fake.reply(request)
        if isinstance(reply, tuple):
            status, error_type, message = reply
            self._error(status, error_type, message)
            return
        self.send_response(200)
        self.send_header("content-type", "application/vnd.amazon.eventstream")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("x-amzn-requestid", "00000000-0000-4000-8000-000000000000")
        self.end_headers()
        try:
            for part in reply:
                if isinstance(part, Hold):
                    self._hold(fake)
                    return
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            fake.client_closed.set()
            self.close_connection = True

    def _hold(self, fake: FakeBedrock) -> None:
        # The client sends nothing more on this connection: a read returns only when it closes it.
        self.connection.settimeout(30)
        try:
            closed = self.connection.recv(1) == b""
        except (TimeoutError, ConnectionResetError):
            closed = False
        if closed:
            fake.client_closed.set()
        self.close_connection = True

    def _error(self, status: int, error_type: str, message: str) -> None:
        payload = json.dumps({"message": message}).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.send_header(
            "x-amzn-errortype", f"{error_type}:http://internal.amazon.com/coral/com.amazon.bedrock/"
        )
        if status == 429:
            self.send_header("retry-after", "7")
        self.end_headers()
        self.wfile.write(payload)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeBedrock) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake


@contextmanager
def fake_bedrock(repeat: int = 1) -> Iterator[FakeBedrock]:
    """Run the fake on an OS-assigned loopback port until the block exits."""
    fake = FakeBedrock(repeat=repeat)
    server = _Server(fake)
    fake.port = server.server_address[1]
    # A short poll: shutdown() waits for it.
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), name="fake-bedrock", daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def offline_bedrock_credentials(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Static fake credentials and no profile, as environment variables (botocore's chain finds them)."""
    values = dict(environ or {})
    values.update(
        AWS_ACCESS_KEY_ID=ACCESS_KEY_ID,
        AWS_SECRET_ACCESS_KEY="fake-secret-key-for-tests-only",
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
    )
    return values
