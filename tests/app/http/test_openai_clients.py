"""Real OpenAI clients doing what real apps do next: multi-turn, tools, structured output, images, `n`.

Each test runs twice: against the app serving the mock, and against the app serving the OpenAI provider
chained to a second app that serves the mock (so every field travels through the real SDK twice, once as
our client and once as our provider's). Both run on uvicorn on 127.0.0.1.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal

import jsonschema
import openai
import pydantic
import pytest

from tests.support.tools import run_node_client

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

WEATHER_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "location": {"type": "string", "description": "A city"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["location", "unit"],
    "additionalProperties": False,
}
WEATHER_TOOL: ChatCompletionToolParam = {
    "type": "function",
    "function": {"name": "get_weather", "description": "The forecast", "parameters": WEATHER_PARAMETERS},
}
_ASK = "What is the weather in Lyon?"


class Forecast(pydantic.BaseModel):
    city: str
    days: list[Day]
    confidence: float = pydantic.Field(ge=0, le=1)
    unit: Literal["celsius", "fahrenheit"]


class Day(pydantic.BaseModel):
    weekday: str
    high: int = pydantic.Field(ge=-40, le=50)
    rain: bool


Forecast.model_rebuild()


def test_a_three_turn_conversation_re_sends_the_messages_it_was_given(sdk: openai.OpenAI) -> None:
    messages: list[Any] = [{"role": "system", "content": "You are terse."}]
    answers = []
    for turn in ("First question?", "And a second?", "A third, then."):
        messages.append({"role": "user", "content": turn})
        completion = sdk.chat.completions.create(model="mock", messages=messages)
        message = completion.choices[0].message
        answers.append(message.content)
        # The loop every chat app has: the returned message object itself goes back as the next turn.
        messages.append(message)

    assert len(answers) == 3
    assert all(answer and answer.startswith("You asked about:") for answer in answers)
    assert len(set(answers)) == 3


def test_a_streamed_conversation_re_sends_the_accumulated_message(sdk: openai.OpenAI) -> None:
    messages: list[Any] = [{"role": "user", "content": "Hello?"}]
    with sdk.chat.completions.stream(model="mock", messages=messages) as stream:
        first = stream.get_final_completion().choices[0].message
    messages += [first, {"role": "user", "content": "More, please."}]
    with sdk.chat.completions.stream(model="mock", messages=messages) as stream:
        second = stream.get_final_completion().choices[0]

    assert second.finish_reason == "stop"
    assert second.message.content
    assert second.message.content != first.content


def _tool_arguments(arguments: str) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(arguments)
    jsonschema.validate(parsed, WEATHER_PARAMETERS)
    return parsed


def test_tools_streamed_give_a_tool_call_whose_arguments_validate(sdk: openai.OpenAI) -> None:
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": _ASK}]
    with sdk.chat.completions.stream(model="mock", messages=messages, tools=[WEATHER_TOOL]) as stream:
        pieces = [event for event in stream if event.type == "tool_calls.function.arguments.delta"]
        completion = stream.get_final_completion()

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls or []
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert call.id.startswith("call_")
    _tool_arguments(call.function.arguments)
    assert len(pieces) > 1  # streamed as several fragments, accumulated by the SDK


def test_tools_whole_then_the_tool_result_round_trip_gives_text(sdk: openai.OpenAI) -> None:
    messages: list[Any] = [{"role": "user", "content": _ASK}]
    completion = sdk.chat.completions.create(model="mock", messages=messages, tools=[WEATHER_TOOL])
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls or []
    assert call.type == "function"
    arguments = _tool_arguments(call.function.arguments)

    result = json.dumps({"location": arguments["location"], "forecast": "sunny, 24 degrees"})
    messages += [choice.message, {"role": "tool", "tool_call_id": call.id, "content": result}]
    answer = sdk.chat.completions.create(model="mock", messages=messages, tools=[WEATHER_TOOL])

    assert answer.choices[0].finish_reason == "stop"
    assert answer.choices[0].message.tool_calls is None
    assert result in (answer.choices[0].message.content or "")


def test_a_streamed_tool_call_goes_back_as_the_sdk_accumulated_it(sdk: openai.OpenAI) -> None:
    # The SDK's stream helper keeps each call's `index` on the message it builds: a tool loop sends that
    # message back as it is.
    messages: list[Any] = [{"role": "user", "content": _ASK}]
    with sdk.chat.completions.stream(model="mock", messages=messages, tools=[WEATHER_TOOL]) as stream:
        message = stream.get_final_completion().choices[0].message
    [call] = message.tool_calls or []
    result = json.dumps(
        {"location": _tool_arguments(call.function.arguments)["location"], "forecast": "rain"}
    )
    messages += [message, {"role": "tool", "tool_call_id": call.id, "content": result}]
    with sdk.chat.completions.stream(model="mock", messages=messages, tools=[WEATHER_TOOL]) as stream:
        answer = stream.get_final_completion().choices[0]

    assert answer.finish_reason == "stop"
    assert result in (answer.message.content or "")


def test_a_named_tool_choice_is_the_tool_called(sdk: openai.OpenAI) -> None:
    other: ChatCompletionToolParam = {
        "type": "function",
        "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
    }
    completion = sdk.chat.completions.create(
        model="mock",
        messages=[{"role": "user", "content": _ASK}],
        tools=[other, WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    )
    [call] = completion.choices[0].message.tool_calls or []
    assert call.type == "function"
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_time", {})


def test_parse_with_a_pydantic_model_gives_a_valid_instance(sdk: openai.OpenAI) -> None:
    completion = sdk.chat.completions.parse(
        model="mock", messages=[{"role": "user", "content": "Forecast for Lyon"}], response_format=Forecast
    )
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, Forecast)
    assert completion.choices[0].finish_reason == "stop"


def test_a_json_schema_response_format_streams_a_valid_document(sdk: openai.OpenAI) -> None:
    schema = Forecast.model_json_schema()
    stream = sdk.chat.completions.create(
        model="mock",
        messages=[{"role": "user", "content": "Forecast for Lyon"}],
        response_format={"type": "json_schema", "json_schema": {"name": "forecast", "schema": schema}},
        stream=True,
    )
    with stream:
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)

    jsonschema.validate(json.loads(text), schema)


def test_json_object_mode_gives_a_json_object(sdk: openai.OpenAI) -> None:
    completion = sdk.chat.completions.create(
        model="mock",
        messages=[{"role": "user", "content": "Answer in JSON"}],
        response_format={"type": "json_object"},
    )
    assert isinstance(json.loads(completion.choices[0].message.content or ""), dict)


def test_an_image_url_part_is_accepted(sdk: openai.OpenAI) -> None:
    completion = sdk.chat.completions.create(
        model="mock",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this picture?"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"},
                    },
                ],
            }
        ],
    )
    assert completion.choices[0].message.content


def test_n_gives_that_many_distinct_choices_streamed_and_whole(sdk: openai.OpenAI) -> None:
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Two answers, please"}]
    whole = sdk.chat.completions.create(model="mock", messages=messages, n=2)
    stream = sdk.chat.completions.create(model="mock", messages=messages, n=2, stream=True)
    texts: dict[int, str] = {}
    finishes: dict[int, str] = {}
    indexes: list[int] = []
    with stream:
        for chunk in stream:
            for choice in chunk.choices:
                indexes.append(choice.index)
                texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
                if choice.finish_reason:
                    finishes[choice.index] = choice.finish_reason

    assert [choice.index for choice in whole.choices] == [0, 1]
    contents = [choice.message.content for choice in whole.choices]
    assert contents[0] != contents[1]
    assert [texts[0], texts[1]] == contents
    assert finishes == {0: "stop", 1: "stop"}
    # Interleaved as they are produced, not one choice after the other.
    assert indexes.index(1) < len(indexes) - indexes[::-1].index(0) - 1


def test_fields_of_newer_sdks_are_accepted(sdk: openai.OpenAI) -> None:
    completion = sdk.chat.completions.create(
        model="mock",
        messages=[{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        store=False,
        metadata={"app": "tests"},
        reasoning_effort="low",
        service_tier="auto",
        logprobs=False,
        prompt_cache_key="k1",
        safety_identifier="user-1",
        parallel_tool_calls=True,
        tools=[WEATHER_TOOL],
        tool_choice="none",
    )
    assert completion.choices[0].finish_reason == "stop"


def test_a_misspelt_field_is_a_400_naming_it(sdk: openai.OpenAI) -> None:
    # From the mock, which has no upstream to judge it; through the OpenAI provider, from that upstream.
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.chat.completions.create(
            model="mock", messages=[{"role": "user", "content": "Hi"}], extra_body={"temprature": 0.2}
        )
    assert "temprature" in str(raised.value)


def test_models_are_listed(sdk: openai.OpenAI) -> None:
    # Through the OpenAI provider without OPENAI_MODELS: the upstream's own list.
    assert [model.id for model in sdk.models.list()] == ["mock"]


# --- LangChain (`langchain-openai`) ---


def test_langchain_bind_tools_streams_tool_call_chunks(base_url: str) -> None:
    from langchain_core.messages import AIMessageChunk
    from langchain_openai import ChatOpenAI

    model = ChatOpenAI(model="mock", base_url=base_url, api_key=pydantic.SecretStr("x"), max_retries=0)
    streamed = list(model.bind_tools([dict(WEATHER_TOOL)]).stream(_ASK))
    chunks = [chunk for chunk in streamed if isinstance(chunk, AIMessageChunk)]

    assert len(chunks) == len(streamed)
    assert sum(len(chunk.tool_call_chunks) for chunk in chunks) > 1
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    [call] = merged.tool_calls
    assert call["name"] == "get_weather"
    jsonschema.validate(call["args"], WEATHER_PARAMETERS)


def test_langchain_with_structured_output_returns_the_model(base_url: str) -> None:
    from langchain_openai import ChatOpenAI

    model = ChatOpenAI(model="mock", base_url=base_url, api_key=pydantic.SecretStr("x"), max_retries=0)
    forecast = model.with_structured_output(Forecast).invoke("Forecast for Lyon")

    assert isinstance(forecast, Forecast)


# --- the `openai` npm package, on Node ---


def test_the_node_sdk_streams_a_tool_call_and_sends_the_result_back(base_url: str) -> None:
    seen = run_node_client("openai", "openai_tool_call.mjs", base_url)

    assert (seen["finish_reason"], seen["name"]) == ("tool_calls", "get_weather")
    jsonschema.validate(json.loads(seen["arguments"]), WEATHER_PARAMETERS)
    assert seen["fragments"] > 1
    assert "sunny, 24 degrees" in seen["answer"]
