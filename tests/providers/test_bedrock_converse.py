"""The Converse mapping without a socket: request fields to `converse_stream` arguments, events to items."""

from __future__ import annotations

import pytest

from providers.bedrock_converse import STOP_REASONS, ConverseEvents, converse_arguments
from providers.errors import ProviderStreamError, ProviderUnsupportedParameterError
from providers.protocol import (
    ChatMessage,
    ChatRequest,
    Finish,
    FunctionCall,
    FunctionDefinition,
    ImagePart,
    ImageURL,
    NamedFunction,
    NamedToolChoice,
    TextDelta,
    TextPart,
    Tool,
    ToolCall,
    ToolCallDelta,
    Usage,
)

TOOLS = (
    Tool(function=FunctionDefinition(name="lookup")),
    Tool(function=FunctionDefinition(name="weather", parameters={"type": "object"})),
)


def request(*messages: ChatMessage, **fields: object) -> ChatRequest:
    return ChatRequest(model="m", messages=messages, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
    ],
)
def test_stop_reasons_become_finish_reasons_with_the_usage(stop_reason: str, finish: str) -> None:
    events = ConverseEvents()
    list(events.feed({"messageStop": {"stopReason": stop_reason}}))
    list(events.feed({"metadata": {"usage": {"inputTokens": 3, "outputTokens": 4, "totalTokens": 7}}}))

    assert events.finish() == Finish(reason=finish, usage=Usage(prompt_tokens=3, completion_tokens=4))  # type: ignore[arg-type]
    assert stop_reason in STOP_REASONS


def test_a_malformed_answer_is_a_stream_error_and_no_stop_is_no_finish() -> None:
    with pytest.raises(ProviderStreamError, match="malformed_tool_use"):
        list(ConverseEvents().feed({"messageStop": {"stopReason": "malformed_tool_use"}}))
    assert ConverseEvents().finish() is None


def test_a_stop_reason_newer_than_this_code_still_finishes_the_answer() -> None:
    events = ConverseEvents()
    list(events.feed({"messageStop": {"stopReason": "model_context_window_exceeded_v2"}}))

    finish = events.finish()
    assert finish is not None
    assert finish.reason == "stop"


def test_tool_calls_are_numbered_among_themselves_whatever_their_block_index() -> None:
    events = ConverseEvents()
    feed = [
        {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": "Let me look."}}},
        {
            "contentBlockStart": {
                "contentBlockIndex": 1,
                "start": {"toolUse": {"toolUseId": "a", "name": "lookup"}},
            }
        },
        {"contentBlockDelta": {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"q":'}}}},
        {
            "contentBlockStart": {
                "contentBlockIndex": 2,
                "start": {"toolUse": {"toolUseId": "b", "name": "weather"}},
            }
        },
        {"contentBlockDelta": {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '"x"}'}}}},
        {"contentBlockDelta": {"contentBlockIndex": 2, "delta": {"toolUse": {"input": "{}"}}}},
        {"contentBlockDelta": {"contentBlockIndex": 2, "delta": {"reasoningContent": {"text": "hidden"}}}},
    ]
    items = [item for event in feed for item in events.feed(event)]

    assert items == [
        TextDelta("Let me look."),
        ToolCallDelta(index=0, id="a", name="lookup"),
        ToolCallDelta(index=0, arguments='{"q":'),
        ToolCallDelta(index=1, id="b", name="weather"),
        ToolCallDelta(index=0, arguments='"x"}'),
        ToolCallDelta(index=1, arguments="{}"),
    ]


def test_a_named_tool_choice_and_a_tool_without_parameters() -> None:
    arguments = converse_arguments(
        request(
            ChatMessage(role="user", content="hi"),
            tools=TOOLS,
            tool_choice=NamedToolChoice(function=NamedFunction(name="weather")),
        ),
        "model-id",
    )

    assert arguments["toolConfig"] == {
        "tools": [
            {"toolSpec": {"name": "lookup", "inputSchema": {"json": {"type": "object", "properties": {}}}}},
            {"toolSpec": {"name": "weather", "inputSchema": {"json": {"type": "object"}}}},
        ],
        "toolChoice": {"tool": {"name": "weather"}},
    }
    assert "inferenceConfig" not in arguments


def test_empty_text_is_left_out_and_an_assistant_refusal_is_text() -> None:
    call = ToolCall(id="c1", function=FunctionCall(name="lookup", arguments=""))
    arguments = converse_arguments(
        request(
            ChatMessage(role="user", content=(TextPart(""), TextPart("question"))),
            ChatMessage(role="assistant", content="", tool_calls=(call,)),
        ),
        "model-id",
    )

    assert arguments["messages"] == [
        {"role": "user", "content": [{"text": "question"}]},
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": "c1", "name": "lookup", "input": {}}}]},
    ]


@pytest.mark.parametrize(
    ("message", "param"),
    [
        (
            ChatMessage(role="user", content=(ImagePart(ImageURL("data:image/bmp;base64,AAAA")),)),
            "messages[0].content[0].image_url.url",
        ),
        (
            ChatMessage(role="user", content=(ImagePart(ImageURL("data:image/png;base64,%%%")),)),
            "messages[0].content[0].image_url.url",
        ),
        (
            ChatMessage(
                role="assistant",
                tool_calls=(ToolCall(id="c", function=FunctionCall(name="lookup", arguments="[1]")),),
            ),
            "messages[0].tool_calls[0].function.arguments",
        ),
        (
            ChatMessage(
                role="assistant",
                tool_calls=(ToolCall(id="c", function=FunctionCall(name="lookup", arguments="{")),),
            ),
            "messages[0].tool_calls[0].function.arguments",
        ),
        (
            ChatMessage(role="system", content=(ImagePart(ImageURL("data:image/png;base64,AAAA")),)),
            "messages[0].content[0]",
        ),
    ],
)
def test_what_converse_cannot_take_is_refused_naming_the_field(message: ChatMessage, param: str) -> None:
    with pytest.raises(ProviderUnsupportedParameterError) as raised:
        converse_arguments(request(message), "model-id")
    assert raised.value.param == param


def test_fields_that_change_nothing_pass_and_others_are_refused() -> None:
    hello = ChatMessage(role="user", content="hi")
    harmless = {"metadata": {"a": "b"}, "store": True, "service_tier": "auto", "logprobs": False}
    assert converse_arguments(request(hello, extra=harmless), "m")["messages"]
    with pytest.raises(ProviderUnsupportedParameterError) as raised:
        converse_arguments(request(hello, extra={"frequency_penalty": 0.5}), "m")
    assert raised.value.param == "frequency_penalty"
    with pytest.raises(ProviderUnsupportedParameterError) as seed:
        converse_arguments(request(hello, seed=1), "m")
    assert seed.value.param == "seed"
