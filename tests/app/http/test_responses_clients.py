"""`POST /v1/responses` with the clients that speak it: the openai SDK, LangChain, the AI SDK (Node).

Like tests/app/http/test_openai_clients.py, each SDK test runs against the app serving the mock and
against the OpenAI provider chained to it (the Responses request then reaches the upstream as Chat
Completions, and its chunks come back as Responses events).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import jsonschema
import openai
import pydantic
import pytest
from langchain_core.messages import AIMessageChunk, HumanMessage, ToolMessage
from langchain_openai import ChatOpenAI

from tests.app.conftest import AppFactory, ServeFactory
from tests.app.helpers import WEATHER_PARAMETERS
from tests.support.tools import run_node_client

PROMPT = "Explain server-sent events"
WEATHER_TOOL: Any = {"type": "function", "name": "get_weather", "parameters": WEATHER_PARAMETERS}
# The documented order of a text answer's events.
TEXT_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


@pytest.fixture
def mock_base_url(make_app: AppFactory, serve: ServeFactory) -> Iterator[str]:
    """The `/v1` URL of the app serving the mock alone: faults are injected by a field only it reads."""
    with serve(make_app()) as server:
        yield f"{server.base_url}/v1"


@pytest.fixture
def mock_sdk(mock_base_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=mock_base_url, api_key="x", max_retries=0, timeout=15) as sdk:
        yield sdk


def _collapsed(types: Sequence[str]) -> list[str]:
    """Event types with runs of the same type written once (the deltas)."""
    return [kind for position, kind in enumerate(types) if position == 0 or types[position - 1] != kind]


def test_a_stream_has_the_documented_events_in_order_numbered_from_zero(sdk: openai.OpenAI) -> None:
    events = list(sdk.responses.create(model="mock", input=PROMPT, stream=True))

    assert _collapsed([event.type for event in events]) == TEXT_EVENTS
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert len(deltas) > 10
    completed = events[-1]
    assert completed.type == "response.completed"
    response = completed.response
    assert response.status == "completed"
    assert response.output_text == "".join(deltas)
    assert response.usage is not None
    assert response.usage.output_tokens == len(deltas)
    assert response.usage.total_tokens == response.usage.input_tokens + len(deltas)
    assert events[0].type == "response.created"
    assert events[0].response.id == response.id
    assert response.id.startswith("resp_")


def test_the_stream_helper_accumulates_what_the_whole_response_says(sdk: openai.OpenAI) -> None:
    with sdk.responses.stream(model="mock", input=PROMPT, instructions="Be brief.") as stream:
        texts = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    whole = sdk.responses.create(model="mock", input=PROMPT, instructions="Be brief.")

    assert final.output_text == whole.output_text == "".join(texts)
    assert whole.object == "response"
    assert whole.status == "completed"
    assert whole.instructions == "Be brief."
    [message] = whole.output
    assert message.type == "message"
    assert message.status == "completed"


def test_a_function_tool_streams_a_function_call_item_whose_arguments_validate(sdk: openai.OpenAI) -> None:
    with sdk.responses.stream(model="mock", input=PROMPT, tools=[WEATHER_TOOL], tool_choice="required") as s:
        types = [event.type for event in s]
        final = s.get_final_response()

    [call] = final.output
    assert call.type == "function_call"
    assert call.name == "get_weather"
    assert call.status == "completed"
    jsonschema.validate(json.loads(call.arguments), WEATHER_PARAMETERS)
    assert _collapsed(types) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert types.count("response.function_call_arguments.delta") > 1


def test_the_function_call_output_round_trip_is_answered_in_text(sdk: openai.OpenAI) -> None:
    first = sdk.responses.create(model="mock", input=PROMPT, tools=[WEATHER_TOOL], tool_choice="required")
    [call] = first.output
    assert call.type == "function_call"
    # What apps do: the output items go back as input, followed by the result of each call.
    history: list[Any] = [{"role": "user", "content": PROMPT}]
    history += [item.model_dump(exclude_none=True) for item in first.output]
    history.append({"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 24 degrees"})

    answer = sdk.responses.create(model="mock", input=history, tools=[WEATHER_TOOL])

    assert "sunny, 24 degrees" in answer.output_text
    assert answer.output[0].type == "message"


def test_a_conversation_re_sends_the_output_it_was_given(sdk: openai.OpenAI) -> None:
    history: list[Any] = []
    answers = []
    for turn in ("First question?", "And a second?"):
        history.append({"role": "user", "content": [{"type": "input_text", "text": turn}]})
        response = sdk.responses.create(model="mock", input=history)
        answers.append(response.output_text)
        history += [item.model_dump(exclude_none=True) for item in response.output]

    assert answers[0].startswith("You asked about: First question?")
    assert answers[1].startswith("You asked about: And a second?")


class Forecast(pydantic.BaseModel):
    city: str
    unit: str


def test_parse_with_a_text_format_gives_a_valid_instance(sdk: openai.OpenAI) -> None:
    parsed = sdk.responses.parse(model="mock", input=PROMPT, text_format=Forecast)

    assert isinstance(parsed.output_parsed, Forecast)


def test_a_failure_after_the_first_token_makes_the_sdk_raise(mock_sdk: openai.OpenAI) -> None:
    seen: list[str] = []
    stream = mock_sdk.responses.create(
        model="mock", input=PROMPT, stream=True, extra_body={"mock": {"fail_after": 3}}
    )
    with pytest.raises(openai.APIError, match="mock failure injected after 3 deltas"):
        seen.extend(event.type for event in stream)

    assert seen.count("response.output_text.delta") == 3


def test_a_rate_limit_before_the_first_token_is_a_rate_limit_error(mock_sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError):
        mock_sdk.responses.create(
            model="mock", input=PROMPT, stream=True, extra_body={"mock": {"error": "rate_limit"}}
        )


def test_a_token_budget_ends_the_response_as_incomplete(sdk: openai.OpenAI) -> None:
    events = list(sdk.responses.create(model="mock", input=PROMPT, stream=True, max_output_tokens=5))
    whole = sdk.responses.create(model="mock", input=PROMPT, max_output_tokens=5)

    last = events[-1]
    assert last.type == "response.incomplete"
    assert last.response.status == whole.status == "incomplete"
    assert last.response.incomplete_details is not None
    assert last.response.incomplete_details.reason == "max_output_tokens"
    assert [e.type for e in events].count("response.output_text.delta") == 5
    assert last.response.output_text == whole.output_text


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"store": True}, "store"),
        ({"previous_response_id": "resp_123"}, "previous_response_id"),
        ({"conversation": "conv_123"}, "conversation"),
        ({"background": True}, "background"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
    ],
)
def test_server_side_state_is_refused_by_name(base_url: str, fields: dict[str, Any], param: str) -> None:
    body = {"model": "mock", "input": PROMPT, **fields}
    response = httpx.post(f"{base_url}/responses", json=body, timeout=10)

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("unsupported_parameter", param)
    assert "server-side" in error["message"] or "streams while" in error["message"]


def _langchain_responses(base_url: str) -> ChatOpenAI:
    return ChatOpenAI(
        model="mock",
        base_url=base_url,
        api_key=pydantic.SecretStr("x"),
        use_responses_api=True,
        max_retries=0,
    )


def test_langchain_with_the_responses_api_streams_and_continues(base_url: str) -> None:
    model = _langchain_responses(base_url)
    chunks = list(model.stream(PROMPT))
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole += chunk
    assert isinstance(whole, AIMessageChunk)

    assert len(chunks) > 10
    assert whole.text.startswith(f"You asked about: {PROMPT}.")
    assert whole.usage_metadata is not None
    assert whole.usage_metadata["output_tokens"] > 10
    again = model.invoke([HumanMessage(PROMPT), whole, HumanMessage("And more?")])
    assert again.text.startswith("You asked about: And more?")


def test_langchain_tools_with_the_responses_api(base_url: str) -> None:
    def get_weather(location: str, unit: str) -> str:
        """The forecast for a city, in celsius or fahrenheit."""
        return "sunny"

    model = _langchain_responses(base_url)
    call = model.bind_tools([get_weather], tool_choice="required").invoke(PROMPT)
    [tool_call] = call.tool_calls
    assert tool_call["name"] == "get_weather"
    answer = model.bind_tools([get_weather]).invoke(
        [HumanMessage(PROMPT), call, ToolMessage("sunny, 24 degrees", tool_call_id=tool_call["id"])]
    )

    assert "sunny, 24 degrees" in answer.text


def test_the_ai_sdk_streams_text_and_tool_calls_from_the_responses_api(
    mock_base_url: str, mock_sdk: openai.OpenAI
) -> None:
    seen = run_node_client("@ai-sdk/openai", "ai_sdk_responses.mjs", mock_base_url, PROMPT)
    # The AI SDK sends the prompt as an input_text part; the same input, whole, through the openai SDK.
    expected = mock_sdk.responses.create(
        model="mock", input=[{"role": "user", "content": [{"type": "input_text", "text": PROMPT}]}]
    )

    assert seen["errors"] == []
    assert seen["text"] == expected.output_text
    assert seen["deltas"] > 10
    assert seen["finishReason"] == "stop"
    assert seen["usage"]["outputTokens"] == seen["deltas"]
    [call] = seen["toolCalls"]
    assert call["name"] == "get_weather"
    jsonschema.validate(call["input"], WEATHER_PARAMETERS)
    assert seen["toolFinishReason"] == "tool-calls"
    # A failure mid-stream: the text so far, and the error reported once.
    assert expected.output_text.startswith(seen["failedText"])
    assert seen["failedText"]
    assert seen["failedErrors"] == ["mock failure injected after 3 deltas"]
