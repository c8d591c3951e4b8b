"""The OpenAI provider beyond plain text: tools, response formats, `n`, extra fields, the model list."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest

from providers.protocol import (
    ChatMessage,
    ChatRequest,
    Finish,
    FunctionCall,
    FunctionDefinition,
    ImagePart,
    ImageURL,
    JsonSchemaFormat,
    JsonSchemaSpec,
    NamedFunction,
    NamedToolChoice,
    TextDelta,
    TextPart,
    Tool,
    ToolCall,
    ToolCallDelta,
)
from tests.providers.fake_upstream import DONE_EVENT, FakeUpstream, streamed
from tests.providers.test_openai_provider import REQUEST, stream_and_close
from tests.support.timeouts import run_async


def _event(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> bytes:
    body = {
        "id": "chatcmpl-x",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": choices,
    }
    if usage is not None:
        body["usage"] = usage
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def _choice(index: int, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {"index": index, "delta": delta, "finish_reason": finish_reason}


USAGE = {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14}
TOOL_CALL_STREAM = [
    _event([_choice(0, {"role": "assistant", "content": None, "tool_calls": [
        {"index": 0, "id": "call_abc", "type": "function",
         "function": {"name": "get_weather", "arguments": ""}}
    ]})]),
    _event([_choice(0, {"tool_calls": [{"index": 0, "function": {"arguments": '{"loc'}}]})]),
    _event([_choice(0, {"tool_calls": [{"index": 0, "function": {"arguments": 'ation":"Lyon"}'}}]})]),
    _event([_choice(0, {}, "tool_calls")]),
    _event([], USAGE),
    DONE_EVENT,
]  # fmt: skip


def test_tool_call_pieces_become_tool_call_deltas_and_the_finish_is_tool_calls() -> None:
    items = stream_and_close(FakeUpstream(streamed(TOOL_CALL_STREAM)).provider())

    assert items[:3] == [
        ToolCallDelta(index=0, id="call_abc", name="get_weather", arguments=""),
        ToolCallDelta(index=0, arguments='{"loc'),
        ToolCallDelta(index=0, arguments='ation":"Lyon"}'),
    ]
    finish = items[3]
    assert isinstance(finish, Finish)
    assert (finish.reason, finish.usage and finish.usage.completion_tokens) == ("tool_calls", 5)


def test_n_choices_are_told_apart_and_each_ends_with_its_own_finish() -> None:
    stream = [
        _event(
            [
                _choice(0, {"role": "assistant", "content": ""}),
                _choice(1, {"role": "assistant", "content": ""}),
            ]
        ),
        _event([_choice(1, {"content": "B"})]),
        _event([_choice(0, {"content": "A"})]),
        _event([_choice(1, {}, "length")]),
        _event([_choice(0, {"content": "a"})]),
        _event([_choice(0, {}, "stop")]),
        _event([], USAGE),
        DONE_EVENT,
    ]
    request = ChatRequest(model="m", messages=REQUEST.messages, n=2)
    items = stream_and_close(FakeUpstream(streamed(stream)).provider(), request)

    assert items == [
        TextDelta("B", 1),
        TextDelta("A", 0),
        Finish(reason="length", choice=1),
        TextDelta("a", 0),
        Finish(reason="stop", usage=items[-1].usage, choice=0),  # type: ignore[union-attr]
    ]
    assert items[-1].usage is not None  # type: ignore[union-attr]


def test_the_whole_surface_is_sent_upstream_in_openai_shape_with_extra_fields_as_sent() -> None:
    second_choice_finishes = _event([_choice(1, {"content": "x"}, "stop")])
    upstream = FakeUpstream(streamed([second_choice_finishes, *TOOL_CALL_STREAM]))
    weather = Tool(FunctionDefinition(name="get_weather", parameters={"type": "object"}, strict=True))
    call = ToolCall(id="call_1", function=FunctionCall(name="get_weather", arguments="{}"))
    request = ChatRequest(
        model="gpt-4o",
        messages=(
            ChatMessage(
                role="user",
                content=(TextPart("Look"), ImagePart(ImageURL("data:image/png;base64,AA", "low"))),
            ),
            ChatMessage(role="assistant", tool_calls=(call,)),
            ChatMessage(role="tool", tool_call_id="call_1", content="sunny"),
        ),
        n=2,
        tools=(weather,),
        tool_choice=NamedToolChoice(NamedFunction(name="get_weather")),
        parallel_tool_calls=False,
        response_format=JsonSchemaFormat(
            JsonSchemaSpec(name="out", json_schema={"type": "object"}, strict=True)
        ),
        extra={"reasoning_effort": "low", "metadata": {"a": "b"}, "brand_new_field": [1, 2]},
        max_tokens=50,
    )

    stream_and_close(upstream.provider(), request)

    [body] = upstream.json_bodies()
    assert body["messages"] == [
        {"role": "user", "content": [
            {"type": "text", "text": "Look"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA", "detail": "low"}},
        ]},
        {"role": "assistant", "tool_calls": [
            {"type": "function", "id": "call_1", "function": {"name": "get_weather", "arguments": "{}"}}
        ]},
        {"role": "tool", "content": "sunny", "tool_call_id": "call_1"},
    ]  # fmt: skip
    assert body["tools"] == [
        {
            "type": "function",
            "function": {"name": "get_weather", "parameters": {"type": "object"}, "strict": True},
        }
    ]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["parallel_tool_calls"] is False
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "out", "schema": {"type": "object"}, "strict": True},
    }
    assert body["n"] == 2
    assert (body["reasoning_effort"], body["metadata"], body["brand_new_field"]) == (
        "low",
        {"a": "b"},
        [1, 2],
    )
    assert body["max_tokens"] == 50


def test_max_completion_tokens_from_the_client_is_sent_instead_of_max_tokens() -> None:
    upstream = FakeUpstream(streamed(TOOL_CALL_STREAM))
    request = ChatRequest(
        model="o4-mini", messages=REQUEST.messages, max_tokens=50, extra={"max_completion_tokens": 50}
    )

    stream_and_close(upstream.provider(), request)

    [body] = upstream.json_bodies()
    assert body["max_completion_tokens"] == 50
    assert "max_tokens" not in body


def _models_response(request: httpx2.Request) -> httpx2.Response:
    assert request.url.path.endswith("/models")
    data = [
        {"id": name, "object": "model", "created": 1, "owned_by": "x"} for name in ("gpt-4o", "gpt-4o-mini")
    ]
    return httpx2.Response(200, json={"object": "list", "data": data})


def test_without_configured_models_the_upstream_list_is_listed_and_cached() -> None:
    upstream = FakeUpstream(_models_response)

    async def body() -> None:
        provider = upstream.provider(models_ttl_s=300)
        try:
            assert await provider.list_models() == ("gpt-4o", "gpt-4o-mini")
            assert await provider.list_models() == ("gpt-4o", "gpt-4o-mini")
        finally:
            await provider.aclose()

    run_async(body)
    assert upstream.calls == 1


def test_configured_models_are_listed_without_asking_the_upstream() -> None:
    upstream = FakeUpstream(_models_response)

    async def body() -> None:
        provider = upstream.provider(models=["only-this"])
        try:
            assert await provider.list_models() == ("only-this",)
        finally:
            await provider.aclose()

    run_async(body)
    assert upstream.calls == 0


def test_an_upstream_that_cannot_list_gives_an_empty_list_and_a_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    upstream = FakeUpstream(lambda _request: httpx2.Response(503, json={"error": {"message": "down"}}))

    async def body() -> None:
        provider = upstream.provider(models_ttl_s=300)
        try:
            assert await provider.list_models() == ()
            assert await provider.list_models() == ()  # not cached: asked again
        finally:
            await provider.aclose()

    run_async(body)
    assert upstream.calls == 2
    assert "did not list its models (HTTP 503)" in caplog.text
