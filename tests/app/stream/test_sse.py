"""SSE framing as bytes, read back by a strict parser and by `httpx-sse` (what clients actually run)."""

from __future__ import annotations

import httpx
import msgspec
import pytest
from httpx_sse import connect_sse

from app.stream.dialects import sse
from tests.support.sse import parse_frames

_TRICKY_TOKENS = [
    "\n",
    "\n\n",
    "line one\nline two",
    "data: injected\n\n",
    "\r\n",
    "\r",
    ": not a comment",
    "é✓",
]


def _read_with_httpx_sse(body: bytes) -> list[tuple[str, str, str]]:
    def respond(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    with (
        httpx.Client(transport=httpx.MockTransport(respond)) as client,
        connect_sse(client, "GET", "http://test/") as source,
    ):
        return [(event.event, event.data, event.id) for event in source.iter_sse()]


def test_event_with_id_and_name_is_one_block() -> None:
    assert sse.event(b'{"a":1}', name="delta", event_id="7") == b'id: 7\nevent: delta\ndata: {"a":1}\n\n'


def test_event_without_name_or_id_is_a_bare_data_line() -> None:
    assert sse.event(b"[DONE]") == b"data: [DONE]\n\n"
    assert sse.event(b"[DONE]") == sse.OPENAI_DONE


@pytest.mark.parametrize("token", _TRICKY_TOKENS)
def test_json_data_keeps_newlines_and_field_lookalikes_inside_one_event(token: str) -> None:
    body = sse.event(msgspec.json.encode({"text": token}), name="delta", event_id="1")

    frames = parse_frames(body)
    assert len(frames) == 1
    assert len(frames[0].data_lines) == 1
    assert frames[0].json() == {"text": token}
    assert _read_with_httpx_sse(body) == [("delta", msgspec.json.encode({"text": token}).decode(), "1")]


def test_a_stream_of_tricky_tokens_reassembles_exactly_through_httpx_sse() -> None:
    body = b"".join(
        sse.event(msgspec.json.encode({"text": token}), name="delta", event_id=str(index))
        for index, token in enumerate(_TRICKY_TOKENS, start=1)
    )

    received = _read_with_httpx_sse(body)

    assert [msgspec.json.decode(data)["text"] for _, data, _ in received] == _TRICKY_TOKENS
    assert [event_id for _, _, event_id in received] == [str(i) for i in range(1, len(_TRICKY_TOKENS) + 1)]


def test_heartbeat_is_a_comment_that_clients_ignore() -> None:
    frames = parse_frames(sse.PING)
    assert [(frame.is_comment, frame.comments) for frame in frames] == [(True, ("ping",))]
    # Only a heartbeat before the first `id:` line: httpx-sse 0.4 (unlike the spec and browsers) dispatches
    # an empty "message" for a blank line once it has seen an id, so clients must filter on event names.
    body = sse.PING + sse.PING + sse.event(b"{}", name="done", event_id="1")
    assert _read_with_httpx_sse(body) == [("done", "{}", "1")]


def test_event_stream_headers_forbid_buffering_and_transformation() -> None:
    headers = {name.lower(): value for name, value in sse.EVENT_STREAM_HEADERS.items()}
    assert headers["content-type"].startswith("text/event-stream")
    assert "no-cache" in headers["cache-control"]
    assert "no-transform" in headers["cache-control"]
    assert headers["x-accel-buffering"] == "no"
