"""Session events to bytes: ordering, ids, terminal events, and the OpenAI chunk shapes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence

import msgspec
import pytest

from app.errors import UPSTREAM_STREAM_ERROR
from app.schemas import ChatCompletionChunk, ChunkChoice, ChunkDelta
from app.stream.cancel.memory import InMemoryCancelRegistry
from app.stream.consumer import OpenStream, frames
from app.stream.dialects.native import NativeDialect
from app.stream.dialects.openai_chat import OpenAIChatDialect
from app.stream.limits import StreamLimits
from app.stream.session import HEARTBEAT, Completed, Failed, Outcome, SessionEvent, StreamSession
from providers.protocol import TextDelta, Usage
from tests.app.helpers import ScriptedProvider, mock_request
from tests.support.sse import Frame, events, parse_frames
from tests.support.timeouts import run_async

_USAGE = Usage(prompt_tokens=5, completion_tokens=2)
_FAILURE = Failed(UPSTREAM_STREAM_ERROR("upstream broke"), Outcome.ERROR)


def _session() -> StreamSession:
    return StreamSession(
        provider=ScriptedProvider([], name="scripted"),
        request=mock_request("hi", model="m-1"),
        stream_id="abc123",
        dialect="test",
        limits=StreamLimits(max_tokens=100, idle_timeout_s=10, deadline_s=10, heartbeat_s=10),
        cancels=InMemoryCancelRegistry(),
    )


class _Rest:
    """The session's remaining events, recording whether the framing closed them before it ended.

    The generator is kept referenced here, as a session keeps its own: only an explicit close counts,
    not the garbage collector's finaliser.
    """

    def __init__(self, items: Sequence[SessionEvent]) -> None:
        self.items = list(items)
        self.closed = False
        self.closed_when_frames_ended: bool | None = None
        self.generator = self._stream()

    def stream(self) -> AsyncGenerator[SessionEvent, None]:
        return self.generator

    async def _stream(self) -> AsyncGenerator[SessionEvent, None]:
        try:
            for item in self.items:
                await asyncio.sleep(0)
                yield item
        finally:
            self.closed = True

    def collect(self, framed: AsyncGenerator[bytes, None]) -> bytes:
        async def body() -> bytes:
            chunks = [chunk async for chunk in framed]
            self.closed_when_frames_ended = self.closed
            return b"".join(chunks)

        return run_async(body, timeout_s=5)


def native_stream(
    session: StreamSession, first: SessionEvent, rest: AsyncGenerator[SessionEvent, None]
) -> AsyncGenerator[bytes, None]:
    return frames(OpenStream(session, first, rest), NativeDialect(session))


def openai_stream(
    session: StreamSession,
    first: SessionEvent,
    rest: AsyncGenerator[SessionEvent, None],
    *,
    completion_id: str,
    include_usage: bool,
) -> AsyncGenerator[bytes, None]:
    dialect = OpenAIChatDialect(session, completion_id=completion_id, include_usage=include_usage)
    return frames(OpenStream(session, first, rest), dialect)


def _native(first: SessionEvent, *rest: SessionEvent) -> tuple[list[Frame], _Rest]:
    remaining = _Rest(rest)
    body = remaining.collect(native_stream(_session(), first, remaining.stream()))
    return parse_frames(body), remaining


def _openai(first: SessionEvent, *rest: SessionEvent, include_usage: bool = False) -> tuple[bytes, _Rest]:
    remaining = _Rest(rest)
    frames = openai_stream(
        _session(), first, remaining.stream(), completion_id="chatcmpl-abc123", include_usage=include_usage
    )
    return remaining.collect(frames), remaining


def test_native_stream_is_start_deltas_done_with_unique_increasing_ids() -> None:
    frames, rest = _native(
        TextDelta("Hello"), TextDelta("\n\nworld"), Completed("stop", _USAGE, Outcome.COMPLETED)
    )

    named = events(frames)
    assert [frame.event for frame in named] == ["start", "delta", "delta", "done"]
    assert [frame.id for frame in named] == ["1", "2", "3", "4"]
    assert [frame.json()["text"] for frame in named[1:3]] == ["Hello", "\n\nworld"]
    start = named[0].json()
    assert start["stream_id"] == "abc123"
    assert start["model"] == "m-1"
    assert start["provider"] == "scripted"
    assert isinstance(start["created"], int)
    done = named[3].json()
    assert done["finish_reason"] == "stop"
    assert done["outcome"] == "completed"
    assert done["usage"] == {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    assert set(done["timings"]) == {"ttft_ms", "duration_ms"}
    assert rest.closed_when_frames_ended


def test_native_heartbeat_is_a_comment_between_events_and_takes_no_id() -> None:
    frames, _ = _native(HEARTBEAT, TextDelta("a"), HEARTBEAT, Completed("stop", None, Outcome.COMPLETED))

    assert [("ping" if frame.is_comment else frame.event) for frame in frames] == [
        "start",
        "ping",
        "delta",
        "ping",
        "done",
    ]
    assert [frame.id for frame in events(frames)] == ["1", "2", "3"]
    assert events(frames)[-1].json()["usage"] is None


def test_native_failure_is_a_terminal_error_event_in_openai_error_shape() -> None:
    frames, rest = _native(TextDelta("a"), _FAILURE, TextDelta("never sent"))

    named = events(frames)
    assert [frame.event for frame in named] == ["start", "delta", "error"]
    assert named[-1].json() == {
        "type": "error",
        "error": {
            "message": "upstream broke",
            "type": "upstream_error",
            "code": "upstream_stream_error",
            "param": None,
        },
    }
    assert rest.closed_when_frames_ended


def test_native_budget_outcome_is_named_in_done() -> None:
    frames, _ = _native(TextDelta("a"), Completed("length", None, Outcome.MAX_TOKENS))
    done = events(frames)[-1].json()
    assert (done["finish_reason"], done["outcome"]) == ("length", "max_tokens")


def test_openai_stream_is_role_chunk_content_chunks_finish_chunk_then_done() -> None:
    body, rest = _openai(TextDelta("Hel"), TextDelta("lo\n"), Completed("stop", _USAGE, Outcome.COMPLETED))

    frames = events(parse_frames(body))
    assert [frame.event for frame in frames] == [None] * 5
    assert frames[-1].data == "[DONE]"
    chunks = [frame.json() for frame in frames[:-1]]
    assert {chunk["id"] for chunk in chunks} == {"chatcmpl-abc123"}
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert {chunk["model"] for chunk in chunks} == {"m-1"}
    assert [chunk["choices"][0]["delta"] for chunk in chunks] == [
        {"role": "assistant", "content": ""},
        {"content": "Hel"},
        {"content": "lo\n"},
        {},
    ]
    assert [chunk["choices"][0]["finish_reason"] for chunk in chunks] == [None, None, None, "stop"]
    assert all(chunk["usage"] is None for chunk in chunks)
    assert rest.closed_when_frames_ended


def test_openai_usage_chunk_only_when_asked() -> None:
    body, _ = _openai(TextDelta("a"), Completed("stop", _USAGE, Outcome.COMPLETED), include_usage=True)

    frames = events(parse_frames(body))
    usage_chunk = frames[-2].json()
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    assert frames[-1].data == "[DONE]"
    assert frames[-3].json()["choices"][0]["finish_reason"] == "stop"


def test_openai_heartbeat_is_a_comment() -> None:
    body, _ = _openai(HEARTBEAT, TextDelta("a"), Completed("stop", None, Outcome.COMPLETED))
    frames = parse_frames(body)
    assert frames[1].is_comment
    assert frames[1].comments == ("ping",)


def test_openai_failure_is_an_error_object_without_done() -> None:
    body, rest = _openai(TextDelta("a"), _FAILURE)

    frames = events(parse_frames(body))
    assert frames[-1].json() == {
        "error": {
            "message": "upstream broke",
            "type": "upstream_error",
            "code": "upstream_stream_error",
            "param": None,
        }
    }
    assert all(frame.data != "[DONE]" for frame in frames)
    assert rest.closed_when_frames_ended


@pytest.mark.parametrize("flavour", ["native", "openai"])
def test_closing_the_frames_early_closes_the_session_events(flavour: str) -> None:
    rest = _Rest([TextDelta(str(i)) for i in range(10)])
    session = _session()
    frames = (
        native_stream(session, TextDelta("first"), rest.stream())
        if flavour == "native"
        else openai_stream(session, TextDelta("first"), rest.stream(), completion_id="c", include_usage=False)
    )

    async def read_three_then_close() -> bool:
        for _ in range(3):
            await anext(frames)
        await frames.aclose()
        return rest.closed

    assert run_async(read_three_then_close, timeout_s=5)


@pytest.mark.parametrize("text", ["Hel", 'a"b\n', "", 'say "content":""', "é\u2028"])
def test_a_chat_content_chunk_is_the_chunk_struct_encoded_byte_for_byte(text: str) -> None:
    # The hot path writes the constant parts encoded once; it must be exactly what the Struct gives.
    session = StreamSession(
        provider=ScriptedProvider([], name="scripted"),
        request=mock_request("hi", model='m "content":"" 1'),
        stream_id="abc123",
        dialect="test",
        limits=StreamLimits(max_tokens=100, idle_timeout_s=10, deadline_s=10, heartbeat_s=10),
        cancels=InMemoryCancelRegistry(),
    )
    dialect = OpenAIChatDialect(session, completion_id="chatcmpl-abc123", include_usage=False)

    expected = ChatCompletionChunk(
        id="chatcmpl-abc123",
        created=msgspec.json.decode(dialect.start()[len(b"data: ") :])["created"],
        model='m "content":"" 1',
        choices=[ChunkChoice(index=0, delta=ChunkDelta(content=text))],
    )
    assert dialect.frame(TextDelta(text)) == b"data: " + msgspec.json.encode(expected) + b"\n\n"
