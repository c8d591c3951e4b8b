"""`POST /api/chat`, the AI SDK's UI message stream: in-process, over a real socket, and from the `ai` SDK.

In-process tests check what is sent and in which order, and what the conversation becomes for the provider;
over uvicorn, a client that leaves and an explicit cancel; on Node, the AI SDK's own chat client
(`DefaultChatTransport` + `readUIMessageStream`, and `AbstractChat`, the class `useChat` wraps).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import msgspec
import pytest
from httpx import Response
from litestar import Litestar
from litestar.testing import TestClient

from app.settings import Secret
from providers.mock import MockProvider
from providers.protocol import (
    ChatMessage,
    FilePart,
    FileRef,
    FunctionCall,
    ImagePart,
    ImageURL,
    TextPart,
    ToolCall,
)
from tests.app.conftest import AppFactory, LogCapture, ServeFactory
from tests.app.helpers import WEATHER_PARAMETERS, ScriptedProvider, deltas, expected_tokens, finish
from tests.support.server import RunningServer
from tests.support.sse import events, parse_frames
from tests.support.timeouts import run_async
from tests.support.tools import run_node_client

_PROMPT = "How do streaming responses work?"
_WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_PARAMETERS}}
_FORECAST = {"forecast": "sunny, 24 degrees"}
_PNG = "data:image/png;base64,iVBORw0KGgo="
_PDF = "data:application/pdf;base64,JVBERi0xLjQK"


@pytest.fixture
def http(app: Litestar) -> Iterator[TestClient[Litestar]]:
    with TestClient(app) as test_client:
        yield test_client


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _message(role: str, *parts: dict[str, Any], message_id: str | None = None) -> dict[str, Any]:
    return {"id": message_id or f"{role}-{len(parts)}", "role": role, "parts": list(parts)}


def _ask(prompt: str = _PROMPT) -> list[dict[str, Any]]:
    return [_message("user", _text(prompt), message_id="u-1")]


def _tool_part(state: str, **fields: Any) -> dict[str, Any]:
    return {"type": "tool-get_weather", "toolCallId": "call_1", "state": state, **fields}


def _post(http: TestClient[Litestar], messages: list[dict[str, Any]], **fields: Any) -> Response:
    body = {"id": "chat-1", "trigger": "submit-message", "messages": messages, **fields}
    return http.post("/api/chat", json=body)


def _chunks(response: Response) -> list[dict[str, Any]]:
    """The JSON chunks of a UI message stream, which must end with `[DONE]`."""
    assert response.status_code == 200, response.text
    data = events(parse_frames(response.content))
    assert data[-1].data == "[DONE]"
    return [frame.json() for frame in data[:-1]]


def _types(chunks: list[dict[str, Any]]) -> list[str]:
    return [chunk["type"] for chunk in chunks]


def _answer(chunks: list[dict[str, Any]]) -> str:
    return "".join(chunk["delta"] for chunk in chunks if chunk["type"] == "text-delta")


def _assistant_text(message_id: str, text: str) -> dict[str, Any]:
    """An answer as `useChat` keeps it, and sends back on the next turn."""
    return _message(
        "assistant", {"type": "step-start"}, {**_text(text), "state": "done"}, message_id=message_id
    )


# --- the stream ---


def test_a_text_answer_is_the_mocks_answer_as_one_text_part(
    http: TestClient[Litestar], log_capture: LogCapture
) -> None:
    response = _post(http, _ask())
    chunks = _chunks(response)

    assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "no-cache" in response.headers["cache-control"]
    assert response.headers["x-accel-buffering"] == "no"
    tokens = expected_tokens(_PROMPT)
    assert _types(chunks) == [
        "start",
        "start-step",
        "text-start",
        *["text-delta"] * len(tokens),
        "text-end",
        "finish-step",
        "finish",
    ]
    assert [chunk["delta"] for chunk in chunks if chunk["type"] == "text-delta"] == tokens
    start, finished = chunks[0], chunks[-1]
    stream_id = start["messageMetadata"]["stream_id"]
    assert stream_id == response.headers["x-stream-id"] == response.headers["x-request-id"]
    assert start["messageId"] == f"msg-{stream_id}"
    assert finished["finishReason"] == "stop"
    assert finished["messageMetadata"]["usage"]["completion_tokens"] == len(tokens)
    [end] = log_capture.stream_ends
    assert (end["request_id"], end["dialect"], end["outcome"]) == (
        stream_id,
        "ui-message-stream",
        "completed",
    )


def test_a_tool_call_streams_as_tool_input_chunks_then_its_parsed_input(http: TestClient[Litestar]) -> None:
    chunks = _chunks(_post(http, _ask("What is the weather in Lyon?"), tools=[_WEATHER]))

    kinds = _types(chunks)
    assert kinds[:3] == ["start", "start-step", "tool-input-start"]
    assert kinds[-3:] == ["tool-input-available", "finish-step", "finish"]
    assert set(kinds[3:-3]) == {"tool-input-delta"}
    assert len(kinds[3:-3]) > 1
    opened, available = chunks[2], chunks[-3]
    assert opened["toolName"] == available["toolName"] == "get_weather"
    assert opened["toolCallId"] == available["toolCallId"]
    streamed = "".join(chunk["inputTextDelta"] for chunk in chunks[3:-3])
    assert json.loads(streamed) == available["input"]
    jsonschema.validate(available["input"], WEATHER_PARAMETERS)
    assert chunks[-1]["finishReason"] == "tool-calls"


def test_the_answer_continues_the_last_message_when_it_is_the_assistants(http: TestClient[Litestar]) -> None:
    called = _message(
        "assistant",
        {"type": "step-start"},
        _tool_part("output-available", input={"location": "Lyon", "unit": "celsius"}, output=_FORECAST),
        message_id="a-7",
    )
    chunks = _chunks(_post(http, [*_ask(), called]))

    assert chunks[0]["messageId"] == "a-7"  # `useChat` appends to that message rather than adding one
    assert _answer(chunks).startswith('The get_weather tool returned: {"forecast":"sunny, 24 degrees"}')


def test_a_regenerated_answer_is_a_new_message_for_the_same_question(http: TestClient[Litestar]) -> None:
    # `regenerate()` drops the old answer and names it in `messageId`; the new one gets an id of its own, as
    # from the AI SDK's server helpers, and the same question gets the same (deterministic) answer.
    first = _chunks(_post(http, _ask()))
    again = _chunks(_post(http, _ask(), trigger="regenerate-message", messageId=first[0]["messageId"]))

    assert again[0]["messageId"] != first[0]["messageId"]
    assert _answer(again) == _answer(first)


def test_a_second_turn_is_answered_as_chat_completions_answers_the_same_conversation(
    http: TestClient[Litestar],
) -> None:
    first = _chunks(_post(http, _ask()))
    history = [
        *_ask(),
        _assistant_text(first[0]["messageId"], _answer(first)),
        _message("user", _text("More?")),
    ]
    second = _chunks(_post(http, history))

    same = http.post(
        "/v1/chat/completions",
        json={
            "messages": [
                {"role": "user", "content": _PROMPT},
                {"role": "assistant", "content": _answer(first)},
                {"role": "user", "content": "More?"},
            ]
        },
    )
    assert _answer(second) == same.json()["choices"][0]["message"]["content"]
    assert _answer(second) != _answer(first)


def test_the_conversation_reaches_the_provider_as_chat_messages(make_app: AppFactory) -> None:
    provider = ScriptedProvider([*deltas("ok"), finish(1)])
    history = [
        _message("system", _text("You are terse.")),
        _message(
            "user",
            _text("Look at these"),
            {"type": "file", "mediaType": "image/png", "url": _PNG},
            {"type": "file", "mediaType": "application/pdf", "url": _PDF, "filename": "a.pdf"},
            {"type": "data-note", "data": {"seen": True}},
        ),
        _message(
            "assistant",
            {"type": "step-start"},
            {"type": "reasoning", "text": "The user wants the weather.", "state": "done"},
            {**_text("Let me check."), "state": "done", "providerMetadata": {"openai": {"itemId": "m1"}}},
            _tool_part(
                "output-available",
                input={"location": "Lyon", "unit": "celsius"},
                output=_FORECAST,
                callProviderMetadata={"openai": {"itemId": "fc1"}},
            ),
            {
                "type": "dynamic-tool",
                "toolName": "lookup",
                "toolCallId": "call_2",
                "state": "output-error",
                "input": {"q": "Lyon"},
                "errorText": "lookup failed",
            },
            {
                "type": "tool-get_time",
                "toolCallId": "call_3",
                "state": "output-denied",
                "input": {},
                "approval": {"id": "ap-1", "approved": False, "reason": "not now"},
            },
            {"type": "tool-get_time", "toolCallId": "call_4", "state": "input-streaming", "rawInput": '{"z'},
            {"type": "source-url", "sourceId": "s1", "url": "https://example.com", "title": "Example"},
            {"type": "step-start"},
            {**_text("It is sunny."), "state": "done"},
        ),
        _message("user", _text("Thanks")),
    ]
    with TestClient(make_app(provider)) as http:
        response = _post(
            http, history, system="Be brief.", model="m-1", max_tokens=7, temperature=0.5, top_p=0.9
        )
    assert response.status_code == 200, response.text

    [request] = provider.requests
    assert (request.model, request.max_tokens, request.temperature, request.top_p, request.n) == (
        "m-1",
        7,
        0.5,
        0.9,
        1,
    )
    assert request.messages == (
        ChatMessage(role="system", content="Be brief."),
        ChatMessage(role="system", content="You are terse."),
        ChatMessage(
            role="user",
            content=(
                TextPart("Look at these"),
                ImagePart(ImageURL(url=_PNG)),
                FilePart(FileRef(file_data=_PDF, filename="a.pdf")),
            ),
        ),
        ChatMessage(
            role="assistant",
            content="Let me check.",
            tool_calls=(
                ToolCall("call_1", FunctionCall("get_weather", '{"location":"Lyon","unit":"celsius"}')),
                ToolCall("call_2", FunctionCall("lookup", '{"q":"Lyon"}')),
                ToolCall("call_3", FunctionCall("get_time", "{}")),
            ),
        ),
        ChatMessage(role="tool", content='{"forecast":"sunny, 24 degrees"}', tool_call_id="call_1"),
        ChatMessage(role="tool", content="lookup failed", tool_call_id="call_2"),
        ChatMessage(role="tool", content="not now", tool_call_id="call_3"),
        ChatMessage(role="assistant", content="It is sunny."),
        ChatMessage(role="user", content=(TextPart("Thanks"),)),
    )


def test_a_call_whose_input_was_not_json_goes_back_with_its_raw_text(make_app: AppFactory) -> None:
    # What the SDK keeps of a `tool-input-error` (a call cut short by the token budget): an errored call.
    provider = ScriptedProvider([*deltas("ok"), finish(1)])
    cut = _tool_part("output-error", rawInput='{"location": "Ly', errorText="not valid JSON")
    with TestClient(make_app(provider)) as http:
        _chunks(_post(http, [*_ask(), _message("assistant", {"type": "step-start"}, cut)]))

    call, result = provider.requests[0].messages[1:]
    assert call.tool_calls == (ToolCall("call_1", FunctionCall("get_weather", '{"location": "Ly')),)
    assert (result.role, result.content) == ("tool", "not valid JSON")


_IMAGE = {"type": "file", "mediaType": "image/png", "url": _PNG}
_ANSWERED = _tool_part("output-available", input={}, output=1)


def _from_user(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"messages": [_message("user", *parts)]}


def _from_assistant(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"messages": [*_ask(), _message("assistant", *parts)]}


_BAD_BODIES = [
    pytest.param({"n": 2}, 400, "invalid_value", "n", id="n"),
    pytest.param({"maxOutputTokens": 5}, 400, "invalid_value", "maxOutputTokens", id="unknown-field"),
    pytest.param({"messages": []}, 400, "invalid_value", "messages", id="no-messages"),
    pytest.param(
        {"messages": [{"id": "u", "role": "tool", "parts": []}]},
        400,
        "invalid_value",
        "messages[0].role",
        id="tool-role",
    ),
    pytest.param(
        _from_user({**_text("hi"), "bogus": 1}),
        400,
        "invalid_value",
        "messages[0].parts[0].bogus",
        id="unknown-part-field",
    ),
    pytest.param(
        _from_user({"type": "text", "text": 3}),
        400,
        "invalid_value",
        "messages[0].parts[0].text",
        id="text-not-a-string",
    ),
    pytest.param(
        _from_user({"type": "image", "url": _PNG}),
        400,
        "invalid_value",
        "messages[0].parts[0].type",
        id="unknown-part-type",
    ),
    pytest.param(
        _from_user({"text": "hi"}), 400, "invalid_value", "messages[0].parts[0].type", id="part-without-type"
    ),
    pytest.param(
        _from_assistant(_tool_part("input-available", input={"location": "Lyon"})),
        400,
        None,
        "messages[1].parts[0].state",
        id="tool-call-without-output",
    ),
    pytest.param(
        _from_assistant(_tool_part("approval-requested", input={}, approval={"id": "a"})),
        400,
        None,
        "messages[1].parts[0].state",
        id="tool-call-awaiting-approval",
    ),
    pytest.param(
        _from_assistant(_tool_part("output-error", input={})),
        400,
        None,
        "messages[1].parts[0].errorText",
        id="tool-error-without-text",
    ),
    pytest.param(
        _from_assistant({**_ANSWERED, "type": "tool-get weather"}),
        400,
        "invalid_value",
        "messages[1].parts[0].type",
        id="tool-name-not-a-function-name",
    ),
    pytest.param(_from_user(_ANSWERED), 400, None, "messages[0].parts[0]", id="tool-part-from-the-user"),
    pytest.param(
        {"messages": [_message("system", _text("x"), _IMAGE), *_ask()]},
        400,
        None,
        "messages[0].parts[1]",
        id="file-in-a-system-message",
    ),
    pytest.param(_from_assistant(_IMAGE), 400, None, "messages[1].parts[0]", id="file-from-the-assistant"),
    pytest.param(
        _from_user({"type": "file", "mediaType": "application/pdf", "url": "https://x.example/a.pdf"}),
        400,
        None,
        "messages[0].parts[0].url",
        id="pdf-by-url",
    ),
    pytest.param(
        _from_user({**_IMAGE, "url": "blob:http://x.example/1"}),
        400,
        None,
        "messages[0].parts[0].url",
        id="image-by-blob-url",
    ),
    pytest.param(
        _from_user({"type": "data-x", "data": 1}), 400, None, "messages[0].parts", id="user-message-of-data"
    ),
    pytest.param(
        {"messages": [_message("assistant", {"type": "step-start"})]},
        400,
        None,
        "messages",
        id="nothing-to-answer",
    ),
    pytest.param({"model": "no-such-model"}, 404, "model_not_found", "model", id="unknown-model"),
    pytest.param({"max_tokens": 10**9}, 400, None, "max_tokens", id="max-tokens-over-the-limit"),
    pytest.param({"tool_choice": "auto"}, 400, None, "tool_choice", id="tool-choice-without-tools"),
    pytest.param({"mock": {"bogus": 1}}, 400, "invalid_value", "mock.bogus", id="unknown-mock-directive"),
]


@pytest.mark.parametrize(("fields", "status", "code", "param"), _BAD_BODIES)
def test_a_bad_body_is_a_4xx_naming_what_is_wrong(
    http: TestClient[Litestar],
    provider: MockProvider,
    fields: dict[str, Any],
    status: int,
    code: str | None,
    param: str,
) -> None:
    response = http.post("/api/chat", json={"messages": _ask(), **fields})

    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert (error["code"], error["param"]) == (code, param)
    assert error["message"]
    assert provider.tokens_emitted == 0


def test_a_body_that_is_not_json_is_refused(http: TestClient[Litestar]) -> None:
    response = http.post("/api/chat", content=b"hello", headers={"content-type": "text/plain"})
    assert (response.status_code, response.json()["error"]["code"]) == (415, "unsupported_media_type")


def test_an_unknown_part_field_is_named_with_its_full_path(http: TestClient[Litestar]) -> None:
    response = _post(http, [_message("user", _text("hi"), {**_text("there"), "bogus": 1})])
    assert response.json()["error"]["message"] == (
        "Object contains unknown field `bogus` - at `$.messages[0].parts[1]`"
    )


# --- failures, budgets, heartbeats ---


def test_an_error_before_the_first_token_is_an_http_status(
    http: TestClient[Litestar], log_capture: LogCapture
) -> None:
    response = _post(http, _ask(), mock={"error": "rate_limit"})

    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limit_exceeded"
    assert response.headers["retry-after"] == "1"
    [end] = log_capture.stream_ends
    assert (end["dialect"], end["outcome"]) == ("ui-message-stream", "error")


def test_a_failure_after_the_first_token_is_an_error_chunk_then_a_finish(
    http: TestClient[Litestar], log_capture: LogCapture
) -> None:
    chunks = _chunks(_post(http, _ask(), mock={"fail_after": 3}))

    assert _answer(chunks) == "".join(expected_tokens(_PROMPT)[:3])
    assert _types(chunks)[-3:] == ["error", "finish-step", "finish"]
    assert chunks[-3]["errorText"] == "mock failure injected after 3 deltas"
    assert chunks[-1]["finishReason"] == "error"
    assert chunks[-1]["messageMetadata"]["error"]["code"] == "upstream_stream_error"
    [end] = log_capture.stream_ends
    assert (end["dialect"], end["outcome"]) == ("ui-message-stream", "error")


def test_the_token_budget_finishes_with_reason_length(
    http: TestClient[Litestar], log_capture: LogCapture
) -> None:
    chunks = _chunks(_post(http, _ask(), max_tokens=4))

    assert _answer(chunks) == "".join(expected_tokens(_PROMPT)[:4])
    assert chunks[-1]["finishReason"] == "length"
    assert chunks[-1]["messageMetadata"]["outcome"] == "max_tokens"
    assert [end["outcome"] for end in log_capture.stream_ends] == ["max_tokens"]


def test_the_deadline_ends_a_slow_stream_with_an_error_naming_it(
    make_app: AppFactory, log_capture: LogCapture
) -> None:
    with TestClient(make_app(stream_deadline_s=0.3)) as http:
        chunks = _chunks(_post(http, _ask(), mock={"delay_ms": 20}))

    delivered = [chunk["delta"] for chunk in chunks if chunk["type"] == "text-delta"]
    assert 0 < len(delivered) < len(expected_tokens(_PROMPT))
    assert chunks[-3] == {"type": "error", "errorText": "the stream ran longer than 0.3s"}
    assert chunks[-1]["messageMetadata"]["error"]["code"] == "deadline"
    assert [end["outcome"] for end in log_capture.stream_ends] == ["deadline"]


def test_heartbeats_flow_as_comments_before_the_first_token(make_app: AppFactory) -> None:
    with TestClient(make_app(heartbeat_interval_s=0.05)) as http:
        response = _post(http, _ask(), max_tokens=3, mock={"stall_ms": 400})

    framed = parse_frames(response.content)
    kinds = ["ping" if frame.is_comment else frame.data for frame in framed]
    assert kinds[2] == "ping"
    assert framed[2].comments == ("ping",)
    first_text = next(index for index, frame in enumerate(framed) if '"text-start"' in frame.data)
    assert set(kinds[2:first_text]) == {"ping"}
    assert kinds[-1] == "[DONE]"


# --- who may ask ---


def test_an_api_key_is_required_when_api_keys_are_set(make_app: AppFactory) -> None:
    with TestClient(make_app(api_keys=(Secret("k-1"),))) as http:
        refused = http.post("/api/chat", json={"messages": _ask()})
        wrong = http.post("/api/chat", json={"messages": _ask()}, headers={"authorization": "Bearer k-2"})
        allowed = http.post(
            "/api/chat", json={"messages": _ask(), "max_tokens": 2}, headers={"authorization": "Bearer k-1"}
        )

    for response in (refused, wrong):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert _types(_chunks(allowed))[-1] == "finish"


def test_a_page_of_an_allowed_origin_may_post_and_read_the_stream_id(make_app: AppFactory) -> None:
    origin = "http://127.0.0.1:5173"
    with TestClient(make_app(cors_allow_origins=(origin,))) as http:
        preflight = http.options(
            "/api/chat",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        response = http.post(
            "/api/chat", json={"messages": _ask(), "max_tokens": 2}, headers={"Origin": origin}
        )

    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == origin
    assert response.headers["access-control-allow-origin"] == origin
    assert "x-stream-id" in response.headers["access-control-expose-headers"].lower()


# --- over a real socket: Stop (the client leaves) and the cancel endpoint ---


async def _stream_ended(log: LogCapture) -> dict[str, Any]:
    [end] = await asyncio.to_thread(log.wait_for, "stream_end", 1)
    return end


def _leave_after_five_deltas(
    server: RunningServer, provider: MockProvider, log_capture: LogCapture, **fields: Any
) -> tuple[int, int, dict[str, Any]]:
    """Read five text deltas of a paced answer, then close the connection (what `useChat`'s Stop does)."""

    async def body() -> tuple[int, int, dict[str, Any]]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
            received = 0
            request = {"messages": _ask(), "mock": {"delay_ms": 20}, **fields}
            async with client.stream("POST", "/api/chat", json=request) as response:
                assert response.status_code == 200
                async for line in response.aiter_lines():
                    if line.startswith('data: {"type":"text-delta"'):
                        received += 1
                        if received == 5:
                            break
            at_close = provider.tokens_emitted
            return at_close, received, await _stream_ended(log_capture)

    return run_async(body, timeout_s=20)


def test_a_client_that_leaves_a_plain_stream_cancels_the_generation(
    make_app: AppFactory, serve: ServeFactory, provider: MockProvider, log_capture: LogCapture
) -> None:
    with serve(make_app()) as server:
        at_close, received, end = _leave_after_five_deltas(server, provider, log_capture, resumable=False)

    assert received == 5
    assert (end["dialect"], end["outcome"]) == ("ui-message-stream", "cancelled")
    assert provider.active_streams == 0
    assert provider.tokens_emitted - at_close <= 2  # at most the token in the making when the client left


def test_a_client_that_leaves_a_resumable_stream_only_detaches_from_it(
    make_app: AppFactory, serve: ServeFactory, provider: MockProvider, log_capture: LogCapture
) -> None:
    # Resumable by default: the answer goes on into the stream log, for `GET /api/chat/{id}/stream`.
    with serve(make_app()) as server:
        at_close, received, end = _leave_after_five_deltas(server, provider, log_capture)

    assert received == 5
    assert (end["dialect"], end["outcome"]) == ("ui-message-stream", "completed")
    assert provider.tokens_emitted == len(expected_tokens(_PROMPT)) > at_close


def test_an_explicit_cancel_ends_the_stream_with_an_abort(
    make_app: AppFactory, serve: ServeFactory, provider: MockProvider, log_capture: LogCapture
) -> None:
    async def body() -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
            chunks: list[dict[str, Any]] = []
            request = {"messages": _ask(), "mock": {"delay_ms": 20}}
            async with client.stream("POST", "/api/chat", json=request) as response:
                stream_id = response.headers["x-stream-id"]
                async for line in response.aiter_lines():
                    if line == "data: [DONE]":
                        break
                    if line.startswith("data: "):
                        chunks.append(msgspec.json.decode(line[6:]))
                        if _types(chunks).count("text-delta") == 2:
                            cancelled = await client.post(f"/v1/streams/{stream_id}/cancel")
                            assert cancelled.status_code == 202
            return chunks

    with serve(make_app()) as server:
        chunks = run_async(body, timeout_s=20)
        [end] = log_capture.wait_for("stream_end", 1)

    assert _types(chunks)[-2:] == ["message-metadata", "abort"]
    assert chunks[-1]["reason"] == "stream cancelled by request"
    assert chunks[-2]["messageMetadata"]["outcome"] == "cancelled"
    assert "finish" not in _types(chunks)
    assert (end["dialect"], end["outcome"]) == ("ui-message-stream", "cancelled")
    assert provider.tokens_emitted < len(expected_tokens(_PROMPT)) / 2


# --- the `ai` npm package, on Node ---


def _run_node(server: RunningServer, scenario: str, api_key: str | None = None) -> Any:
    return run_node_client(
        "ai", "ai_sdk_ui_chat.mjs", server.base_url, scenario, *([api_key] if api_key else [])
    )


def _completion(server: RunningServer, messages: list[dict[str, Any]]) -> str:
    answer = httpx.post(f"{server.base_url}/v1/chat/completions", json={"messages": messages}, timeout=10)
    content: str = answer.json()["choices"][0]["message"]["content"]
    return content


@pytest.fixture
def served(make_app: AppFactory, serve: ServeFactory) -> Iterator[RunningServer]:
    with serve(make_app()) as running:
        yield running


def test_the_ai_sdk_transport_rebuilds_the_answers_and_a_tool_round_trip(served: RunningServer) -> None:
    seen = _run_node(served, "transport")

    first, second, called, resumed = seen["first"], seen["second"], seen["called"], seen["resumed"]
    assert all(turn["errors"] == [] for turn in (first, second, called, resumed))
    assert first["text"] == "".join(expected_tokens(_PROMPT))
    assert first["partTypes"] == ["step-start", "text"]
    assert first["snapshots"] > len(expected_tokens(_PROMPT))  # the message grew delta by delta
    assert first["id"] == f"msg-{first['metadata']['stream_id']}"
    assert first["metadata"]["outcome"] == "completed"
    assert first["metadata"]["usage"]["completion_tokens"] == len(expected_tokens(_PROMPT))
    history = [
        {"role": "user", "content": _PROMPT},
        {"role": "assistant", "content": first["text"]},
        {"role": "user", "content": "And a second question?"},
    ]
    assert second["text"] == _completion(served, history)

    [call] = called["tools"]
    assert called["partTypes"] == ["step-start", "tool-get_weather"]
    assert (call["type"], call["state"]) == ("tool-get_weather", "input-available")
    assert call["toolCallId"].startswith("call_")
    jsonschema.validate(call["input"], WEATHER_PARAMETERS)
    # The answer to the tool's output continues the same message, in a step of its own.
    assert resumed["id"] == called["id"]
    assert resumed["partTypes"] == ["step-start", "tool-get_weather", "step-start", "text"]
    [answered] = resumed["tools"]
    assert (answered["state"], answered["output"]) == ("output-available", _FORECAST)
    assert resumed["text"] == _completion(
        served,
        [
            {"role": "user", "content": "What is the weather in Lyon?"},
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": call["toolCallId"],
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": json.dumps(call["input"])},
                    }
                ],
            },
            {
                "role": "tool",
                "tool_call_id": call["toolCallId"],
                "content": '{"forecast":"sunny, 24 degrees"}',
            },
        ],
    )
    assert "sunny, 24 degrees" in resumed["text"]


def test_the_ai_sdk_chat_runs_the_tool_in_the_client_and_sends_its_output_back(served: RunningServer) -> None:
    seen = _run_node(served, "chat")

    assert (seen["afterFirst"], seen["status"], seen["error"]) == (
        {"status": "ready", "error": None, "count": 2},
        "ready",
        None,
    )
    assert [message["role"] for message in seen["messages"]] == ["user", "assistant", "user", "assistant"]
    for answer in seen["messages"][1::2]:
        assert answer["partTypes"] == ["step-start", "tool-get_weather", "step-start", "text"]
        [part] = answer["tools"]
        assert (part["state"], part["output"]) == ("output-available", _FORECAST)
        assert "sunny, 24 degrees" in answer["text"]
    # Each turn is two requests: the question, then the tool's output (the same message, sent back whole).
    assert [request["roles"] for request in seen["requests"]] == [
        ["user"],
        ["user", "assistant"],
        ["user", "assistant", "user"],
        ["user", "assistant", "user", "assistant"],
    ]
    assert {request["trigger"] for request in seen["requests"]} == {"submit-message"}
    assert {key for request in seen["requests"] for key in request["keys"]} == {
        "id",
        "messageId",
        "messages",
        "tools",
        "trigger",
    }


def test_stop_in_the_ai_sdk_chat_cancels_the_generation(
    served: RunningServer, provider: MockProvider, log_capture: LogCapture
) -> None:
    seen = _run_node(served, "stop")

    [end] = log_capture.wait_for("stream_end", 1)
    assert (end["dialect"], end["outcome"]) == ("ui-message-stream", "cancelled")
    assert provider.active_streams == 0
    full = "".join(expected_tokens(_PROMPT))
    assert (seen["status"], seen["error"]) == ("ready", None)  # stopped, not failed
    assert 20 < len(seen["stoppedAt"]) < len(full)
    assert full.startswith(seen["stoppedAt"])
    assert provider.tokens_emitted < len(expected_tokens(_PROMPT))


def test_the_ai_sdk_chat_reports_a_failure_mid_stream_and_a_refused_request(served: RunningServer) -> None:
    seen = _run_node(served, "errors")

    failed, refused = seen["midStream"], seen["refused"]
    assert (failed["status"], failed["error"]) == ("error", "mock failure injected after 3 deltas")
    assert failed["message"]["text"] == "".join(expected_tokens(_PROMPT)[:3])
    assert refused["status"] == "error"
    assert json.loads(refused["error"])["error"]["code"] == "model_not_found"
    assert refused["count"] == 1  # the question only: no answer started


def test_the_ai_sdk_transport_sends_the_api_key(make_app: AppFactory, serve: ServeFactory) -> None:
    with serve(make_app(api_keys=(Secret("k-1"),))) as keyed:
        seen = _run_node(keyed, "errors", api_key="k-1")
    # Past the guard: the failures are the mock's, not a 401.
    assert seen["midStream"]["error"] == "mock failure injected after 3 deltas"
    assert json.loads(seen["refused"]["error"])["error"]["code"] == "model_not_found"
