"""`POST /v1/responses` in-process: how input items reach the provider, what is refused, and the stream's
framing under heartbeats, cancels and the API key guard. (The real clients: test_responses_clients.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from app.settings import Secret
from providers.protocol import (
    ChatMessage,
    FilePart,
    FileRef,
    FunctionCall,
    ImagePart,
    ImageURL,
    JsonSchemaFormat,
    NamedToolChoice,
    RefusalPart,
    TextDelta,
    TextPart,
    ToolCall,
    ToolCallDelta,
)
from tests.app.conftest import AppFactory, LogCapture
from tests.app.helpers import Hang, ScriptedProvider, Step, deltas, finish
from tests.support.sse import events, parse_frames

PROMPT = "Explain server-sent events"


@pytest.fixture
def scripted(make_app: AppFactory) -> Iterator[tuple[TestClient[Litestar], ScriptedProvider]]:
    provider = ScriptedProvider([*deltas("Hello", " there"), finish(2)])
    with TestClient(make_app(provider)) as client:
        yield client, provider


def _messages(
    scripted: tuple[TestClient[Litestar], ScriptedProvider], **body: Any
) -> tuple[ChatMessage, ...]:
    client, provider = scripted
    response = client.post("/v1/responses", json=body)
    assert response.status_code == 200, response.text
    return provider.requests[-1].messages


def test_instructions_and_a_string_input_are_a_system_and_a_user_message(
    scripted: tuple[TestClient[Litestar], ScriptedProvider],
) -> None:
    assert _messages(scripted, input="Hi", instructions="Be brief.") == (
        ChatMessage(role="system", content="Be brief."),
        ChatMessage(role="user", content="Hi"),
    )


def test_function_calls_join_the_assistant_turn_and_their_outputs_are_tool_messages(
    scripted: tuple[TestClient[Litestar], ScriptedProvider],
) -> None:
    items = [
        {"role": "user", "content": "Weather in Lyon and Paris?"},
        {
            "type": "message",
            "id": "msg_1",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Looking.", "annotations": []}],
        },
        {
            "type": "function_call",
            "id": "fc_1",
            "call_id": "call_a",
            "name": "get_weather",
            "arguments": "{}",
        },
        {"type": "function_call", "call_id": "call_b", "name": "get_weather", "arguments": '{"c":1}'},
        {"type": "function_call_output", "call_id": "call_a", "output": "sunny"},
        {
            "type": "function_call_output",
            "call_id": "call_b",
            "output": [{"type": "input_text", "text": "rain"}],
        },
    ]

    assert _messages(scripted, input=items) == (
        ChatMessage(role="user", content="Weather in Lyon and Paris?"),
        ChatMessage(
            role="assistant",
            content=(TextPart("Looking."),),
            tool_calls=(
                ToolCall("call_a", FunctionCall("get_weather", "{}")),
                ToolCall("call_b", FunctionCall("get_weather", '{"c":1}')),
            ),
        ),
        ChatMessage(role="tool", content="sunny", tool_call_id="call_a"),
        ChatMessage(role="tool", content=(TextPart("rain"),), tool_call_id="call_b"),
    )


def test_a_call_without_text_before_it_is_an_assistant_message_of_its_own(
    scripted: tuple[TestClient[Litestar], ScriptedProvider],
) -> None:
    items = [
        {"role": "user", "content": "Go"},
        {"type": "function_call", "call_id": "call_a", "name": "run", "arguments": "{}"},
    ]

    assert _messages(scripted, input=items)[1] == ChatMessage(
        role="assistant", tool_calls=(ToolCall("call_a", FunctionCall("run", "{}")),)
    )


def test_images_files_and_refusals_become_the_matching_parts(
    scripted: tuple[TestClient[Litestar], ScriptedProvider],
) -> None:
    items = [
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "What is this?"},
                {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"},
                {"type": "input_file", "file_data": "data:application/pdf;base64,AAAA", "filename": "a.pdf"},
            ],
        },
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
    ]

    user, assistant = _messages(scripted, input=items)
    assert user.content == (
        TextPart("What is this?"),
        ImagePart(ImageURL("data:image/png;base64,AAAA", "low")),
        FilePart(FileRef("data:application/pdf;base64,AAAA", None, "a.pdf")),
    )
    assert assistant.content == (RefusalPart("No."),)


def test_tools_tool_choice_and_a_json_schema_format_are_mapped(
    scripted: tuple[TestClient[Litestar], ScriptedProvider],
) -> None:
    client, provider = scripted
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    body = {
        "input": "Hi",
        "tools": [{"type": "function", "name": "run", "parameters": schema}],
        "tool_choice": {"type": "function", "name": "run"},
        "text": {"format": {"type": "json_schema", "name": "out", "schema": schema, "strict": True}},
        "max_output_tokens": 50,
        "reasoning": {"effort": "low"},
    }
    assert client.post("/v1/responses", json=body).status_code == 200

    request = provider.requests[-1]
    assert [tool.function.name for tool in request.tools] == ["run"]
    assert request.tools[0].function.parameters == schema
    assert isinstance(request.tool_choice, NamedToolChoice)
    assert request.tool_choice.function.name == "run"
    assert isinstance(request.response_format, JsonSchemaFormat)
    assert request.response_format.json_schema.json_schema == schema
    assert request.max_tokens == 50
    # For an OpenAI-compatible upstream, in its Chat Completions name.
    assert request.extra == {"reasoning_effort": "low"}


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        ({"input": []}, 400, "invalid_value", "input"),
        ({"input": ["hi"]}, 400, None, "input[0]"),
        ({"input": [{"type": {}, "call_id": "0", "output": ""}]}, 400, None, "input[0].type"),
        ({"input": [{"type": "web_search_call", "id": "x"}]}, 400, "unsupported_parameter", "input[0].type"),
        ({"input": [{"type": "reasoning", "id": "rs_1"}]}, 400, "unsupported_parameter", "input[0].type"),
        (
            {"input": [{"role": "user", "content": [{"type": "output_text", "text": "x"}]}]},
            400,
            None,
            "input[0].content[0]",
        ),
        (
            {"input": [{"role": "system", "content": [{"type": "input_image", "image_url": "data:,"}]}]},
            400,
            None,
            "input[0].content[0]",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}]},
            400,
            "unsupported_parameter",
            "input[0].content[0].image_url",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_url": "https://x/a.pdf"}]}]},
            400,
            "unsupported_parameter",
            "input[0].content[0].file_url",
        ),
        ({"input": [{"role": "user", "content": "hi", "colour": 1}]}, 400, None, "input[0].colour"),
        ({"input": [{"role": "tool", "content": "hi"}]}, 400, None, "input[0].role"),
        ({"input": "hi", "tools": [{"type": "web_search"}]}, 400, "invalid_value", "tools[0].type"),
        ({"input": "hi", "temperature": 3}, 400, "invalid_value", "temperature"),
        ({"input": "hi", "n": 2}, 400, "invalid_value", "n"),
        ({"input": "hi", "tool_choice": {"type": "function", "name": "nope"}}, 400, None, "tool_choice"),
        ({"input": "hi", "model": "gpt-unknown"}, 404, "model_not_found", "model"),
    ],
)
def test_what_cannot_be_served_is_a_4xx_naming_the_field(
    client: TestClient[Litestar], body: dict[str, Any], status: int, code: str | None, param: str
) -> None:
    response = client.post("/v1/responses", json=body)

    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == (code, param)
    assert error["message"]


def test_a_stream_names_its_dialect_and_id(client: TestClient[Litestar], log_capture: LogCapture) -> None:
    response = client.post("/v1/responses", json={"input": PROMPT, "stream": True})

    frames = events(parse_frames(response.content))
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    stream_id = response.headers["x-stream-id"]
    assert frames[0].json()["response"]["id"] == f"resp_{stream_id}"
    # The SSE event name and the JSON `type` are one.
    assert all(frame.event == frame.json()["type"] for frame in frames)
    [end] = log_capture.stream_ends
    assert (end["dialect"], end["outcome"], end["request_id"]) == ("responses", "completed", stream_id)


def test_heartbeats_are_comments_between_the_events(make_app: AppFactory) -> None:
    with TestClient(make_app(heartbeat_interval_s=0.05)) as client:
        response = client.post(
            "/v1/responses", json={"input": PROMPT, "stream": True, "mock": {"stall_ms": 400}}
        )

    frames = parse_frames(response.content)
    kinds = ["ping" if frame.is_comment else frame.event for frame in frames]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[2] == "ping"
    assert kinds[-1] == "response.completed"
    numbers = [frame.json()["sequence_number"] for frame in events(frames)]
    assert numbers == list(range(len(numbers)))  # pings are not numbered


def test_a_budget_after_the_first_token_is_an_error_then_a_failed_response(make_app: AppFactory) -> None:
    provider = ScriptedProvider([*deltas("Hello", " there"), Hang()])
    with TestClient(make_app(provider, stream_idle_timeout_s=0.1)) as client:
        response = client.post("/v1/responses", json={"input": PROMPT, "stream": True})

    frames = events(parse_frames(response.content))
    assert [frame.event for frame in frames[-2:]] == ["error", "response.failed"]
    error, last = frames[-2].json(), frames[-1].json()
    assert (error["code"], error["error"]["type"]) == ("idle_timeout", "budget_exceeded")
    assert last["response"]["status"] == "failed"
    assert last["response"]["error"]["code"] == "idle_timeout"
    # The text so far stays in the failed response's output, its item marked incomplete.
    [message] = last["response"]["output"]
    assert message["status"] == "incomplete"
    assert message["content"][0]["text"] == "Hello there"
    # No `done` events for an item the failure interrupted.
    assert "response.output_item.done" not in [frame.event for frame in frames]


def test_the_api_key_guard_covers_the_endpoint(make_app: AppFactory) -> None:
    with TestClient(make_app(api_keys=(Secret("sk-right"),))) as client:
        refused = client.post("/v1/responses", json={"input": "hi"})
        served = client.post(
            "/v1/responses", json={"input": "hi"}, headers={"Authorization": "Bearer sk-right"}
        )

    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_api_key"
    assert served.status_code == 200
    assert msgspec.json.decode(served.content)["status"] == "completed"


def test_output_items_open_one_at_a_time_in_order(make_app: AppFactory) -> None:
    script: list[Step] = [
        TextDelta("Let me look."),
        ToolCallDelta(index=0, id="call_a", name="get_weather", arguments='{"city":'),
        ToolCallDelta(index=0, arguments='"Lyon"}'),
        ToolCallDelta(index=1, id="call_b", name="get_time", arguments="{}"),
        TextDelta("Done."),
        finish(5, reason="tool_calls"),
    ]
    with TestClient(make_app(ScriptedProvider(script))) as client:
        streamed = client.post("/v1/responses", json={"input": PROMPT, "stream": True})
        whole = client.post("/v1/responses", json={"input": PROMPT}).json()

    frames = [frame.json() for frame in events(parse_frames(streamed.content))]
    opened_and_closed = [
        (frame["type"], frame["output_index"])
        for frame in frames
        if frame["type"] in ("response.output_item.added", "response.output_item.done")
    ]
    assert opened_and_closed == [
        ("response.output_item.added", 0),
        ("response.output_item.done", 0),
        ("response.output_item.added", 1),
        ("response.output_item.done", 1),
        ("response.output_item.added", 2),
        ("response.output_item.done", 2),
        ("response.output_item.added", 3),
        ("response.output_item.done", 3),
    ]
    final = frames[-1]["response"]
    summary = [(item["type"], item.get("call_id"), item.get("arguments")) for item in whole["output"]]
    assert summary == [
        ("message", None, None),
        ("function_call", "call_a", '{"city":"Lyon"}'),
        ("function_call", "call_b", "{}"),
        ("message", None, None),
    ]
    # Streamed or whole, the same output.
    assert [{k: v for k, v in item.items() if k != "id"} for item in final["output"]] == [
        {k: v for k, v in item.items() if k != "id"} for item in whole["output"]
    ]


def test_a_provider_returning_to_an_earlier_call_ends_the_stream_with_an_internal_error(
    make_app: AppFactory, log_capture: LogCapture
) -> None:
    script: list[Step] = [
        ToolCallDelta(index=0, id="call_a", name="a", arguments="{"),
        ToolCallDelta(index=1, id="call_b", name="b", arguments="{}"),
        ToolCallDelta(index=0, arguments="}"),
        finish(3, reason="tool_calls"),
    ]
    with TestClient(make_app(ScriptedProvider(script))) as client:
        response = client.post("/v1/responses", json={"input": PROMPT, "stream": True})

    frames = [frame.json() for frame in events(parse_frames(response.content))]
    assert [frame["type"] for frame in frames[-2:]] == ["error", "response.failed"]
    assert frames[-2]["code"] == "internal_error"
    assert [event["exc_type"] for event in log_capture.events("stream_crashed")] == ["RuntimeError"]
