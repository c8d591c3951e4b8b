"""The UI message stream dialect: the chunks `useChat` reads, for scripted sessions run under their budgets.

Each scripted session is framed by the one consumer loop, as under HTTP; the streams are also replayed
through the AI SDK's own reader (on Node), which validates every chunk and rejects one out of order.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import msgspec
import pytest

from app.stream.cancel.memory import InMemoryCancelRegistry
from app.stream.consumer import frames, open_stream
from app.stream.dialects.ui_message import UIMessageStreamDialect
from app.stream.limits import StreamLimits
from app.stream.session import StreamSession
from providers.errors import ProviderStreamError
from providers.protocol import TextDelta, ToolCallDelta
from tests.app.helpers import Hang, ScriptedProvider, Step, WaitFor, deltas, finish, mock_request
from tests.support.sse import events, parse_frames
from tests.support.timeouts import run_async
from tests.support.tools import run_node_client

_LIMITS = StreamLimits(max_tokens=100, idle_timeout_s=10, deadline_s=10, heartbeat_s=10)
_CALL = [
    ToolCallDelta(index=0, id="call_1", name="get_weather", arguments='{"city":'),
    ToolCallDelta(index=0, arguments='"Lyon"}'),
]


def _session(steps: Sequence[Step], limits: StreamLimits, cancels: InMemoryCancelRegistry) -> StreamSession:
    return StreamSession(
        provider=ScriptedProvider(steps),
        request=mock_request("hi", model="m-1"),
        stream_id="abc123",
        dialect="ui-message-stream",
        limits=limits,
        cancels=cancels,
    )


def _body(
    steps: Sequence[Step],
    *,
    limits: StreamLimits = _LIMITS,
    cancel_after: int | None = None,
    heartbeat_opens: asyncio.Event | None = None,
) -> bytes:
    """The whole framed stream of a scripted session: cancelled after `cancel_after` frames if given, and
    setting `heartbeat_opens` at its first heartbeat."""

    async def run() -> bytes:
        cancels = InMemoryCancelRegistry()
        session = _session(steps, limits, cancels)
        stream = await open_stream(session)
        out: list[bytes] = []
        async for framed in frames(stream, UIMessageStreamDialect(session, message_id="msg-1")):
            out.append(framed)
            if len(out) == cancel_after:
                assert await cancels.request_cancel(session.stream_id)  # what the cancel endpoint does
            if heartbeat_opens is not None and framed == b": ping\n\n":
                heartbeat_opens.set()
        return b"".join(out)

    return run_async(run, timeout_s=5)


def _chunks(body: bytes) -> list[dict[str, Any]]:
    """The JSON chunks of a stream, which must end with `[DONE]` and nothing after it."""
    data = events(parse_frames(body))
    assert data[-1].data == "[DONE]"
    assert all(frame.event is None and frame.id is None for frame in data)
    return [frame.json() for frame in data[:-1]]


def _types(chunks: list[dict[str, Any]]) -> list[str]:
    return [chunk["type"] for chunk in chunks]


def test_text_is_one_part_between_start_and_finish() -> None:
    body = _body([*deltas("Hel", "lo\n", ' "w"'), finish(3)])
    chunks = _chunks(body)

    assert _types(chunks) == [
        "start",
        "start-step",
        "text-start",
        "text-delta",
        "text-delta",
        "text-delta",
        "text-end",
        "finish-step",
        "finish",
    ]
    start = chunks[0]
    assert start["messageId"] == "msg-1"
    assert start["messageMetadata"]["stream_id"] == "abc123"
    assert (start["messageMetadata"]["model"], start["messageMetadata"]["provider"]) == ("m-1", "scripted")
    part_id = chunks[2]["id"]
    assert [(c["id"], c["delta"]) for c in chunks[3:6]] == [
        (part_id, "Hel"),
        (part_id, "lo\n"),
        (part_id, ' "w"'),
    ]
    assert chunks[6] == {"type": "text-end", "id": part_id}
    finished = chunks[-1]
    assert finished["finishReason"] == "stop"
    metadata = finished["messageMetadata"]
    assert metadata["outcome"] == "completed"
    assert metadata["usage"] == {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
    assert set(metadata["timings"]) == {"ttft_ms", "duration_ms"}
    assert "error" not in metadata


@pytest.mark.parametrize("text", ["Hel", 'a"b\n', "", 'say "delta":""', "é\u2028"])
def test_a_text_delta_is_the_chunk_struct_encoded_byte_for_byte(text: str) -> None:
    # The hot path writes the constant parts encoded once per text part; it must be what the Struct gives.
    body = _body([TextDelta(text), finish(1)])

    [delta] = [frame for frame in events(parse_frames(body)) if '"text-delta"' in frame.data]
    expected = msgspec.json.encode({"type": "text-delta", "id": "text-1", "delta": text}).decode()
    assert delta.data == expected


def test_a_tool_call_is_streamed_then_its_input_parsed() -> None:
    chunks = _chunks(_body([*_CALL, finish(2, reason="tool_calls")]))

    assert _types(chunks) == [
        "start",
        "start-step",
        "tool-input-start",
        "tool-input-delta",
        "tool-input-delta",
        "tool-input-available",
        "finish-step",
        "finish",
    ]
    assert chunks[2] == {"type": "tool-input-start", "toolCallId": "call_1", "toolName": "get_weather"}
    assert [c["inputTextDelta"] for c in chunks[3:5]] == ['{"city":', '"Lyon"}']
    assert chunks[5] == {
        "type": "tool-input-available",
        "toolCallId": "call_1",
        "toolName": "get_weather",
        "input": {"city": "Lyon"},
    }
    assert chunks[-1]["finishReason"] == "tool-calls"


def test_text_and_tool_calls_each_close_the_part_before_them() -> None:
    chunks = _chunks(
        _body(
            [
                TextDelta("Let me look."),
                *_CALL,
                ToolCallDelta(index=1, id="call_2", name="get_time", arguments="{}"),
                TextDelta("Done."),
                finish(5),
            ]
        )
    )

    assert _types(chunks)[2:-2] == [
        "text-start",
        "text-delta",
        "text-end",
        "tool-input-start",
        "tool-input-delta",
        "tool-input-delta",
        "tool-input-start",
        "tool-input-delta",
        "tool-input-available",
        "tool-input-available",
        "text-start",
        "text-delta",
        "text-end",
    ]
    assert [c["toolCallId"] for c in chunks if c["type"] == "tool-input-available"] == ["call_1", "call_2"]
    text_ids = [c["id"] for c in chunks if c["type"] == "text-start"]
    assert len(set(text_ids)) == 2  # a new part, not the first one reopened


def test_a_heartbeat_is_a_comment_between_chunks() -> None:
    # The provider stays silent until the first heartbeat is out.
    gate = asyncio.Event()
    body = _body(
        [WaitFor(gate), *deltas("a"), finish(1)], limits=StreamLimits(100, 10, 10, 0.02), heartbeat_opens=gate
    )

    framed = parse_frames(body)
    assert framed[2].is_comment
    assert framed[2].comments == ("ping",)
    assert [frame.json()["type"] for frame in (*framed[:2], framed[3])] == [
        "start",
        "start-step",
        "text-start",
    ]
    assert events(framed)[-1].data == "[DONE]"


def test_a_failure_mid_stream_is_an_error_then_a_finish_with_reason_error() -> None:
    chunks = _chunks(_body([*deltas("a", "b"), ProviderStreamError("upstream broke")]))

    assert _types(chunks)[-3:] == ["error", "finish-step", "finish"]
    assert chunks[-3] == {"type": "error", "errorText": "upstream broke"}
    assert "text-end" not in _types(chunks)  # the part stays unfinished, as the AI SDK leaves it
    finished = chunks[-1]
    assert finished["finishReason"] == "error"
    assert finished["messageMetadata"]["outcome"] == "error"
    assert finished["messageMetadata"]["error"] == {
        "message": "upstream broke",
        "type": "upstream_error",
        "code": "upstream_stream_error",
        "param": None,
    }


def test_the_token_budget_finishes_with_length_and_a_cut_call_is_an_input_error() -> None:
    chunks = _chunks(_body([*_CALL, finish(2)], limits=StreamLimits(1, 10, 10, 10)))

    assert _types(chunks)[-4:] == ["tool-input-delta", "tool-input-error", "finish-step", "finish"]
    error = chunks[-3]
    assert (error["toolCallId"], error["toolName"], error["input"]) == ("call_1", "get_weather", '{"city":')
    assert "not valid JSON" in error["errorText"]
    assert chunks[-1]["finishReason"] == "length"
    assert chunks[-1]["messageMetadata"]["outcome"] == "max_tokens"


def test_the_deadline_ends_the_stream_with_an_error_naming_it() -> None:
    chunks = _chunks(_body([*deltas("a"), Hang()], limits=StreamLimits(100, 10, 0.1, 10)))

    assert chunks[-3]["errorText"] == "the stream ran longer than 0.1s"
    metadata = chunks[-1]["messageMetadata"]
    assert (chunks[-1]["finishReason"], metadata["outcome"], metadata["error"]["code"]) == (
        "error",
        "deadline",
        "deadline",
    )


def test_a_cancel_is_an_abort_after_the_metadata_saying_why() -> None:
    chunks = _chunks(_body([*deltas("a"), Hang()], limits=StreamLimits(100, 10, 10, 10), cancel_after=2))

    assert _types(chunks) == ["start", "start-step", "text-start", "text-delta", "message-metadata", "abort"]
    assert chunks[-1] == {"type": "abort", "reason": "stream cancelled by request"}
    metadata = chunks[-2]["messageMetadata"]
    assert (metadata["outcome"], metadata["error"]["code"]) == ("cancelled", "cancelled")


def test_the_ai_sdk_reads_every_kind_of_stream_without_an_error() -> None:
    bodies = [
        _body([*deltas("Hel", "lo"), finish(2)]),
        _body([TextDelta("Let me look."), *_CALL, TextDelta("Done."), finish(5)]),
        _body([*_CALL, finish(2)], limits=StreamLimits(1, 10, 10, 10)),
        _body([*deltas("a", "b"), ProviderStreamError("upstream broke")]),
        _body([*deltas("a"), Hang()], cancel_after=2),
    ]
    replayed = json.dumps([body.decode() for body in bodies])
    text, mixed, cut, failed, cancelled = run_node_client("ai", "ai_sdk_ui_replay.mjs", stdin=replayed)

    assert text["errors"] == []
    assert text["message"]["id"] == "msg-1"
    assert text["message"]["parts"] == [
        {"type": "step-start"},
        {"type": "text", "text": "Hello", "state": "done"},
    ]
    assert text["message"]["metadata"]["outcome"] == "completed"
    assert mixed["errors"] == []
    assert [part["type"] for part in mixed["message"]["parts"]] == [
        "step-start",
        "text",
        "tool-get_weather",
        "text",
    ]
    assert mixed["message"]["parts"][2]["state"] == "input-available"
    assert mixed["message"]["parts"][2]["input"] == {"city": "Lyon"}
    assert cut["errors"] == []
    [call] = [part for part in cut["message"]["parts"] if part["type"] == "tool-get_weather"]
    assert (call["state"], call["rawInput"]) == ("output-error", '{"city":')
    # Reported to the app as an error, which `useChat` shows; the text so far stays in the message.
    assert failed["errors"] == ["upstream broke"]
    assert failed["message"]["parts"][-1]["text"] == "ab"
    assert failed["message"]["metadata"]["error"]["code"] == "upstream_stream_error"
    # An abort is not an error: `useChat` ends such an answer as stopped.
    assert cancelled["errors"] == []
    assert cancelled["types"][-1] == "abort"
    assert cancelled["message"]["metadata"]["outcome"] == "cancelled"
