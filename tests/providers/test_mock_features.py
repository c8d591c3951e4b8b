"""What the mock acts on beyond plain text: tools, structured output, `stop`, `n`; deterministically."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from providers.errors import ProviderBadRequestError
from providers.mock import MockProvider, compose_answer, tokenize
from providers.protocol import (
    ChatMessage,
    ChatRequest,
    Finish,
    FunctionCall,
    FunctionDefinition,
    JsonObjectFormat,
    JsonSchemaFormat,
    JsonSchemaSpec,
    MockDirectives,
    NamedFunction,
    NamedToolChoice,
    StreamItem,
    TextDelta,
    Tool,
    ToolCall,
    ToolCallDelta,
)
from tests.support.timeouts import run_async

SEARCH = Tool(
    FunctionDefinition(
        name="search",
        parameters={
            "type": "object",
            "properties": {
                "query": {"type": "string", "minLength": 3},
                "filters": {
                    "type": "object",
                    "properties": {
                        "year": {"type": "integer", "minimum": 1990, "maximum": 2030},
                        "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "minItems": 1},
                    },
                    "required": ["year"],
                },
                "exact": {"type": "boolean"},
            },
            "required": ["query", "filters"],
        },
    )
)
CLOCK = Tool(FunctionDefinition(name="clock"))
ASK = (ChatMessage(role="user", content="Find papers on streaming"),)


def _stream(request: ChatRequest) -> list[StreamItem]:
    async def collect() -> list[StreamItem]:
        return [item async for item in MockProvider().stream_chat(request)]

    return run_async(collect)


def _calls(items: list[StreamItem]) -> dict[int, dict[str, Any]]:
    calls: dict[int, dict[str, Any]] = {}
    for item in items:
        if isinstance(item, ToolCallDelta):
            call = calls.setdefault(item.index, {"id": item.id, "name": item.name, "arguments": ""})
            call["arguments"] += item.arguments
    return calls


def test_with_tools_it_calls_one_with_arguments_valid_against_its_schema() -> None:
    items = _stream(ChatRequest(model="mock", messages=ASK, tools=(SEARCH,)))

    assert all(isinstance(item, ToolCallDelta) for item in items[:-1])
    first, *rest = [item for item in items if isinstance(item, ToolCallDelta)]
    assert first.id is not None
    assert first.id.startswith("call_")
    assert first.name == "search"
    assert rest
    assert all(item.id is None and item.name is None for item in rest)
    [call] = _calls(items).values()
    jsonschema.validate(json.loads(call["arguments"]), SEARCH.function.parameters or {})
    finish = items[-1]
    assert isinstance(finish, Finish)
    assert finish.reason == "tool_calls"
    assert finish.usage is not None
    assert finish.usage.completion_tokens == len(items) - 1


def test_the_same_request_calls_the_same_tool_with_the_same_arguments() -> None:
    request = ChatRequest(model="mock", messages=ASK, tools=(CLOCK, SEARCH))
    assert _stream(request) == _stream(request)
    other = ChatRequest(
        model="mock", messages=(ChatMessage(role="user", content="Another ask"),), tools=(SEARCH,)
    )
    assert _calls(_stream(other)) != _calls(_stream(ChatRequest(model="mock", messages=ASK, tools=(SEARCH,))))


def test_tool_choice_decides_whether_and_which() -> None:
    named = NamedToolChoice(NamedFunction(name="clock"))
    [call] = _calls(
        _stream(ChatRequest(model="mock", messages=ASK, tools=(SEARCH, CLOCK), tool_choice=named))
    ).values()
    assert (call["name"], json.loads(call["arguments"])) == ("clock", {})

    text = _stream(ChatRequest(model="mock", messages=ASK, tools=(SEARCH,), tool_choice="none"))
    assert not _calls(text)
    assert "".join(item.text for item in text if isinstance(item, TextDelta)) == compose_answer(
        ChatRequest(model="mock", messages=ASK)
    )


def test_given_the_tool_results_it_answers_in_text_quoting_them() -> None:
    call = ToolCall(id="call_1", function=FunctionCall(name="search", arguments='{"query": "sse"}'))
    messages = (
        *ASK,
        ChatMessage(role="assistant", tool_calls=(call,)),
        ChatMessage(role="tool", tool_call_id="call_1", content='{"hits": 3}'),
    )
    items = _stream(ChatRequest(model="mock", messages=messages, tools=(SEARCH,)))

    text = "".join(item.text for item in items if isinstance(item, TextDelta))
    assert 'The search tool returned: {"hits": 3}' in text
    assert isinstance(items[-1], Finish)
    assert items[-1].reason == "stop"
    # Unless a call is required: then it calls again, as OpenAI does.
    again = _stream(ChatRequest(model="mock", messages=messages, tools=(SEARCH,), tool_choice="required"))
    assert _calls(again)


def test_a_json_schema_response_format_streams_a_valid_document() -> None:
    schema = {
        "type": "object",
        "properties": {"title": {"type": "string"}, "score": {"type": "number", "minimum": 0, "maximum": 1}},
        "required": ["title", "score"],
        "additionalProperties": False,
    }
    spec = JsonSchemaSpec(name="review", json_schema=schema, strict=True)
    items = _stream(ChatRequest(model="mock", messages=ASK, response_format=JsonSchemaFormat(spec)))

    deltas = [item.text for item in items if isinstance(item, TextDelta)]
    assert len(deltas) > 1
    jsonschema.validate(json.loads("".join(deltas)), schema)


def test_json_object_mode_streams_a_json_object() -> None:
    items = _stream(ChatRequest(model="mock", messages=ASK, response_format=JsonObjectFormat()))
    assert isinstance(json.loads("".join(item.text for item in items if isinstance(item, TextDelta))), dict)


def test_a_schema_the_mock_cannot_satisfy_is_a_bad_request_before_any_token() -> None:
    spec = JsonSchemaSpec(name="nope", json_schema={"not": {}})
    with pytest.raises(ProviderBadRequestError, match="nope"):
        _stream(ChatRequest(model="mock", messages=ASK, response_format=JsonSchemaFormat(spec)))


def test_stop_ends_the_answer_before_the_first_stop_sequence() -> None:
    whole = compose_answer(ChatRequest(model="mock", messages=ASK))
    stop = whole.split()[5]
    items = _stream(ChatRequest(model="mock", messages=ASK, stop=("never-there", stop)))

    text = "".join(item.text for item in items if isinstance(item, TextDelta))
    assert text == whole[: whole.index(stop)]
    assert stop not in text
    assert isinstance(items[-1], Finish)
    assert items[-1].reason == "stop"
    assert items[-1].usage is not None
    assert items[-1].usage.completion_tokens == len(tokenize(text))


def test_n_streams_distinct_choices_interleaved_each_with_its_finish() -> None:
    items = _stream(ChatRequest(model="mock", messages=ASK, n=3))

    texts = {
        choice: "".join(i.text for i in items if isinstance(i, TextDelta) and i.choice == choice)
        for choice in range(3)
    }
    assert texts[0] == compose_answer(ChatRequest(model="mock", messages=ASK))  # choice 0 as with n=1
    assert len(set(texts.values())) == 3
    finishes = [item for item in items if isinstance(item, Finish)]
    assert sorted(finish.choice for finish in finishes) == [0, 1, 2]
    assert [finish.usage is not None for finish in finishes] == [False, False, True]
    assert items[-1] is finishes[-1]
    order = [item.choice for item in items if isinstance(item, TextDelta)]
    assert order[:3] == [0, 1, 2]  # round robin, as OpenAI interleaves choices


def test_max_tokens_applies_to_each_choice() -> None:
    items = _stream(ChatRequest(model="mock", messages=ASK, n=2, max_tokens=4))
    for choice in (0, 1):
        assert sum(1 for i in items if isinstance(i, TextDelta) and i.choice == choice) == 4
    assert {item.reason for item in items if isinstance(item, Finish)} == {"length"}


def test_an_answer_directive_streams_that_text_in_the_mocks_tokens_and_repeats_it() -> None:
    answer = "- one\n- <img src=x onerror=alert(1)>\n\n```js\nlet a = 1\n"
    items = _stream(ChatRequest(model="mock", messages=ASK, mock=MockDirectives(answer=answer, repeat=2)))

    deltas = [item.text for item in items if isinstance(item, TextDelta)]
    assert deltas == [*tokenize(answer), "\n\n", *tokenize(answer)]
    assert "".join(deltas) == f"{answer}\n\n{answer}"
    assert isinstance(items[-1], Finish)
    assert items[-1].usage is not None
    assert items[-1].usage.completion_tokens == len(deltas)
    # With tools it still calls one: the directive replaces the composed text only.
    called = _stream(ChatRequest(model="mock", messages=ASK, tools=(CLOCK,), mock=MockDirectives(answer="x")))
    assert _calls(called)[0]["name"] == "clock"
