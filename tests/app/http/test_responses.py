"""The event-stream response at the ASGI boundary, with a hand-written `receive` and a recording `send`.

Test clients buffer whole responses; here every `send` is observed as it happens, so these tests prove
incremental delivery and what a disconnect does, in-process and under a timeout guard.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
from litestar import Litestar

from app.stream.dialects.native import NativeDialect
from app.stream.dialects.openai_chat import OpenAIChatDialect
from app.stream.limits import DEADLINE_SCOPE_EXTENSION, Deadline
from app.stream.session import SessionEvent
from app.stream.trailers import ASGI_EXTENSION, read_failure
from providers.mock import MockProvider
from tests.app.conftest import AppFactory, LogCapture
from tests.app.helpers import expected_tokens, user
from tests.support.sse import parse_frames
from tests.support.timeouts import run_async

_PROMPT = "Explain backpressure."


@dataclass
class Sent:
    """One `send` call and what the provider had produced by then."""

    message: dict[str, Any]
    tokens_emitted: int
    active_streams: int
    stream_ends_logged: int


@dataclass
class Exchange:
    """One request driven through the ASGI app."""

    app: Litestar
    provider: MockProvider
    log: LogCapture
    path: str
    body: dict[str, Any] | None = None
    extensions: dict[str, Any] = field(default_factory=dict)
    sent: list[Sent] = field(default_factory=list)

    def scope(self) -> dict[str, Any]:
        path, _, query = self.path.partition("?")
        headers = [(b"host", b"test")]
        if self.body is not None:
            headers.append((b"content-type", b"application/json"))
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "POST" if self.body is not None else "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": query.encode(),
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 80),
            "state": {},
            "extensions": self.extensions,
        }

    async def run(self, on_send: Callable[[Exchange, dict[str, Any]], Awaitable[None]] | None = None) -> None:
        """Serve the request; `on_send` may block (a slow socket) or call `disconnect()`."""
        self.gone = asyncio.Event()
        request_body = msgspec.json.encode(self.body) if self.body is not None else b""
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": request_body, "more_body": False}
            await self.gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: Any) -> None:
            self.sent.append(
                Sent(
                    dict(message),
                    self.provider.tokens_emitted,
                    self.provider.active_streams,
                    len(self.log.stream_ends),
                )
            )
            if on_send is not None:
                await on_send(self, dict(message))

        await self.app(self.scope(), receive, send)  # type: ignore[arg-type]

    def disconnect(self) -> None:
        self.gone.set()

    @property
    def start(self) -> dict[str, Any]:
        return self.sent[0].message

    @property
    def bodies(self) -> list[Sent]:
        return [sent for sent in self.sent if sent.message["type"] == "http.response.body"]

    def frames_sent(self) -> list[tuple[str, Sent]]:
        """Each SSE block written, by kind (`start`, `delta`, `ping`, a chunk, ...), with the write that
        carried it: events already queued when one is written share its write."""
        out: list[tuple[str, Sent]] = []
        for sent in self.bodies:
            for frame in parse_frames(sent.message["body"]):
                out.append(("ping" if frame.is_comment else frame.event or "data", sent))
        return out


@pytest.fixture
def exchange(
    make_app: AppFactory, provider: MockProvider, log_capture: LogCapture
) -> Callable[..., Exchange]:
    def make(path: str, body: dict[str, Any] | None = None, **changes: Any) -> Exchange:
        return Exchange(make_app(**changes), provider, log_capture, path, body)

    return make


def _deltas(exchange: Exchange) -> list[Sent]:
    return [sent for kind, sent in exchange.frames_sent() if kind in ("delta", "data")]


def test_each_event_is_written_as_soon_as_its_token_exists(exchange: Callable[..., Exchange]) -> None:
    call = exchange("/v1/stream", {"messages": user(_PROMPT), "max_tokens": 30, "mock": {"delay_ms": 5}})

    run_async(call.run, timeout_s=10)

    assert call.start["type"] == "http.response.start"
    assert call.start["status"] == 200
    headers = dict(call.start["headers"])
    assert headers[b"content-type"].startswith(b"text/event-stream")
    assert headers[b"x-accel-buffering"] == b"no"
    deltas = _deltas(call)
    assert len(deltas) == 30
    # The first token went out while the provider still had 29 to make: nothing waited for the end.
    assert deltas[0].tokens_emitted < 30
    assert all(sent.tokens_emitted <= index + 2 for index, sent in enumerate(deltas))
    assert all(body.message["more_body"] for body in call.bodies[:-1])
    last = call.bodies[-1]
    assert last.message == {"type": "http.response.body", "body": b"", "more_body": False}
    # The session ended (provider released, one stream_end written) before the response finished.
    assert (last.active_streams, last.stream_ends_logged) == (0, 1)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/stream", {"messages": user(_PROMPT)}),
        ("/v1/chat/completions", {"messages": user(_PROMPT), "stream": True}),
        ("/v1/stream?prompt=Explain+backpressure.", None),
    ],
)
def test_a_disconnect_between_tokens_cancels_the_provider_before_the_response_returns(
    exchange: Callable[..., Exchange], log_capture: LogCapture, path: str, body: dict[str, Any] | None
) -> None:
    if body is not None:
        body = {**body, "mock": {"delay_ms": 30}}
    else:
        path += "&mock=%7B%22delay_ms%22%3A30%7D"
    call = exchange(path, body)

    async def leave_after_three_deltas(exchange: Exchange, message: dict[str, Any]) -> None:
        if len(_deltas(exchange)) >= 3 and not exchange.gone.is_set():
            exchange.disconnect()

    async def body_run() -> tuple[int, int, int]:
        await call.run(leave_after_three_deltas)
        return call.provider.tokens_emitted, call.provider.active_streams, len(log_capture.stream_ends)

    emitted, active, logged = run_async(body_run, timeout_s=10)

    assert (active, logged) == (0, 1)
    assert emitted <= 4  # at most the token in the making when the client left
    assert len(expected_tokens(_PROMPT)) > 20
    assert log_capture.stream_ends[0]["outcome"] == "cancelled"
    assert call.bodies[-1].message["more_body"] is True  # no end of body is written to a gone client


def test_a_disconnect_while_the_socket_is_blocked_still_closes_everything(
    exchange: Callable[..., Exchange], log_capture: LogCapture
) -> None:
    call = exchange("/v1/stream", {"messages": user(_PROMPT)})

    async def stall_the_socket(exchange: Exchange, message: dict[str, Any]) -> None:
        if len(_deltas(exchange)) >= 3:  # (a write may carry several queued deltas)
            exchange.disconnect()
            await asyncio.Event().wait()  # a client that stopped reading: this write never completes

    async def body_run() -> tuple[int, int]:
        await call.run(stall_the_socket)
        return call.provider.active_streams, len(log_capture.stream_ends)

    assert run_async(body_run, timeout_s=10) == (0, 1)
    assert log_capture.stream_ends[0]["outcome"] == "cancelled"
    assert call.provider.tokens_emitted < len(expected_tokens(_PROMPT))


def test_a_disconnect_during_heartbeats_cancels_a_silent_provider(
    exchange: Callable[..., Exchange], log_capture: LogCapture
) -> None:
    call = exchange(
        "/v1/stream", {"messages": user(_PROMPT), "mock": {"stall_ms": 60_000}}, heartbeat_interval_s=0.02
    )

    async def leave_after_a_ping(exchange: Exchange, message: dict[str, Any]) -> None:
        if any(kind == "ping" for kind, _ in exchange.frames_sent()):
            exchange.disconnect()

    run_async(lambda: call.run(leave_after_a_ping), timeout_s=10)

    assert [kind for kind, _ in call.frames_sent()] == ["start", "ping"]
    assert (call.provider.active_streams, call.provider.tokens_emitted) == (0, 0)
    assert log_capture.stream_ends[0]["outcome"] == "cancelled"


def test_a_host_deadline_in_the_scope_ends_the_stream_in_band(
    exchange: Callable[..., Exchange], log_capture: LogCapture
) -> None:
    call = exchange("/v1/stream", {"messages": user(_PROMPT), "mock": {"delay_ms": 20}})
    call.extensions[DEADLINE_SCOPE_EXTENSION] = Deadline.after(0.3)

    run_async(call.run, timeout_s=10)

    kinds = [kind for kind, _ in call.frames_sent()]
    assert kinds[0] == "start"
    assert kinds[-1] == "error"
    assert 0 < kinds.count("delta") < len(expected_tokens(_PROMPT))
    [frame] = parse_frames(call.bodies[-2].message["body"])
    assert frame.json()["error"]["code"] == "deadline"
    assert log_capture.stream_ends[0]["outcome"] == "deadline"


def test_a_host_deadline_already_past_is_a_504(exchange: Callable[..., Exchange]) -> None:
    call = exchange("/v1/stream", {"messages": user(_PROMPT)})
    call.extensions[DEADLINE_SCOPE_EXTENSION] = Deadline.after(-1)

    run_async(call.run, timeout_s=10)

    assert call.start["status"] == 504
    body = b"".join(sent.message.get("body", b"") for sent in call.bodies)
    assert msgspec.json.decode(body)["error"]["code"] == "deadline"
    assert call.provider.tokens_emitted == 0


@pytest.mark.parametrize(
    ("path", "last_kind"),
    [("/v1/stream", "error"), ("/v1/chat/completions", "data")],
)
def test_an_in_band_error_ends_the_response_cleanly(
    exchange: Callable[..., Exchange], path: str, last_kind: str
) -> None:
    body: dict[str, Any] = {"messages": user(_PROMPT), "mock": {"fail_after": 2}}
    if path.endswith("completions"):
        body["stream"] = True
    call = exchange(path, body)

    run_async(call.run, timeout_s=10)

    assert call.start["status"] == 200
    kinds = [kind for kind, _ in call.frames_sent()]
    assert kinds[-1] == last_kind
    # The error is the last event written (the deltas queued before it may share its write).
    frame = parse_frames(call.bodies[-2].message["body"])[-1]
    assert frame.json()["error"]["code"] == "upstream_stream_error"
    assert call.bodies[-1].message == {"type": "http.response.body", "body": b"", "more_body": False}


@pytest.mark.parametrize(
    ("path", "dialect"),
    [("/v1/stream", NativeDialect), ("/v1/chat/completions", OpenAIChatDialect)],
)
def test_a_crash_of_the_app_mid_stream_still_ends_with_an_error_event(
    exchange: Callable[..., Exchange],
    log_capture: LogCapture,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
    dialect: type[NativeDialect | OpenAIChatDialect],
) -> None:
    # The terminal event is the response layer's to write, so every host (uvicorn, Lambda) gets it.
    framed = 0
    frame = dialect.frame

    def crash_after_three(self: Any, event: SessionEvent) -> bytes | None:
        nonlocal framed
        framed += 1
        if framed == 4:  # once: framing the error event that follows works
            raise ZeroDivisionError("a bug, with details a client must not see")
        return frame(self, event)

    monkeypatch.setattr(dialect, "frame", crash_after_three)
    body: dict[str, Any] = {"messages": user(_PROMPT)}
    if path.endswith("completions"):
        body["stream"] = True
    call = exchange(path, body)

    run_async(call.run, timeout_s=10)

    assert call.start["status"] == 200
    frame_sent = parse_frames(call.bodies[-2].message["body"])[-1]
    assert frame_sent.json()["error"] == {
        "message": "internal server error",
        "type": "server_error",
        "code": "internal_error",
        "param": None,
    }
    assert call.bodies[-1].message == {"type": "http.response.body", "body": b"", "more_body": False}
    [crash] = log_capture.wait_for("stream_crashed", 1)
    assert crash["exc_type"] == "ZeroDivisionError"
    assert all("details" not in str(getattr(record, "fields", "")) for record in log_capture.records)


def test_a_host_that_advertises_trailers_gets_the_outcome_after_the_body(
    exchange: Callable[..., Exchange],
) -> None:
    call = exchange("/v1/stream", {"messages": user(_PROMPT), "mock": {"fail_after": 2}})
    call.extensions[ASGI_EXTENSION] = {}

    run_async(call.run, timeout_s=10)

    assert call.start["trailers"] is True
    assert call.bodies[-1].message["more_body"] is False
    trailers = call.sent[-1].message
    assert trailers["type"] == "http.response.trailers"
    assert trailers["more_trailers"] is False
    failure = read_failure(trailers["headers"])
    assert failure is not None
    assert (failure.outcome, failure.code, failure.type) == (
        "error",
        "upstream_stream_error",
        "upstream_error",
    )


def test_a_completed_stream_reports_no_failure_in_its_trailers(exchange: Callable[..., Exchange]) -> None:
    call = exchange("/v1/stream", {"messages": user(_PROMPT), "max_tokens": 5})
    call.extensions[ASGI_EXTENSION] = {}

    run_async(call.run, timeout_s=10)

    assert call.sent[-1].message == {"type": "http.response.trailers", "headers": [], "more_trailers": False}


def test_a_host_without_the_extension_is_sent_no_trailers(exchange: Callable[..., Exchange]) -> None:
    call = exchange("/v1/stream", {"messages": user(_PROMPT), "mock": {"fail_after": 2}})

    run_async(call.run, timeout_s=10)

    assert call.start["trailers"] is False
    assert all(sent.message["type"] != "http.response.trailers" for sent in call.sent)


def test_an_upload_aborted_by_its_client_is_not_logged_as_a_server_error(
    app: Litestar, log_capture: LogCapture
) -> None:
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": b'{"messages": [{"role": "us', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def send(message: Any) -> None:
        sent.append(dict(message))

    scope = Exchange(app, MockProvider(), log_capture, "/v1/stream", {}).scope()
    run_async(lambda: app(scope, receive, send), timeout_s=5)  # type: ignore[arg-type]

    assert [record.levelname for record in log_capture.records if record.levelno >= logging.WARNING] == []
    assert log_capture.events("unhandled_error") == []
