"""The mock's `repeat` directive, which the benchmarks use for 10,000-token streams."""

from __future__ import annotations

import tracemalloc

import msgspec
import pytest

from providers.mock import MockProvider, compose_answer, tokenize
from providers.protocol import ChatMessage, ChatRequest, Finish, MockDirectives, StreamItem, TextDelta
from tests.support.timeouts import run_async


def _request(repeat: int | None, max_tokens: int | None = None) -> ChatRequest:
    return ChatRequest(
        model="mock",
        messages=(ChatMessage(role="user", content="long streams"),),
        max_tokens=max_tokens,
        mock=MockDirectives(repeat=repeat),
    )


def _collect(request: ChatRequest) -> list[StreamItem]:
    async def body() -> list[StreamItem]:
        return [item async for item in MockProvider().stream_chat(request)]

    return run_async(body)


def test_repeat_streams_the_answer_that_many_times_separated_by_a_blank_line() -> None:
    once = tokenize(compose_answer(_request(None)))
    items = _collect(_request(3))

    deltas = [item.text for item in items if isinstance(item, TextDelta)]
    assert deltas == [*once, "\n\n", *once, "\n\n", *once]
    finish = items[-1]
    assert isinstance(finish, Finish)
    assert finish.reason == "stop"
    assert finish.usage is not None
    assert finish.usage.completion_tokens == len(deltas)


def test_repeat_with_max_tokens_gives_an_exact_long_stream() -> None:
    items = _collect(_request(200, max_tokens=10_000))

    assert sum(isinstance(item, TextDelta) for item in items) == 10_000
    finish = items[-1]
    assert isinstance(finish, Finish)
    assert finish.reason == "length"


@pytest.mark.parametrize("raw", [b'{"repeat": 0}', b'{"repeat": 1001}', b'{"repeat": "2"}'])
def test_repeat_out_of_range_is_rejected(raw: bytes) -> None:
    with pytest.raises(msgspec.ValidationError, match=r"\$\.repeat"):
        msgspec.json.decode(raw, type=MockDirectives)


def test_a_long_repeat_is_generated_on_demand_not_built_in_memory() -> None:
    # The amplifier: `repeat: 1000` once built a 1000-fold answer and all its tokens (~7 MB) per stream,
    # whatever `max_tokens` asked for; any anonymous client could send it.
    async def first_three() -> int:
        tracemalloc.start()
        try:
            stream = MockProvider().stream_chat(_request(1000, max_tokens=3))
            items = [item async for item in stream]
            assert sum(isinstance(item, TextDelta) for item in items) == 3
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    peak_bytes = run_async(first_three)

    assert peak_bytes < 200_000


def test_repeated_tokens_are_the_tokens_of_the_repeated_text() -> None:
    once = compose_answer(_request(None))
    items = _collect(_request(4))

    assert [item.text for item in items if isinstance(item, TextDelta)] == tokenize("\n\n".join([once] * 4))
