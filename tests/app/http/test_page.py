"""The browser page at `/`, driven in a real headless Chromium through Playwright (tests/support/browser.py).

The mock is paced (`MOCK_TOKEN_DELAY_MS`) so that intermediate DOM states exist long enough to be observed;
every wait is a Playwright condition or a log record with a deadline, never a fixed sleep.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import httpx
import msgspec
import pytest
from litestar import Litestar
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, Route, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from app.settings import Secret, Settings
from app.stream.limits import Deadline, with_deadline
from providers.mock import MockProvider, compose_answer, tokenize
from providers.protocol import ChatMessage, ChatRequest
from tests.app.conftest import AppFactory, LogCapture, ServeFactory
from tests.app.helpers import expected_tokens
from tests.support.browser import MISSING, find_chromium, in_ci
from tests.support.server import RunningServer
from tests.support.sse import Frame, parse_frames

# Without the background-networking flags Chromium phones home at start-up, and a closed network refuses it.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN_DELAY_MS = 25
TRANSPORTS = ["fetch", "eventsource", "websocket", "ai-sdk"]
DIALECTS = {"fetch": "stream", "eventsource": "stream", "websocket": "ws", "ai-sdk": "ui-message-stream"}
PROMPT = "Explain server-sent events"
FIRST_RETRY_MS = 500  # the page's pause before its first reconnect (RETRY_DELAYS_MS in app.js)

# The rendered text of the last answer, without its code blocks' captions (a language label is set once the
# fence's first line is complete, and "Copy" is no part of the answer).
ANSWER_TEXT = """() => {
  const answers = document.querySelectorAll("#conversation .turn.assistant .markdown");
  const last = answers[answers.length - 1];
  if (!last) return "";
  const copy = last.cloneNode(true);
  for (const caption of copy.querySelectorAll("figcaption")) caption.remove();
  return copy.textContent;
}"""
# Installed on the page before a prompt is sent: records every length of the rendered answer, every node
# removed from an answer (a re-render would remove them) and every state of #status as it changes.
OBSERVE = (
    """() => {
  const log = document.getElementById("conversation");
  const status = document.getElementById("status");
  const answerText = """
    + ANSWER_TEXT
    + """;
  window.__lengths = [];
  window.__removed = [];
  window.__statuses = [];
  new MutationObserver((records) => {
    for (const record of records) {
      const target = record.target instanceof Element ? record.target : record.target.parentElement;
      if (!target?.closest(".markdown") || target.closest("figcaption")) continue;
      for (const node of record.removedNodes) window.__removed.push(node.nodeName);
    }
    window.__lengths.push(answerText().length);
  }).observe(log, { childList: true, characterData: true, subtree: true });
  new MutationObserver(() => {
    window.__statuses.push([status.dataset.state, status.textContent]);
  }).observe(status, { childList: true, characterData: true, subtree: true, attributes: true });
}"""
)
ENDED = "() => ['done', 'error', 'stopped'].includes(document.getElementById('status').dataset.state)"
OUTPUT_LONGER_THAN = "(n) => (" + ANSWER_TEXT + ")().length > n"
# The conversation as the page saved it in localStorage (conversation.js).
SAVED = "() => JSON.parse(localStorage.getItem('tokenrelay.conversation.v1') || 'null')"
LAST_ANSWER = "#conversation .turn.assistant:last-child"
NO_NODE_REMOVED = "() => window.__removed.length === 0"


@pytest.fixture
def settings() -> Settings:
    return Settings(mock_token_delay_ms=TOKEN_DELAY_MS)


# Decided once for the module, so that a machine without a browser sees one skip with one reason.
CHROMIUM = find_chromium()
if CHROMIUM is None:
    if in_ci():
        pytest.fail(
            f"CI must run the browser tests (.ci/run installs Debian's chromium): {MISSING}", pytrace=False
        )
    pytest.skip(MISSING, allow_module_level=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM is not None
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM.path), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Problems:
    """What the page must never do: throw, or trip its own Content-Security-Policy."""

    seen: list[str] = field(default_factory=list)

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and "Failed to load resource" not in message.text:
            self.seen.append(f"console: {message.text}")

    def page_error(self, error: Exception) -> None:
        self.seen.append(f"uncaught: {error}")


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(10_000)
    problems = Problems()
    tab.on("console", problems.console)
    tab.on("pageerror", problems.page_error)
    try:
        yield tab
    finally:
        context.close()
    assert problems.seen == []


@pytest.fixture
def server(make_app: AppFactory, serve: ServeFactory) -> Iterator[RunningServer]:
    with serve(make_app()) as running:
        yield running


def open_page(page: Page, server: RunningServer) -> None:
    page.goto(f"{server.base_url}/")
    page.evaluate(OBSERVE)


def ask(
    page: Page,
    prompt: str = PROMPT,
    *,
    transport: str = "fetch",
    max_tokens: int | None = None,
    mock: dict[str, Any] | None = None,
    api_key: str | None = None,
    demo_tool: bool = False,
) -> None:
    """Fill in the form as a user would and press Send."""
    if max_tokens is not None or mock is not None or api_key is not None or demo_tool:
        if page.get_attribute("details", "open") is None:
            page.click("summary")
        page.fill("#max-tokens", "" if max_tokens is None else str(max_tokens))
        page.fill("#mock", "" if mock is None else msgspec.json.encode(mock).decode())
        page.fill("#api-key", api_key or "")
        page.set_checked("#demo-tool", demo_tool)
    page.select_option("#transport", transport)
    page.fill("#prompt", prompt)
    page.click("#send")


def wait_for_end(page: Page) -> tuple[str, str]:
    page.wait_for_function(ENDED)
    return page.get_attribute("#status", "data-state") or "", page.text_content("#status") or ""


def text(page: Page, selector: str) -> str:
    return page.text_content(selector) or ""


def output_text(page: Page) -> str:
    """The Markdown source of the last answer, as the page saved it: what it received, byte for byte."""
    answers = [turn for turn in saved_turns(page) if turn["role"] == "assistant"]
    return str(answers[-1]["text"]) if answers else ""


def saved_turns(page: Page) -> list[dict[str, Any]]:
    saved = page.evaluate(SAVED)
    return list(saved["turns"]) if saved else []


def answer_text(page: Page) -> str:
    """The last answer as rendered (its text content, code captions left out)."""
    return str(page.evaluate(ANSWER_TEXT))


Turn = tuple[str, str]  # (role, text), as a conversation is compared here


def expected_answer(turns: list[Turn], *, model: str = "mock") -> list[str]:
    """The mock's deltas for a conversation of (role, text) turns."""
    messages = tuple(ChatMessage(role=role, content=content) for role, content in turns)  # type: ignore[arg-type]
    return tokenize(compose_answer(ChatRequest(model=model, messages=messages)))


def statuses(page: Page) -> list[tuple[str, str]]:
    return [(state, text) for state, text in page.evaluate("() => window.__statuses")]


@pytest.mark.browser
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_each_transport_renders_the_answer_token_by_token(
    page: Page, server: RunningServer, log_capture: LogCapture, transport: str
) -> None:
    expected = "".join(expected_tokens(PROMPT)[:40])
    open_page(page, server)
    ask(page, transport=transport, max_tokens=40)

    page.wait_for_function(
        "() => document.getElementById('status').dataset.state === 'streaming'"
        " && (" + OUTPUT_LONGER_THAN + ")(0)"
    )
    partial = answer_text(page)
    assert partial
    assert page.get_attribute("#conversation", "aria-busy") == "true"

    state, status = wait_for_end(page)
    assert state == "done", status
    assert status.startswith("Done: 40 tokens in ")
    assert status.endswith("(cut short by the token limit).")
    assert output_text(page) == expected
    final = answer_text(page)
    assert len(partial) < len(final)
    assert final.startswith(partial)
    assert page.get_attribute(LAST_ANSWER, "data-state") == "done"
    assert page.query_selector_all(f"{LAST_ANSWER} .markdown > p")  # rendered, not shown raw
    lengths: list[int] = page.evaluate("() => window.__lengths")
    assert len(set(lengths)) >= 10, lengths  # many intermediate states, not one final render
    assert lengths == sorted(lengths)  # only ever growing
    # Appended to, never re-rendered: no node of the answer was ever taken out to be drawn again.
    assert page.evaluate(NO_NODE_REMOVED)
    assert text(page, "#ttft").endswith(" ms")
    assert text(page, "#deltas") == "40"
    assert text(page, "#rate").endswith("deltas/s")
    assert "finish_reason: length · 40 deltas received" in text(page, "#summary")
    assert page.get_attribute("#conversation", "aria-busy") == "false"
    assert page.is_disabled("#stop")

    (end,) = log_capture.wait_for("stream_end", 1)
    assert (end["dialect"], end["outcome"], end["completion_tokens"]) == (
        DIALECTS[transport],
        "max_tokens",
        40,
    )


@pytest.mark.browser
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_stop_halts_the_output_and_the_server_cancels_the_stream(
    page: Page, server: RunningServer, provider: MockProvider, log_capture: LogCapture, transport: str
) -> None:
    full = "".join(expected_tokens(PROMPT))
    open_page(page, server)
    ask(page, transport=transport)
    page.wait_for_function(OUTPUT_LONGER_THAN, arg=40)
    assert page.is_enabled("#stop")
    page.click("#stop")

    (end,) = log_capture.wait_for("stream_end", 1)
    assert (end["dialect"], end["outcome"]) == (DIALECTS[transport], "cancelled")
    assert provider.active_streams == 0
    emitted = provider.tokens_emitted
    assert page.get_attribute("#status", "data-state") == "stopped"
    assert page.is_disabled("#stop")
    deltas = int(text(page, "#deltas"))
    assert text(page, "#status") == f"Stopped after {deltas} deltas."
    # Kept in the conversation, marked as stopped, with what the page measured instead of the server's `done`.
    assert page.get_attribute(LAST_ANSWER, "data-state") == "stopped"
    assert text(page, f"{LAST_ANSWER} .turn-note") == f"Stopped after {deltas} deltas."
    assert text(page, "#summary").startswith(f"stopped · {deltas} deltas received · time to first delta: ")
    [turn] = [turn for turn in saved_turns(page) if turn["role"] == "assistant"]
    assert (turn["state"], turn["summary"]) == ("stopped", text(page, "#summary"))
    assert full.startswith(turn["text"])
    assert 0 < len(turn["text"]) < len(full)
    shown = len(answer_text(page))
    # Twenty token intervals: a stream still running would have grown the output in that time.
    with pytest.raises(PlaywrightTimeoutError):
        page.wait_for_function(OUTPUT_LONGER_THAN, arg=shown, timeout=20 * TOKEN_DELAY_MS)
    assert provider.tokens_emitted == emitted
    assert len(log_capture.stream_ends) == 1


@pytest.mark.browser
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_error_event_is_shown_and_the_partial_answer_kept(
    page: Page, server: RunningServer, transport: str
) -> None:
    open_page(page, server)
    ask(page, transport=transport, mock={"fail_after": 5})
    state, text = wait_for_end(page)
    assert state == "error"
    assert text == (
        "The stream failed after 5 deltas: mock failure injected after 5 deltas (upstream_stream_error)"
    )
    assert output_text(page) == "".join(expected_tokens(PROMPT)[:5])


@pytest.mark.browser
@pytest.mark.parametrize("transport", ["fetch", "eventsource", "ai-sdk"])
def test_heartbeats_before_the_first_token_are_ignored_while_ttft_counts_up(
    page: Page, make_app: AppFactory, serve: ServeFactory, transport: str
) -> None:
    with serve(make_app(heartbeat_interval_s=0.05)) as server:
        open_page(page, server)
        ask(page, transport=transport, max_tokens=5, mock={"stall_ms": 600})
        # Still waiting for the first token, after the first heartbeats: the counter runs, nothing is shown.
        page.wait_for_function(
            "() => document.getElementById('ttft').textContent.endsWith('s…')"
            " && parseFloat(document.getElementById('ttft').textContent) >= 0.2"
        )
        assert answer_text(page) == ""
        assert wait_for_end(page)[0] == "done"
    assert output_text(page) == "".join(expected_tokens(PROMPT)[:5])
    assert text(page, "#ttft").endswith(" ms")
    assert int(text(page, "#ttft").removesuffix(" ms")) >= 600


@pytest.mark.browser
@pytest.mark.parametrize("transport", ["fetch", "websocket", "ai-sdk"])
def test_a_tool_call_is_shown_as_it_streams(
    page: Page, server: RunningServer, log_capture: LogCapture, transport: str
) -> None:
    open_page(page, server)
    ask(page, "What is the weather in Lyon?", transport=transport, demo_tool=True)

    state, status = wait_for_end(page)
    assert state == "done", status
    assert status.endswith("The model called a tool (the page does not run it).")
    assert "finish_reason: tool_calls" in text(page, "#summary")
    # A collapsed block under the answer: the tool's name, the arguments inside.
    [call] = page.query_selector_all(f"{LAST_ANSWER} .tool-call")
    assert call.get_attribute("open") is None
    assert text(page, f"{LAST_ANSWER} .tool-call summary") == "Tool call get_weather"
    assert text(page, f"{LAST_ANSWER} .tool-name") == "get_weather"
    assert not page.is_visible(f"{LAST_ANSWER} .tool-arguments")
    assert (call.get_attribute("data-call-id") or "").startswith("call_")
    page.click(f"{LAST_ANSWER} .tool-call summary")
    assert page.is_visible(f"{LAST_ANSWER} .tool-arguments")
    arguments = msgspec.json.decode(text(page, f"{LAST_ANSWER} .tool-arguments"))
    assert isinstance(arguments["city"], str)
    assert set(arguments) <= {"city", "unit"}
    deltas = int(text(page, "#deltas"))
    assert deltas >= 2  # pieces, joined into the one call they belong to
    assert len(page.query_selector_all(f"{LAST_ANSWER} .timeline .tick.call")) == deltas
    (end,) = log_capture.wait_for("stream_end", 1)
    assert (end["outcome"], end["completion_tokens"]) == ("completed", deltas)

    # The next prompt, without the tool, answers in text in a turn of its own. The call stays with its turn,
    # and is not sent back: the page did not run it, and a call without its result is no valid turn.
    ask(page, transport=transport, max_tokens=5, demo_tool=False)
    assert wait_for_end(page)[0] == "done"
    turns = [("user", "What is the weather in Lyon?"), ("user", PROMPT)]
    assert output_text(page) == "".join(expected_answer(turns)[:5])
    assert page.query_selector_all(f"{LAST_ANSWER} .tool-call") == []
    assert not page.is_visible(f"{LAST_ANSWER} .tool-calls")
    assert len(page.query_selector_all("#conversation .tool-call")) == 1


@pytest.mark.browser
def test_eventsource_says_it_cannot_send_a_tool(page: Page, server: RunningServer) -> None:
    open_page(page, server)
    ask(page, transport="eventsource", demo_tool=True)
    assert wait_for_end(page) == ("error", "EventSource cannot send tools: use fetch or WebSocket.")


# Run in a page of one origin against a server of another: the stream's text, and a header only CORS exposes.
CROSS_ORIGIN_STREAM = """async (url) => {
  try {
    const response = await fetch(url + "/v1/stream", {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: "Bearer k-1" },
      body: JSON.stringify({ messages: [{ role: "user", content: "hello" }], max_tokens: 3 }),
    });
    const streamId = response.headers.get("X-Stream-Id");
    return { status: response.status, streamId, body: await response.text() };
  } catch (error) {
    return { failed: String(error) };
  }
}"""


@pytest.mark.browser
def test_a_page_on_another_origin_streams_only_when_its_origin_is_allowed(
    browser: Browser, make_app: AppFactory, serve: ServeFactory
) -> None:
    context = browser.new_context()
    tab = context.new_page()
    keys = (Secret("k-1"),)
    try:
        with serve(make_app()) as front:  # the page's origin: a dev server on another port, say
            tab.goto(f"{front.base_url}/healthz")  # a document of that origin without the page's CSP
            with serve(make_app(api_keys=keys, cors_allow_origins=(front.base_url,))) as api:
                allowed = tab.evaluate(CROSS_ORIGIN_STREAM, api.base_url)
            with serve(make_app(api_keys=keys)) as closed:
                refused = tab.evaluate(CROSS_ORIGIN_STREAM, closed.base_url)
    finally:
        context.close()

    assert allowed.get("status") == 200, allowed
    assert allowed["streamId"]  # exposed: a page can cancel what it started
    assert "event: done" in allowed["body"]
    assert refused == {"failed": "TypeError: Failed to fetch"}


@pytest.mark.browser
def test_an_http_error_status_is_shown_with_the_servers_message(page: Page, server: RunningServer) -> None:
    open_page(page, server)
    ask(page, transport="fetch", mock={"error": "rate_limit"})
    assert wait_for_end(page) == (
        "error",
        "The server answered HTTP 429: mock rate limit: slow down and retry (rate_limit_exceeded). "
        "Retry after 1 s.",
    )
    assert output_text(page) == ""


@pytest.mark.browser
@pytest.mark.parametrize("transport", ["fetch", "websocket", "ai-sdk"])
def test_a_new_prompt_cancels_the_one_in_flight(
    page: Page, server: RunningServer, provider: MockProvider, log_capture: LogCapture, transport: str
) -> None:
    open_page(page, server)
    ask(page, "first question", transport=transport)
    page.wait_for_function(OUTPUT_LONGER_THAN, arg=20)
    ask(page, "second question", transport=transport, max_tokens=10)
    assert wait_for_end(page)[0] == "done"
    # The first answer stays in the conversation as far as it got, stopped, and is sent with the second.
    first, stopped, second, answer = saved_turns(page)
    assert stopped["state"] == "stopped"
    assert re.fullmatch(r"Stopped after \d+ deltas: a new prompt replaced it\.", stopped["note"])
    assert stopped["text"]
    history = [("user", first["text"]), ("assistant", stopped["text"]), ("user", second["text"])]
    assert answer["text"] == "".join(expected_answer(history)[:10])
    ends = log_capture.wait_for("stream_end", 2)
    assert sorted(e["outcome"] for e in ends) == ["cancelled", "max_tokens"]
    assert provider.active_streams == 0


STREAM_PATHS = ("/v1/stream", "/v1/ws", "/api/chat")
RESUME_PATH = re.compile(r"/v1/streams/(?P<stream_id>[^/]+)/events")
RESUME_URL = re.compile(r"/v1/streams/[^/]+/events")  # for Playwright, which hands it to JavaScript


def is_stream_connection(path: str) -> bool:
    """A path whose connection carries a stream: one that starts it, or a resume."""
    return path in STREAM_PATHS or RESUME_PATH.fullmatch(path) is not None


class CutStreams:
    """ASGI middleware that cuts stream connections after some deltas, as a flaky network or proxy would.

    WebSockets are closed with 1012 (service restart) before their `done`. An HTTP response either loses
    its connection mid-body (`abrupt`: the browser sees a network error) or ends early but cleanly, as a
    proxy's timeout would end it (the browser sees a stream without its last event). A resume
    (`GET /v1/streams/{id}/events`) is a connection like the others: `times` counts it, and its deltas are
    counted from its own first one.
    """

    def __init__(self, app: ASGIApp, *, after: int, times: int, abrupt: bool = False) -> None:
        self._app = app
        self._after = after
        self._left = times
        self._abrupt = abrupt
        self.cut = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._left == 0 or scope["type"] not in (ScopeType.HTTP, ScopeType.WEBSOCKET):
            await self._app(scope, receive, send)
            return
        if not is_stream_connection(scope["path"]):
            await self._app(scope, receive, send)
            return
        self._left -= 1
        deltas = 0
        cut = False

        async def cutting_send(message: Message) -> None:
            nonlocal deltas, cut
            if cut:
                raise OSError("connection cut by the test")
            payload: Any = message.get("body") or message.get("text") or b""
            payload = payload.encode() if isinstance(payload, str) else payload
            # An SSE frame's data or a WebSocket message; the UI message stream's deltas are `text-delta`.
            deltas += payload.count(b'"type":"delta"') + payload.count(b'"type":"text-delta"')
            if deltas > self._after:
                cut = True
                self.cut += 1
                if scope["type"] == ScopeType.WEBSOCKET:
                    await send({"type": "websocket.close", "code": 1012, "reason": "cut by the test"})
                elif not self._abrupt:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                raise OSError("connection cut by the test")
            await send(message)

        try:
            await self._app(scope, receive, cutting_send)
        except Exception:
            if not cut:
                raise
        # Returning from an HTTP response that has not ended (abrupt) makes uvicorn drop the connection.


class HandOverResumes:
    """ASGI middleware that gives every resume the deadline of a short Lambda invocation, so that the server
    ends each one after about `serve_s` with its hand-over hint (`event: resume` on `/v1/stream`'s framing,
    a `: resume from last_event_id=N` comment in the AI SDK's)."""

    # The follower ends this long before its host's deadline (`_DEADLINE_MARGIN_S` in app/http/follow.py).
    MARGIN_S = 1.0

    def __init__(self, app: ASGIApp, *, serve_s: float) -> None:
        self._app = app
        self._serve_s = serve_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP and RESUME_PATH.fullmatch(scope["path"]):
            with_deadline(cast("dict[str, Any]", scope), Deadline.after(self.MARGIN_S + self._serve_s))
        await self._app(scope, receive, send)


def as_litestar(middleware: ASGIApp) -> Litestar:
    """`serve` is typed for Litestar apps, but hands any ASGI app to uvicorn."""
    return cast("Litestar", middleware)


@dataclass(frozen=True)
class Sent:
    """A request as the page sent it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any

    @property
    def resumed_stream(self) -> str | None:
        """The id of the stream this request resumes, if it is a resume."""
        match = RESUME_PATH.fullmatch(self.path)
        return match["stream_id"] if match else None


def record_requests(page: Page) -> list[Sent]:
    """Every request the page makes from now on, in order."""
    sent: list[Sent] = []

    def record(request: Request) -> None:
        url = urlsplit(request.url)
        body = request.post_data_json if request.post_data else None
        sent.append(Sent(request.method, url.path, parse_qs(url.query), dict(request.headers), body))

    page.on("request", record)
    return sent


def stream_starts(sent: list[Sent]) -> list[Sent]:
    return [request for request in sent if request.path in STREAM_PATHS]


def resumes(sent: list[Sent]) -> list[Sent]:
    return [request for request in sent if request.resumed_stream is not None]


def resumed_after(request: Sent, transport: str) -> str:
    """The last event id a resume names: in `Last-Event-ID`, or in the query for EventSource (which cannot
    set a header, and must not be left to reconnect by itself)."""
    assert request.method == "GET"
    if transport == "eventsource":
        assert "last-event-id" not in request.headers
        [after] = request.query["last_event_id"]
        return after
    assert "last_event_id" not in request.query
    return request.headers["last-event-id"]


def asked_for_a_resumable_stream(request: Sent, transport: str) -> bool:
    if transport == "fetch":
        return bool(request.body["resumable"] is True)
    if transport == "eventsource":
        return request.query.get("resumable") == ["true"]
    return "resumable" not in request.body  # /api/chat streams are resumable by default


def id_of_delta(server: RunningServer, transport: str, n: int) -> str:
    """The `id:` of the event carrying the answer's `n`th delta, in an uninterrupted resumable stream of the
    same prompt, in the transport's framing (unpaced: the ids do not depend on the pace)."""
    unpaced = {"delay_ms": 0}
    if transport == "ai-sdk":
        parts = [{"type": "text", "text": PROMPT}]
        path = "/api/chat"
        body: dict[str, Any] = {"id": "oracle", "messages": [{"id": "m1", "role": "user", "parts": parts}]}
    else:
        path = "/v1/stream"
        body = {"messages": [{"role": "user", "content": PROMPT}], "resumable": True}
    response = httpx.post(f"{server.base_url}{path}", json={**body, "mock": unpaced}, timeout=10)
    assert response.status_code == 200, response.text
    deltas = [frame for frame in parse_frames(response.content) if carries_text(frame)]
    event_id = deltas[n - 1].id
    assert event_id is not None
    return event_id


def carries_text(frame: Frame) -> bool:
    if frame.event == "delta":
        return True
    return frame.event is None and frame.data.startswith("{") and frame.json()["type"] == "text-delta"


RESUMABLE_DROPS = [
    ("fetch", True),
    ("fetch", False),
    ("eventsource", True),
    ("eventsource", False),
    ("ai-sdk", True),
    ("ai-sdk", False),
]
RESUMABLE_DROP_IDS = [
    "fetch-reset",
    "fetch-ended",
    "eventsource-reset",
    "eventsource-ended",
    "ai-sdk-reset",
    "ai-sdk-ended",
]


@pytest.mark.browser
@pytest.mark.parametrize(("transport", "abrupt"), RESUMABLE_DROPS, ids=RESUMABLE_DROP_IDS)
def test_a_dropped_connection_resumes_the_same_stream_from_the_last_event_shown(
    page: Page,
    make_app: AppFactory,
    serve: ServeFactory,
    provider: MockProvider,
    log_capture: LogCapture,
    transport: str,
    abrupt: bool,
) -> None:
    tokens = expected_tokens(PROMPT)
    cutter = CutStreams(make_app(), after=12, times=1, abrupt=abrupt)
    with serve(as_litestar(cutter)) as server:
        open_page(page, server)
        sent = record_requests(page)
        ask(page, transport=transport)
        state, status = wait_for_end(page)
        # One generation, resumed rather than asked for again, and run to its end: no token made twice.
        [end] = log_capture.wait_for("stream_end", 1)
        assert (end["outcome"], end["completion_tokens"]) == ("completed", len(tokens))
        assert provider.tokens_emitted == len(tokens)
        assert provider.active_streams == 0
        last_shown = id_of_delta(server, transport, 12)

    assert state == "done", status
    assert status.startswith(f"Done: {len(tokens)} tokens in ")
    assert status.endswith(" after 1 reconnect.")
    assert cutter.cut == 1
    # Byte-identical to an uninterrupted answer: nothing repeated, nothing lost.
    assert output_text(page) == "".join(tokens)
    [start] = stream_starts(sent)
    assert asked_for_a_resumable_stream(start, transport)
    [resume] = resumes(sent)
    assert resume.resumed_stream == end["request_id"]
    assert resumed_after(resume, transport) == last_shown
    history = statuses(page)
    [retrying] = [status for state, status in history if state == "retrying"]
    assert retrying.startswith("Connection lost after 12 deltas (")
    assert retrying.endswith(
        "Reconnecting in 0.5 s (attempt 1 of 2) to resume the same answer where it stopped."
    )
    reconnected = f"Reconnected: resuming the same answer after event {last_shown} (12 deltas kept)…"
    assert ("streaming", reconnected) in history
    lengths: list[int] = page.evaluate("() => window.__lengths")
    assert lengths == sorted(lengths)  # the text shown was never cleared
    assert page.evaluate(NO_NODE_REMOVED)
    assert text(page, "#deltas") == str(len(tokens))
    assert len(page.query_selector_all(f"{LAST_ANSWER} .timeline .tick")) == len(tokens)


@pytest.mark.browser
@pytest.mark.parametrize("transport", ["fetch", "ai-sdk"])
def test_a_resume_presents_the_api_key_like_the_request_that_started_the_stream(
    page: Page, make_app: AppFactory, serve: ServeFactory, log_capture: LogCapture, transport: str
) -> None:
    # A stream started with a key answers a resume without it as an unknown one (404).
    cutter = CutStreams(make_app(api_keys=(Secret("sesame"),)), after=5, times=1, abrupt=True)
    with serve(as_litestar(cutter)) as server:
        open_page(page, server)
        sent = record_requests(page)
        ask(page, transport=transport, max_tokens=20, api_key="sesame")
        state, status = wait_for_end(page)
        [end] = log_capture.wait_for("stream_end", 1)

    assert state == "done", status
    assert end["outcome"] == "max_tokens"
    assert output_text(page) == "".join(expected_tokens(PROMPT)[:20])
    [start] = stream_starts(sent)
    [resume] = resumes(sent)
    assert start.headers["authorization"] == resume.headers["authorization"] == "Bearer sesame"


@pytest.mark.browser
@pytest.mark.parametrize("transport", ["fetch", "eventsource", "ai-sdk"])
def test_a_server_hand_over_reconnects_at_once_without_using_a_retry(
    page: Page,
    make_app: AppFactory,
    serve: ServeFactory,
    provider: MockProvider,
    log_capture: LogCapture,
    transport: str,
) -> None:
    tokens = expected_tokens(PROMPT)
    # The first connection drops; every resume is then served for 0.3 s and handed over, many times over
    # the ~3 s of the answer: more reconnects than the two retries allow.
    app = HandOverResumes(CutStreams(make_app(), after=12, times=1, abrupt=True), serve_s=0.3)
    with serve(as_litestar(app)) as server:
        open_page(page, server)
        sent = record_requests(page)
        ask(page, transport=transport)
        state, status = wait_for_end(page)
        [end] = log_capture.wait_for("stream_end", 1)
        assert (end["outcome"], end["completion_tokens"]) == ("completed", len(tokens))
        assert provider.tokens_emitted == len(tokens)

    assert state == "done", status
    assert output_text(page) == "".join(tokens)
    assert len(stream_starts(sent)) == 1
    followed = resumes(sent)
    assert len(followed) > 2
    assert {request.resumed_stream for request in followed} == {end["request_id"]}
    # Each resume starts after the last event the previous connection brought.
    ids = [int(resumed_after(request, transport)) for request in followed]
    assert ids == sorted(set(ids))
    assert status.endswith(f" after {len(followed)} reconnects.")
    assert len([status for state, status in statuses(page) if state == "retrying"]) == 1  # the drop only
    lengths: list[int] = page.evaluate("() => window.__lengths")
    assert lengths == sorted(lengths)


@pytest.mark.browser
@pytest.mark.parametrize("transport", ["fetch", "eventsource", "ai-sdk"])
def test_stop_during_a_reconnect_cancels_the_stream_and_never_resumes_it(
    page: Page,
    make_app: AppFactory,
    serve: ServeFactory,
    provider: MockProvider,
    log_capture: LogCapture,
    transport: str,
) -> None:
    cutter = CutStreams(make_app(), after=12, times=1, abrupt=True)
    # A resume that the page asks for before Stop is held unanswered: Stop always lands mid-reconnect.
    held: list[Route] = []

    def hold(route: Route) -> None:
        held.append(route)

    page.route(RESUME_URL, hold)
    with serve(as_litestar(cutter)) as server:
        open_page(page, server)
        sent = record_requests(page)
        ask(page, transport=transport)
        page.wait_for_function("() => document.getElementById('status').dataset.state === 'retrying'")
        shown = output_text(page)
        page.click("#stop")
        # The stream outlives its connection (it is resumable): only the explicit cancel stops it.
        [end] = log_capture.wait_for("stream_end", 1)
        assert end["outcome"] == "cancelled"
        assert provider.active_streams == 0
        asked = len(resumes(sent))
        # Twice the pause before the first reconnect: a resume still pending would have been asked for.
        with (
            pytest.raises(PlaywrightTimeoutError),
            page.expect_request(RESUME_URL, timeout=4 * FIRST_RETRY_MS),
        ):
            pass

    assert len(resumes(sent)) == asked <= 1
    assert output_text(page) == shown == "".join(expected_tokens(PROMPT)[:12])
    assert page.get_attribute("#status", "data-state") == "stopped"
    assert text(page, "#status") == "Stopped after 12 deltas."
    assert page.is_disabled("#stop")


@pytest.mark.browser
def test_a_dropped_websocket_resumes_the_same_stream_on_a_new_socket(
    page: Page, make_app: AppFactory, serve: ServeFactory, provider: MockProvider, log_capture: LogCapture
) -> None:
    tokens = expected_tokens(PROMPT)
    cutter = CutStreams(make_app(), after=12, times=1)
    with serve(as_litestar(cutter)) as server:
        open_page(page, server)
        prompts = record_socket_prompts(page)
        resumes_sent = record_socket_prompts(page, kind="resume")
        ask(page, transport="websocket")
        state, status = wait_for_end(page)
        # One generation, resumed rather than asked for again, and run to its end: no token made twice.
        [end] = log_capture.wait_for("stream_end", 1)
        assert (end["outcome"], end["completion_tokens"]) == ("completed", len(tokens))
        assert provider.tokens_emitted == len(tokens)
        assert provider.active_streams == 0
        # The socket carries `/v1/stream`'s events, with their ids.
        last_shown = int(id_of_delta(server, "websocket", 12))

    assert state == "done", status
    assert status.endswith(" after 1 reconnect.")
    assert cutter.cut == 1
    assert output_text(page) == "".join(tokens)
    [prompt] = prompts
    assert prompt["resumable"] is True
    [resume] = resumes_sent
    assert (resume["stream_id"], resume["last_event_id"]) == (end["request_id"], last_shown)
    assert resume["id"] != prompt["id"]
    history = statuses(page)
    [retrying] = [status for state, status in history if state == "retrying"]
    assert retrying.startswith("Connection lost after 12 deltas")
    assert retrying.endswith("to resume the same answer where it stopped.")
    lengths: list[int] = page.evaluate("() => window.__lengths")
    assert lengths == sorted(lengths)  # the text shown was never cleared
    assert len(page.query_selector_all(f"{LAST_ANSWER} .timeline .tick")) == len(tokens)


@pytest.mark.browser
def test_stop_after_a_dropped_websocket_cancels_the_stream(
    page: Page, make_app: AppFactory, serve: ServeFactory, provider: MockProvider, log_capture: LogCapture
) -> None:
    # Cut every socket: Stop lands while the page has no socket to send its `cancel` on.
    cutter = CutStreams(make_app(), after=5, times=-1)
    with serve(as_litestar(cutter)) as server:
        open_page(page, server)
        ask(page, transport="websocket")
        page.wait_for_function("() => document.getElementById('status').dataset.state === 'retrying'")
        page.click("#stop")
        [end] = log_capture.wait_for("stream_end", 1)
        assert end["outcome"] == "cancelled"
        assert provider.active_streams == 0

    assert page.get_attribute("#status", "data-state") == "stopped"


@pytest.mark.browser
def test_retries_after_dropped_connections_are_bounded_and_the_stream_cancelled(
    page: Page, make_app: AppFactory, serve: ServeFactory, provider: MockProvider, log_capture: LogCapture
) -> None:
    # Every connection, resumes included. Ended, not reset: a resume replays its backlog at once, and a reset
    # arriving with the data would make the browser drop what it had not handed to the page yet.
    cutter = CutStreams(make_app(), after=3, times=-1)
    with serve(as_litestar(cutter)) as server:
        open_page(page, server)
        sent = record_requests(page)
        ask(page, transport="fetch")
        state, status = wait_for_end(page)
        # Given up on, the generation is cancelled rather than left to run for its grace period.
        [end] = log_capture.wait_for("stream_end", 1)
        assert end["outcome"] == "cancelled"
        assert provider.active_streams == 0
    with serve(make_app()) as uncut:
        first_three = id_of_delta(uncut, "fetch", 3)
    assert state == "error"
    assert status == (
        "Connection lost: the stream ended before its last event. Gave up after 2 retries; "
        "press Send to try again."
    )
    assert cutter.cut == 3
    # Each connection brought three more deltas of the same answer, each resume starting after the last.
    assert output_text(page) == "".join(expected_tokens(PROMPT)[:9])
    assert len(stream_starts(sent)) == 1
    after = [int(resumed_after(request, "fetch")) for request in resumes(sent)]
    assert after == [int(first_three), int(first_three) + 3]


@pytest.mark.browser
def test_api_keys_reach_the_server_the_way_each_transport_can_send_them(
    page: Page, make_app: AppFactory, serve: ServeFactory
) -> None:
    with serve(make_app(api_keys=(Secret("sesame"),))) as server:
        open_page(page, server)
        for transport in ("fetch", "websocket", "ai-sdk"):
            ask(page, transport=transport, max_tokens=3, api_key="sesame")
            assert wait_for_end(page)[0] == "done", transport
        for transport in ("fetch", "ai-sdk"):
            ask(page, transport=transport, max_tokens=3, api_key="wrong")
            assert wait_for_end(page) == (
                "error",
                "The server answered HTTP 401: invalid API key (invalid_api_key).",
            ), transport
        ask(page, transport="websocket", max_tokens=3, api_key="wrong")
        assert wait_for_end(page) == (
            "error",
            "The server refused the WebSocket: invalid API key (check the API key).",
        )
        page.fill("#api-key", "sesame")
        page.select_option("#transport", "eventsource")
        assert page.is_visible("#transport-note")
        assert "EventSource cannot send headers" in text(page, "#transport-note")
        ask(page, transport="eventsource", max_tokens=3, api_key="sesame")
        state, status = wait_for_end(page)
        assert state == "error"
        assert "EventSource cannot send the API key" in status


def record_socket_prompts(page: Page, *, kind: str = "prompt") -> list[dict[str, Any]]:
    """Every message of type `kind` the page sends on a WebSocket from now on."""
    prompts: list[dict[str, Any]] = []

    def on_frame(payload: str | bytes) -> None:
        message = msgspec.json.decode(payload)
        if message.get("type") == kind:
            prompts.append(message)

    page.on("websocket", lambda socket: socket.on("framesent", on_frame))
    return prompts


def conversations_sent(sent: list[Sent], prompts: list[dict[str, Any]], transport: str) -> list[list[Turn]]:
    """The conversation each stream request carried, as (role, text) turns, in the transport's encoding."""
    if transport == "websocket":
        return [[(m["role"], m["content"]) for m in prompt["messages"]] for prompt in prompts]
    conversations: list[list[Turn]] = []
    for request in stream_starts(sent):
        if transport == "ai-sdk":
            messages = request.body["messages"]
            conversations.append([(m["role"], "".join(p["text"] for p in m["parts"])) for m in messages])
        elif transport == "eventsource":
            if "prompt" in request.query:
                conversations.append([("user", request.query["prompt"][0])])
            else:
                [raw] = request.query["messages"]
                conversations.append([(m["role"], m["content"]) for m in msgspec.json.decode(raw)])
        else:
            conversations.append([(m["role"], m["content"]) for m in request.body["messages"]])
    return conversations


@pytest.mark.browser
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_three_turns_in_a_row_each_send_the_conversation_so_far(
    page: Page, server: RunningServer, log_capture: LogCapture, transport: str
) -> None:
    open_page(page, server)
    sent = record_requests(page)
    prompts = record_socket_prompts(page)
    turns: list[Turn] = []
    for prompt in ("first question", "second question", "third question"):
        ask(page, prompt, transport=transport, max_tokens=6)
        state, status = wait_for_end(page)
        assert state == "done", status
        turns.append(("user", prompt))
        # The mock's answer is a function of every message: right only if the history reached it.
        answer = "".join(expected_answer(turns)[:6])
        assert output_text(page) == answer
        turns.append(("assistant", answer))

    assert conversations_sent(sent, prompts, transport) == [turns[:1], turns[:3], turns[:5]]
    assert len(log_capture.wait_for("stream_end", 3)) == 3
    shown = page.query_selector_all("#conversation .turn")
    assert [turn.get_attribute("class") for turn in shown] == ["turn user", "turn assistant"] * 3
    assert [t.text_content() for t in page.query_selector_all("#conversation .turn.user .text")] == [
        "first question",
        "second question",
        "third question",
    ]
    if transport == "ai-sdk":
        # One conversation, one chat id, as useChat keeps it.
        assert len({request.body["id"] for request in stream_starts(sent)}) == 1


@pytest.mark.browser
def test_the_conversation_survives_a_reload_and_new_conversation_clears_it(
    page: Page, server: RunningServer, provider: MockProvider, log_capture: LogCapture
) -> None:
    open_page(page, server)
    ask(page, "first question", max_tokens=8)
    assert wait_for_end(page)[0] == "done"
    ask(page, "second question", mock={"delay_ms": TOKEN_DELAY_MS})  # no max_tokens: the form is refilled
    page.wait_for_function(OUTPUT_LONGER_THAN, arg=30)
    # Leaving the page mid-answer stops it: the server cancels the stream, the answer is kept as it was.
    page.reload()
    [_, second] = log_capture.wait_for("stream_end", 2)
    assert second["outcome"] == "cancelled"
    assert provider.active_streams == 0

    _, first, _, stopped = saved_turns(page)
    assert (first["state"], stopped["state"]) == ("done", "stopped")
    assert stopped["note"].endswith("deltas: the page was closed or reloaded.")
    history = [("user", "first question"), ("assistant", first["text"]), ("user", "second question")]
    assert "".join(expected_answer(history)).startswith(stopped["text"])
    # Drawn again as it was: the turns, the rendered Markdown, how each ended, each delta on its timeline.
    assert [t.text_content() for t in page.query_selector_all("#conversation .turn.user .text")] == [
        "first question",
        "second question",
    ]
    assert page.get_attribute(LAST_ANSWER, "data-state") == "stopped"
    assert text(page, f"{LAST_ANSWER} .turn-note") == stopped["note"]
    assert page.query_selector_all(f"{LAST_ANSWER} .markdown p")
    assert len(page.query_selector_all(f"{LAST_ANSWER} .timeline .tick")) == len(stopped["marks"]) > 0
    assert page.get_attribute("#status", "data-state") == "idle"

    # The restored conversation is the one the next prompt carries, the stopped answer included.
    sent = record_requests(page)
    ask(page, "third question", max_tokens=4)
    assert wait_for_end(page)[0] == "done"
    [request] = stream_starts(sent)
    history = [(m["role"], m["content"]) for m in request.body["messages"]]
    assert history == [
        ("user", "first question"),
        ("assistant", first["text"]),
        ("user", "second question"),
        ("assistant", stopped["text"]),
        ("user", "third question"),
    ]

    page.click("#new-conversation")
    assert page.query_selector_all("#conversation .turn") == []
    assert page.evaluate(SAVED) is None
    page.reload()
    assert page.query_selector_all("#conversation .turn") == []
    sent = record_requests(page)
    ask(page, "a fresh start", max_tokens=4)
    assert wait_for_end(page)[0] == "done"
    [request] = stream_starts(sent)
    assert request.body["messages"] == [{"role": "user", "content": "a fresh start"}]
    assert output_text(page) == "".join(expected_tokens("a fresh start")[:4])


@pytest.mark.browser
def test_markdown_is_rendered_while_the_answer_streams(page: Page, server: RunningServer) -> None:
    tokens = expected_tokens(PROMPT)  # paragraphs, a list, a fenced Python block, a last paragraph
    open_page(page, server)
    ask(page)
    page.wait_for_function(
        f"""() => document.querySelector("{LAST_ANSWER} .markdown li")
            && document.querySelector("{LAST_ANSWER} .markdown pre code")"""
    )
    # Before the end: a list and a code block exist while the answer is still streaming.
    assert page.get_attribute("#status", "data-state") == "streaming"
    assert page.get_attribute("#conversation", "aria-busy") == "true"
    assert wait_for_end(page)[0] == "done"

    source = "".join(tokens)
    assert output_text(page) == source
    items = page.query_selector_all(f"{LAST_ANSWER} .markdown ul > li")
    listed = [line.removeprefix("- ") for line in source.splitlines() if line.startswith("- ")]
    assert [item.text_content() for item in items] == listed
    [code] = page.query_selector_all(f"{LAST_ANSWER} .markdown figure.code-block pre > code")
    fenced = source.split("```python\n", 1)[1].split("\n```", 1)[0]
    assert code.text_content() == fenced
    assert text(page, f"{LAST_ANSWER} .code-language") == "python"
    assert page.get_attribute(f"{LAST_ANSWER} .copy-code", "aria-label") == "Copy the python code"
    rendered = answer_text(page)
    assert "```" not in rendered
    assert "- " not in rendered.replace(" - ", "")  # no list marker shown as text
    assert page.evaluate(NO_NODE_REMOVED)


@pytest.mark.browser
def test_a_code_block_is_copied_with_its_button(page: Page, server: RunningServer) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.base_url)
    open_page(page, server)
    ask(page, mock={"answer": "Run:\n\n```sh\nmake vendor\n```\n"})
    assert wait_for_end(page)[0] == "done"
    page.click(f"{LAST_ANSWER} .copy-code")
    page.wait_for_function(
        f"() => document.querySelector('{LAST_ANSWER} .copy-code').textContent === 'Copied'"
    )
    assert page.evaluate("() => navigator.clipboard.readText()") == "make vendor"


@pytest.mark.browser
def test_tables_and_inline_markdown_are_rendered(page: Page, server: RunningServer) -> None:
    answer = (
        "| transport | resumes |\n|---|---|\n| fetch | yes |\n| WebSocket | no |\n\n"
        "Some *emphasis*, **bold**, `code`.\n"
    )
    open_page(page, server)
    ask(page, mock={"answer": answer})
    assert wait_for_end(page)[0] == "done"
    cells = page.eval_on_selector_all(
        f"{LAST_ANSWER} .markdown table tr",
        "(rows) => rows.map((row) => [...row.cells].map((c) => c.textContent.trim()))",
    )
    assert cells == [["transport", "resumes"], ["fetch", "yes"], ["WebSocket", "no"]]
    assert page.query_selector_all(f"{LAST_ANSWER} .markdown table thead th")
    assert text(page, f"{LAST_ANSWER} .markdown em") == "emphasis"
    assert text(page, f"{LAST_ANSWER} .markdown strong") == "bold"
    assert text(page, f"{LAST_ANSWER} .markdown p code") == "code"


@pytest.mark.browser
def test_an_unterminated_fence_stays_in_its_answer(page: Page, server: RunningServer) -> None:
    unterminated = "Before the code.\n\n```js\nconst a = 1;\n\nconst b = 2;\n"
    open_page(page, server)
    ask(page, "first question", mock={"answer": unterminated})
    page.wait_for_function(
        f"() => document.querySelector('{LAST_ANSWER} pre code')?.textContent.includes('const a')"
    )
    # Mid-stream the open fence is a code block of its own answer: the text before it is a paragraph, and the
    # timeline, status and form are drawn as ever, outside it.
    assert page.get_attribute("#status", "data-state") == "streaming"
    assert text(page, f"{LAST_ANSWER} .markdown > p") == "Before the code."
    assert (
        page.evaluate("() => document.querySelector('pre').contains(document.querySelector('.timeline'))")
        is False
    )
    assert page.is_visible("#send")
    assert page.is_visible("#status")
    assert wait_for_end(page)[0] == "done"
    assert text(page, f"{LAST_ANSWER} pre code").rstrip("\n") == "const a = 1;\n\nconst b = 2;"

    # The fence never closed; the next answer is Markdown again, not more code.
    ask(page, "second question", mock={"answer": "After: *emphasis* and a list\n\n- one\n- two\n"})
    assert wait_for_end(page)[0] == "done"
    assert page.query_selector_all(f"{LAST_ANSWER} pre") == []
    assert [li.text_content() for li in page.query_selector_all(f"{LAST_ANSWER} li")] == ["one", "two"]
    assert text(page, f"{LAST_ANSWER} em") == "emphasis"
    assert len(page.query_selector_all("#conversation pre")) == 1


HOSTILE = (
    "Look: <img src=x onerror=\"window.pwned = 'img'\"> and <script>window.pwned = 'script'</script>\n\n"
    "[a trap](javascript:window.pwned='link') and [the docs](https://example.com/docs) and "
    "<a href=\"javascript:window.pwned='raw'\">raw</a>\n\n"
    "![a picture](javascript:window.pwned='image') "
    "<iframe src=\"javascript:window.pwned='frame'\"></iframe>\n"
)


@pytest.mark.browser
@pytest.mark.parametrize("transport", ["fetch", "websocket"])
def test_model_output_cannot_run_script_or_follow_a_javascript_link(
    page: Page, server: RunningServer, transport: str
) -> None:
    open_page(page, server)
    ask(page, transport=transport, mock={"answer": HOSTILE})
    assert wait_for_end(page)[0] == "done"
    assert output_text(page) == HOSTILE

    answer = f"{LAST_ANSWER} .markdown"
    assert (
        page.query_selector_all(f"{answer} img, {answer} script, {answer} iframe, {answer} [onerror]") == []
    )
    # Raw HTML is text, as the model wrote it.
    assert "<img src=x onerror=\"window.pwned = 'img'\">" in answer_text(page)
    assert "<script>window.pwned = 'script'</script>" in answer_text(page)
    hrefs = page.eval_on_selector_all(f"{answer} a[href]", "(links) => links.map((a) => a.href)")
    assert hrefs == ["https://example.com/docs"]
    refused = page.eval_on_selector_all(
        f"{answer} a:not([href])", "(links) => links.map((a) => [a.textContent, a.dataset.refused])"
    )
    assert refused == [
        ["a trap", "javascript:window.pwned='link'"],
        ["a picture", "javascript:window.pwned='image'"],
    ]
    page.click(f"{answer} a:not([href])")
    assert page.evaluate("() => window.pwned") is None
    assert page.url == f"{server.base_url}/"


@pytest.mark.browser
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_timeline_has_one_mark_per_delta_and_marks_the_first(
    page: Page, server: RunningServer, log_capture: LogCapture, transport: str
) -> None:
    open_page(page, server)
    ask(page, transport=transport, max_tokens=30, mock={"stall_ms": 300})
    # While streaming, read in one go: as many ticks as deltas counted so far.
    counts = page.wait_for_function(
        f"""() => {{
          const ticks = document.querySelectorAll("{LAST_ANSWER} .timeline .tick").length;
          const deltas = Number(document.getElementById("deltas").textContent);
          const streaming = document.getElementById("status").dataset.state === "streaming";
          return ticks >= 5 && streaming && [ticks, deltas];
        }}"""
    ).json_value()
    assert counts[0] == counts[1] < 30
    assert wait_for_end(page)[0] == "done"
    (end,) = log_capture.wait_for("stream_end", 1)

    xs = page.eval_on_selector_all(
        f"{LAST_ANSWER} .timeline .tick", "(ticks) => ticks.map((tick) => Number(tick.getAttribute('x1')))"
    )
    assert len(xs) == end["completion_tokens"] == int(text(page, "#deltas")) == 30
    assert xs == sorted(xs)
    assert xs[0] >= 300  # time since Send: the stall comes first
    [ttft] = page.query_selector_all(f"{LAST_ANSWER} .timeline .ttft")
    assert float(ttft.get_attribute("x1") or "nan") == xs[0]
    view_box = (page.get_attribute(f"{LAST_ANSWER} .timeline svg", "viewBox") or "").split()
    assert float(view_box[2]) >= xs[-1]  # every tick inside the chart
    legend = text(page, f"{LAST_ANSWER} .timeline figcaption")
    assert re.fullmatch(
        r"30 deltas: first after \d+ ms \(time to first token, the first mark\), last after .+", legend
    )
    [turn] = [turn for turn in saved_turns(page) if turn["role"] == "assistant"]
    assert [at for at, _ in turn["marks"]] == xs


@pytest.mark.browser
def test_eventsource_says_when_the_conversation_is_too_long_for_its_url(
    page: Page, server: RunningServer
) -> None:
    open_page(page, server)
    sent = record_requests(page)
    ask(page, "x " * 4500, transport="eventsource")
    state, status = wait_for_end(page)
    assert state == "error"
    assert status.startswith(
        "The conversation is too long for EventSource, which can send it only in the URL ("
    )
    assert status.endswith(
        " 1 message). Use fetch, WebSocket or the AI SDK transport, or start a new conversation."
    )
    assert stream_starts(sent) == []


@pytest.mark.browser
def test_the_page_is_accessible_and_its_screenshot_is_not_blank(
    page: Page, server: RunningServer, tmp_path: Path
) -> None:
    open_page(page, server)
    unlabelled = page.evaluate(
        "() => [...document.querySelectorAll('input, select, textarea')]"
        ".filter((el) => el.labels.length === 0).map((el) => el.id)"
    )
    assert unlabelled == []
    assert page.get_attribute("#conversation", "aria-live") == "polite"
    assert page.get_attribute("#conversation", "role") == "log"
    assert page.get_attribute("#status", "role") == "status"
    ask(page, transport="fetch", max_tokens=40)
    assert wait_for_end(page)[0] == "done"

    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    width, height, pixels = decode_png(shot.read_bytes())
    assert (width, height) >= (1100, 900)
    background, _ = Counter(pixels).most_common(1)[0]
    drawn = sum(pixel != background for pixel in pixels) / len(pixels)
    assert len(set(pixels)) >= 32  # text, borders, the button: antialiased edges give many shades
    assert drawn > 0.03


def decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and a sample of the pixels (RGB bytes, every 4th pixel of every 4th row) of a PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    position = 8
    header = b""
    compressed: list[bytes] = []
    while position < len(data):
        (length, kind) = struct.unpack(">I4s", data[position : position + 8])
        chunk = data[position + 8 : position + 8 + length]
        position += 12 + length
        if kind == b"IHDR":
            header = chunk
        elif kind == b"IDAT":
            compressed.append(chunk)
    width, height, depth, color_type, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert (depth, interlace) == (8, 0), "expected 8 bits per channel, not interlaced"
    assert color_type in (2, 6), "expected RGB or RGBA"
    channels = 3 if color_type == 2 else 4
    stride = width * channels
    raw = zlib.decompress(b"".join(compressed))
    previous = bytearray(stride)
    sample: list[bytes] = []
    for y in range(height):
        start = y * (stride + 1)
        line = _unfilter(raw[start], bytearray(raw[start + 1 : start + 1 + stride]), previous, channels)
        if y % 4 == 0:
            sample.extend(bytes(line[x : x + 3]) for x in range(0, stride, 4 * channels))
        previous = line
    return width, height, sample


def _unfilter(kind: int, line: bytearray, above: bytearray, bpp: int) -> bytearray:
    """Undo one PNG row filter (RFC 2083, 6.3)."""
    if kind == 1:
        for i in range(bpp, len(line)):
            line[i] = (line[i] + line[i - bpp]) & 0xFF
    elif kind == 2:
        for i in range(len(line)):
            line[i] = (line[i] + above[i]) & 0xFF
    elif kind == 3:
        for i in range(len(line)):
            left = line[i - bpp] if i >= bpp else 0
            line[i] = (line[i] + ((left + above[i]) >> 1)) & 0xFF
    elif kind == 4:
        for i in range(len(line)):
            a = line[i - bpp] if i >= bpp else 0
            b = above[i]
            c = above[i - bpp] if i >= bpp else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            predictor = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            line[i] = (line[i] + predictor) & 0xFF
    return line


def seed_conversation(page: Page, turns: list[Any]) -> None:
    """A conversation in localStorage as an earlier (or another) page left it, then a reload."""
    saved = msgspec.json.encode({"id": "chat-seeded", "turns": turns}).decode()
    page.evaluate("(saved) => localStorage.setItem('tokenrelay.conversation.v1', saved)", saved)
    page.reload()


@pytest.mark.browser
def test_malformed_saved_turns_are_left_out_and_the_page_still_works(
    page: Page, server: RunningServer
) -> None:
    open_page(page, server)
    good = {
        "id": "a-1",
        "role": "assistant",
        "text": "Kept.",
        "state": "done",
        "calls": [],
        "marks": [[5, "text"]],
    }
    seed_conversation(
        page,
        [
            {"id": "u-1", "role": "user", "text": "Kept too."},
            good,
            {"id": "a-2", "role": "assistant", "text": "x", "marks": 5},
            {"id": "a-3", "role": "assistant", "text": "x", "calls": {}},
            {"id": "a-4", "role": "assistant", "text": "x", "marks": [None]},
            {"id": "s-1", "role": "system", "text": "not ours"},
            "not a turn",
        ],
    )

    # The page fixture fails the test on any uncaught error; the well-formed turns are drawn, and it works.
    assert [t.text_content() for t in page.query_selector_all("#conversation .turn.user .text")] == [
        "Kept too."
    ]
    assert len(page.query_selector_all("#conversation .turn.assistant")) == 1
    assert text(page, "#status").endswith("is back (2 turns).")
    ask(page, "and now?", max_tokens=3)
    assert wait_for_end(page)[0] == "done"


@pytest.mark.browser
def test_a_conversation_longer_than_a_request_sends_its_newest_turns_and_says_so(
    page: Page, server: RunningServer
) -> None:
    long_text = "word " * 30_000  # 150,000 characters a turn: two fit in the page's 256 KiB budget, not three
    turns: list[dict[str, Any]] = []
    for n in range(3):
        turns.append({"id": f"u-{n}", "role": "user", "text": f"question {n}"})
        turns.append({"id": f"a-{n}", "role": "assistant", "text": long_text, "state": "done"})
    open_page(page, server)
    seed_conversation(page, turns)
    sent = record_requests(page)
    ask(page, "one more", max_tokens=3)
    state, status = wait_for_end(page)

    assert state == "done", status
    [request] = stream_starts(sent)
    roles = [(m["role"], m["content"][:10]) for m in request.body["messages"]]
    # The newest turns that fit, starting with a user's, then the prompt.
    assert roles == [("user", "question 2"), ("assistant", "word word "), ("user", "one more")]
    *_, last_user = page.query_selector_all("#conversation .turn.user")
    note = last_user.query_selector(".turn-note")
    assert note is not None
    assert note.text_content() == (
        "4 older messages were not sent with this prompt: the conversation is longer than one request takes."
    )


@pytest.mark.browser
def test_an_image_in_the_answer_is_a_link_that_opens_elsewhere(page: Page, server: RunningServer) -> None:
    open_page(page, server)
    ask(page, "img", mock={"answer": "See ![a chart](https://example.com/chart.png) here."}, max_tokens=50)
    assert wait_for_end(page)[0] == "done"

    link = page.query_selector(f"{LAST_ANSWER} a.image-link")
    assert link is not None
    assert (link.get_attribute("target"), link.get_attribute("rel")) == (
        "_blank",
        "noopener noreferrer nofollow",
    )
    assert page.query_selector(f"{LAST_ANSWER} img") is None


@pytest.mark.browser
@pytest.mark.parametrize("transport", ["fetch", "eventsource", "ai-sdk"])
def test_stop_while_the_first_token_is_awaited_cancels_the_stream(
    page: Page, server: RunningServer, provider: MockProvider, log_capture: LogCapture, transport: str
) -> None:
    # No header of the answer has come back yet: the page cancels by the id it chose for the stream. (Its
    # streams are resumable, so closing the connection alone would only detach it, for RESUME_GRACE_S.)
    open_page(page, server)
    sent = record_requests(page)
    ask(page, transport=transport, mock={"stall_ms": 60_000})
    page.wait_for_function("() => document.getElementById('status').dataset.state === 'connecting'")
    for _ in range(500):  # until the stream runs on the server (a cancel before it would find nothing)
        if provider.active_streams:
            break
        page.wait_for_timeout(10)
    page.click("#stop")
    [end] = log_capture.wait_for("stream_end", 1)

    assert end["outcome"] == "cancelled"
    assert provider.active_streams == 0
    [start] = stream_starts(sent)
    chosen = start.query["stream_id"][0] if transport == "eventsource" else start.headers["x-stream-id"]
    assert end["request_id"] == chosen
    assert f"/v1/streams/{chosen}/cancel" in [request.path for request in sent if request.method == "POST"]
