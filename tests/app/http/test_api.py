"""The HTTP API in-process: endpoints, the mock's answers, directives, errors, heartbeats and budgets.

Litestar's test client buffers whole responses, so these tests check what is sent and in which order;
`test_network.py` checks when it arrives.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

import msgspec
import pytest
from httpx import Response
from httpx_sse import connect_sse
from litestar import Litestar
from litestar.routes import HTTPRoute
from litestar.testing import TestClient

from app import VERSION
from app.factory import create_app
from app.http.requests import MAX_QUERY_MESSAGES
from app.settings import Secret, Settings
from providers.mock import MockProvider
from tests.app.conftest import AppFactory, LogCapture
from tests.app.helpers import ScriptedProvider, expected_prompt_tokens, expected_tokens, user
from tests.support.sse import Frame, events, parse_frames

_PROMPT = "How do streaming responses work?"


def _native_get(client: TestClient[Litestar], prompt: str, **params: Any) -> Response:
    query = {
        "prompt": prompt,
        **{k: v if isinstance(v, str) else msgspec.json.encode(v).decode() for k, v in params.items()},
    }
    return client.get(f"/v1/stream?{urlencode(query)}")


def _native_post(client: TestClient[Litestar], prompt: str, **fields: Any) -> Response:
    return client.post("/v1/stream", json={"messages": user(prompt), **fields})


def _chat(client: TestClient[Litestar], prompt: str, **fields: Any) -> Response:
    return client.post("/v1/chat/completions", json={"messages": user(prompt), **fields})


def _stream_native(client: TestClient[Litestar], flavour: str, prompt: str, **fields: Any) -> Response:
    if flavour == "GET":
        return _native_get(client, prompt, **fields)
    return _native_post(client, prompt, **fields)


def _named(response: Response) -> list[Frame]:
    assert response.status_code == 200, response.text
    return events(parse_frames(response.content))


def _chunks(response: Response) -> tuple[list[Any], bool]:
    """The decoded `data:` payloads of a chat completion stream, and whether it ended with [DONE]."""
    assert response.status_code == 200, response.text
    frames = events(parse_frames(response.content))
    done = bool(frames) and frames[-1].data == "[DONE]"
    return [frame.json() for frame in (frames[:-1] if done else frames)], done


def _content(chunks: list[Any]) -> list[str]:
    return [
        chunk["choices"][0]["delta"]["content"]
        for chunk in chunks
        if chunk.get("choices") and chunk["choices"][0]["delta"].get("content")
    ]


def _assert_openai_error(response: Response, status: int, kind: str, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert (error["type"], error["code"]) == (kind, code)
    assert error["message"]


# --- health, models, schema ---


def test_healthz(client: TestClient[Litestar]) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "provider": "mock", "version": VERSION}


def test_models_lists_the_mock(client: TestClient[Litestar]) -> None:
    response = client.get("/v1/models")

    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    assert [(m["id"], m["object"], m["owned_by"]) for m in body["data"]] == [("mock", "model", "mock")]
    assert isinstance(body["data"][0]["created"], int)


def test_models_lists_what_the_provider_serves(make_app: AppFactory) -> None:
    provider = ScriptedProvider([], name="upstream", models=("gpt-a", "gpt-b"))
    with TestClient(make_app(provider, default_model="gpt-a")) as client:
        ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert ids == ["gpt-a", "gpt-b"]


def test_models_falls_back_to_the_default_model_for_pass_through_providers(make_app: AppFactory) -> None:
    with TestClient(make_app(ScriptedProvider([], models=()), default_model="my-model")) as client:
        ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert ids == ["my-model"]


def test_models_lists_the_configured_openai_models_when_that_provider_is_active() -> None:
    settings = Settings(
        provider="openai",
        openai_api_key=Secret("sk-test-never-used"),
        openai_base_url="http://127.0.0.1:9/v1",
        openai_models=("gpt-x", "gpt-y"),
        default_model="gpt-x",
    )
    with TestClient(create_app(settings)) as client:
        models = client.get("/v1/models").json()["data"]
        health = client.get("/healthz").json()
    assert [(m["id"], m["owned_by"]) for m in models] == [("gpt-x", "openai"), ("gpt-y", "openai")]
    assert health["provider"] == "openai"


def test_the_openapi_schema_documents_every_endpoint(client: TestClient[Litestar]) -> None:
    response = client.get("/schema/openapi.json")

    assert response.status_code == 200
    schema = response.json()
    assert schema["info"]["title"] == "tokenrelay"
    # Every HTTP route the app serves, but the page, its assets and the document itself.
    served = {
        re.sub(r":\w+}", "}", route.path)
        for route in client.app.routes
        if isinstance(route, HTTPRoute)
        and any(handler.include_in_schema is not False for handler in route.route_handlers)
    }
    assert set(schema["paths"]) == served
    assert {"/v1/chat/completions", "/v1/responses", "/v1/stream", "/v1/streams/{stream_id}/cancel"} <= served
    assert set(schema["paths"]["/v1/stream"]) == {"get", "post"}
    assert client.get("/schema").json() == schema


def test_the_openapi_document_describes_bodies_queries_streams_and_errors(
    client: TestClient[Litestar],
) -> None:
    # What the framework could not see (the handlers decode their own bodies) is written from the Structs.
    schema = client.get("/schema/openapi.json").json()
    paths, components = schema["paths"], schema["components"]["schemas"]

    chat = paths["/v1/chat/completions"]["post"]
    assert chat["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ChatCompletionRequest"
    }
    request = components["ChatCompletionRequest"]
    assert request["required"] == ["messages"]
    # Other fields pass through to an OpenAI-compatible upstream; the mock (here) takes only OpenAI's names.
    assert request["additionalProperties"] is False
    assert "reasoning_effort" in request["properties"]
    # Each role's content parts, as the server checks them: a user message carries no refusal.
    user_parts = components["UserMessage"]["properties"]["content"]["anyOf"][1]["items"]["anyOf"]
    assert [part["$ref"].rsplit("/", 1)[1] for part in user_parts] == [
        "TextPart",
        "ImagePart",
        "AudioPart",
        "FilePart",
    ]
    tool_parts = components["ToolResult"]["properties"]["content"]["anyOf"][1]["items"]["anyOf"]
    assert tool_parts == [{"$ref": "#/components/schemas/TextPart"}]
    assert "passed to an OpenAI-compatible upstream unchanged" in request["description"]
    assert {"type": "integer", "minimum": 1, "maximum": 4096} in request["properties"]["max_tokens"]["anyOf"]
    assert set(chat["responses"]["200"]["content"]) == {"application/json", "text/event-stream"}
    assert {"400", "401", "404", "408", "413", "415", "429", "500", "502", "504"} <= set(chat["responses"])
    error = chat["responses"]["400"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/ErrorBody"}

    get = paths["/v1/stream"]["get"]
    assert {p["name"]: p["required"] for p in get["parameters"]} == {
        "prompt": False,  # or `messages`: one of them, never both
        "messages": False,
        "model": False,
        "max_tokens": False,
        "mock": False,
        "resumable": False,
        "stream_id": False,
    }
    # Every endpoint that starts a stream takes the client's own stream id.
    for path in ("/v1/stream", "/v1/chat/completions", "/v1/responses", "/api/chat"):
        [header] = paths[path]["post"]["parameters"]
        assert (header["name"], header["in"], header["required"]) == ("X-Stream-Id", "header", False)
    [conversation] = [p for p in get["parameters"] if p["name"] == "messages"]
    query_messages = {"$ref": "#/components/schemas/QueryMessages"}
    assert conversation["content"]["application/json"]["schema"] == query_messages
    assert components["QueryMessages"] == {
        **components["StreamRequest"]["properties"]["messages"],
        "maxItems": MAX_QUERY_MESSAGES,
    }
    events = get["responses"]["200"]["content"]["text/event-stream"]["schema"]
    assert events["properties"]["data"]["contentSchema"] == {"$ref": "#/components/schemas/StreamEvent"}
    assert {branch["$ref"].rsplit("/", 1)[1] for branch in components["StreamEvent"]["anyOf"]} == {
        "StartEvent",
        "DeltaEvent",
        "ToolCallEvent",
        "DoneEvent",
        "ErrorEvent",
    }
    assert "403" in get["responses"]
    assert paths["/v1/stream"]["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/StreamRequest"
    }


def test_options_lists_every_method_of_the_stream_endpoint(client: TestClient[Litestar]) -> None:
    allowed = client.options("/v1/stream").headers["allow"]

    assert {method.strip() for method in allowed.split(",")} == {"GET", "POST", "OPTIONS"}


def test_no_documentation_page_loads_scripts_from_elsewhere(client: TestClient[Litestar]) -> None:
    # Litestar's viewer pages load their scripts from CDNs without integrity: none is served.
    for page in ("/schema/swagger", "/schema/redoc", "/schema/elements"):
        assert client.get(page).status_code == 404


# --- the mock's answers through the native stream ---


@pytest.mark.parametrize("flavour", ["GET", "POST"])
def test_native_stream_sends_start_every_token_in_order_then_done(
    client: TestClient[Litestar], flavour: str
) -> None:
    frames = _named(_stream_native(client, flavour, _PROMPT, model="mock"))

    assert frames[0].event == "start"
    assert frames[-1].event == "done"
    assert {frame.event for frame in frames[1:-1]} == {"delta"}
    assert [frame.json()["text"] for frame in frames[1:-1]] == expected_tokens(_PROMPT)
    ids = [frame.id for frame in frames]
    assert None not in ids
    assert len(set(ids)) == len(ids)
    start = frames[0].json()
    assert (start["model"], start["provider"]) == ("mock", "mock")
    done = frames[-1].json()
    assert (done["finish_reason"], done["outcome"]) == ("stop", "completed")
    deltas = len(frames) - 2
    assert done["usage"] == {
        "prompt_tokens": expected_prompt_tokens(_PROMPT),
        "completion_tokens": deltas,
        "total_tokens": expected_prompt_tokens(_PROMPT) + deltas,
    }
    assert done["timings"]["duration_ms"] >= done["timings"]["ttft_ms"] >= 0


def test_native_stream_reads_with_httpx_sse(client: TestClient[Litestar]) -> None:
    with connect_sse(client, "POST", "/v1/stream", json={"messages": user(_PROMPT)}) as source:
        received = [(event.event, event.data) for event in source.iter_sse()]

    assert [name for name, _ in received[:1]] == ["start"]
    text = "".join(msgspec.json.decode(data)["text"] for name, data in received if name == "delta")
    assert text == "".join(expected_tokens(_PROMPT))
    assert received[-1][0] == "done"


def test_the_mock_answer_is_a_pure_function_of_the_request(client: TestClient[Litestar]) -> None:
    def answer(prompt: str, **fields: Any) -> list[str]:
        return [
            frame.json()["text"]
            for frame in _named(_native_post(client, prompt, **fields))
            if frame.event == "delta"
        ]

    first, again = answer(_PROMPT), answer(_PROMPT)
    other = answer("Tell me about cold starts on Lambda.")

    assert first == again
    assert "".join(first) != "".join(other)
    conversation = [{"role": "system", "content": "Be brief."}, *user(_PROMPT)]
    with_system = [
        frame.json()["text"]
        for frame in _named(client.post("/v1/stream", json={"messages": conversation}))
        if frame.event == "delta"
    ]
    assert "".join(with_system) != "".join(first)


def test_the_mock_answer_is_realistic_multi_line_text_in_many_small_deltas(
    client: TestClient[Litestar],
) -> None:
    tokens = [frame.json()["text"] for frame in _named(_native_post(client, "hi")) if frame.event == "delta"]
    text = "".join(tokens)

    assert len(tokens) >= 20
    assert max(len(token) for token in tokens) <= 16
    assert text.count("\n\n") >= 3  # paragraphs
    assert "\n- " in text  # a list
    assert "```python\n" in text  # a fenced code block
    assert text.rstrip().endswith(".")
    assert any("\n" in token for token in tokens)  # newlines travel as tokens of their own


def test_the_prompt_shapes_the_answer(client: TestClient[Litestar]) -> None:
    frames = _named(_native_post(client, "latency of the relay"))
    assert "latency of the relay" in "".join(f.json()["text"] for f in frames if f.event == "delta")


def test_max_tokens_cuts_the_answer_and_says_so(
    client: TestClient[Litestar], log_capture: LogCapture
) -> None:
    frames = _named(_native_post(client, _PROMPT, max_tokens=7))

    assert [frame.json()["text"] for frame in frames if frame.event == "delta"] == expected_tokens(_PROMPT)[
        :7
    ]
    done = frames[-1].json()
    assert (done["finish_reason"], done["outcome"]) == ("length", "max_tokens")
    assert done["usage"]["completion_tokens"] == 7
    assert log_capture.stream_ends[-1]["outcome"] == "max_tokens"


# --- OpenAI-compatible completions ---


def test_chat_completion_without_stream_is_one_completion_with_usage(client: TestClient[Litestar]) -> None:
    response = _chat(client, _PROMPT)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["model"] == "mock"
    [choice] = body["choices"]
    assert choice["message"] == {
        "role": "assistant",
        "content": "".join(expected_tokens(_PROMPT)),
        "refusal": None,
    }
    assert choice["finish_reason"] == "stop"
    completion = len(expected_tokens(_PROMPT))
    assert body["usage"] == {
        "prompt_tokens": expected_prompt_tokens(_PROMPT),
        "completion_tokens": completion,
        "total_tokens": expected_prompt_tokens(_PROMPT) + completion,
    }
    assert body["id"] == f"chatcmpl-{response.headers['x-request-id']}"


def test_chat_completion_stream_is_chunks_then_done(client: TestClient[Litestar]) -> None:
    response = _chat(client, _PROMPT, stream=True)

    chunks, done = _chunks(response)
    assert done
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert _content(chunks) == expected_tokens(_PROMPT)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(chunk["usage"] is None for chunk in chunks)


def test_chat_completion_stream_with_include_usage_sends_a_usage_chunk(client: TestClient[Litestar]) -> None:
    response = _chat(client, _PROMPT, stream=True, stream_options={"include_usage": True}, max_tokens=5)

    chunks, done = _chunks(response)
    assert done
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {
        "prompt_tokens": expected_prompt_tokens(_PROMPT),
        "completion_tokens": 5,
        "total_tokens": expected_prompt_tokens(_PROMPT) + 5,
    }
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"


def test_chat_completion_accepts_content_parts_and_openai_fields(client: TestClient[Litestar]) -> None:
    parts = {
        "role": "user",
        "content": [
            {"type": "text", "text": "How do streaming "},
            {"type": "text", "text": "responses work?"},
        ],
    }
    response = client.post(
        "/v1/chat/completions",
        json={
            "messages": [parts],
            "model": "mock",
            "temperature": 0.2,
            "top_p": 1,
            "n": 1,
            "stop": ["\n\n\n"],
            "seed": 1,
            "user": "u-1",
            "presence_penalty": 0,
            "frequency_penalty": 0,
            "max_completion_tokens": 3,
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "".join(expected_tokens(_PROMPT)[:3])


# --- streaming headers ---


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/stream?prompt=hi", None),
        ("POST", "/v1/stream", {"messages": user("hi")}),
        ("POST", "/v1/chat/completions", {"messages": user("hi"), "stream": True}),
    ],
)
def test_event_streams_forbid_buffering_and_are_never_compressed(
    client: TestClient[Litestar], method: str, path: str, body: Any
) -> None:
    response = client.request(method, path, json=body, headers={"accept-encoding": "gzip, br, deflate"})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "no-cache" in response.headers["cache-control"]
    assert response.headers["x-accel-buffering"] == "no"
    assert "content-encoding" not in response.headers
    assert response.headers["x-request-id"]


def test_the_request_id_links_header_start_event_and_log(
    client: TestClient[Litestar], log_capture: LogCapture
) -> None:
    response = _native_post(client, "hi")

    start = _named(response)[0].json()
    assert start["stream_id"] == response.headers["x-request-id"] == response.headers["x-stream-id"]
    assert [end["request_id"] for end in log_capture.stream_ends] == [start["stream_id"]]


# --- mock directives and errors ---

_FAULTS = [
    ("rate_limit", 429, "rate_limit_error", "rate_limit_exceeded"),
    ("auth", 401, "authentication_error", "upstream_authentication_failed"),
    ("unavailable", 502, "upstream_error", "upstream_unavailable"),
    ("timeout", 504, "timeout_error", "upstream_timeout"),
]


@pytest.mark.parametrize("endpoint", ["GET /v1/stream", "POST /v1/stream", "chat stream", "chat"])
@pytest.mark.parametrize(("fault", "status", "kind", "code"), _FAULTS)
def test_an_error_before_the_first_token_is_a_real_http_status(
    client: TestClient[Litestar],
    log_capture: LogCapture,
    endpoint: str,
    fault: str,
    status: int,
    kind: str,
    code: str,
) -> None:
    directives = {"error": fault}
    if endpoint == "GET /v1/stream":
        response = _native_get(client, "hi", mock=directives)
    elif endpoint == "POST /v1/stream":
        response = _native_post(client, "hi", mock=directives)
    else:
        response = _chat(client, "hi", stream=endpoint == "chat stream", mock=directives)

    _assert_openai_error(response, status, kind, code)
    if fault == "rate_limit":
        assert response.headers["retry-after"] == "1"
    assert [end["outcome"] for end in log_capture.stream_ends] == ["error"]


@pytest.mark.parametrize("flavour", ["GET", "POST"])
def test_a_failure_after_the_first_token_is_a_terminal_error_event(
    client: TestClient[Litestar], log_capture: LogCapture, flavour: str
) -> None:
    frames = _named(_stream_native(client, flavour, _PROMPT, mock={"fail_after": 3}))

    assert [frame.event for frame in frames] == ["start", "delta", "delta", "delta", "error"]
    assert [frame.json()["text"] for frame in frames[1:4]] == expected_tokens(_PROMPT)[:3]
    error = frames[-1].json()["error"]
    assert (error["type"], error["code"]) == ("upstream_error", "upstream_stream_error")
    assert error["message"]
    assert frames[-1].id not in {frame.id for frame in frames[:-1]}
    [end] = log_capture.stream_ends
    assert (end["outcome"], end["completion_tokens"]) == ("error", 3)


def test_a_chat_stream_failure_after_the_first_token_is_an_error_chunk_without_done(
    client: TestClient[Litestar],
) -> None:
    chunks, done = _chunks(_chat(client, _PROMPT, stream=True, mock={"fail_after": 3}))

    assert not done
    assert _content(chunks) == expected_tokens(_PROMPT)[:3]
    assert set(chunks[-1]) == {"error"}
    assert chunks[-1]["error"]["code"] == "upstream_stream_error"


def test_a_failure_mid_generation_of_a_whole_completion_is_an_http_error(
    client: TestClient[Litestar],
) -> None:
    _assert_openai_error(
        _chat(client, _PROMPT, mock={"fail_after": 3}), 502, "upstream_error", "upstream_stream_error"
    )


def test_fail_after_zero_fails_before_the_first_token(client: TestClient[Litestar]) -> None:
    _assert_openai_error(
        _native_post(client, _PROMPT, mock={"fail_after": 0}), 502, "upstream_error", "upstream_stream_error"
    )


def test_fail_after_beyond_the_answer_fails_where_done_would_be(client: TestClient[Litestar]) -> None:
    frames = _named(_native_post(client, _PROMPT, mock={"fail_after": 10_000}))
    assert [frame.json()["text"] for frame in frames if frame.event == "delta"] == expected_tokens(_PROMPT)
    assert frames[-1].event == "error"


def test_mock_pacing_comes_from_the_settings() -> None:
    settings = Settings.from_env({"MOCK_TOKEN_DELAY_MS": "20"})
    with TestClient(create_app(settings)) as client:
        done = _named(_native_post(client, _PROMPT, max_tokens=5))[-1].json()
    assert done["timings"]["duration_ms"] >= 5 * 20
    assert done["timings"]["ttft_ms"] >= 20


def test_mock_pacing_per_request_overrides_the_settings(client: TestClient[Litestar]) -> None:
    done = _named(_native_post(client, _PROMPT, max_tokens=5, mock={"delay_ms": 25}))[-1].json()
    assert done["timings"]["duration_ms"] >= 5 * 25


# --- heartbeats and the read-ahead for the first item ---


def _pings_then(frames: list[Frame]) -> list[str]:
    return ["ping" if frame.is_comment else str(frame.event) for frame in frames]


@pytest.mark.parametrize("flavour", ["GET", "POST"])
def test_heartbeats_flow_before_the_first_token_of_a_stalled_provider(
    make_app: AppFactory, flavour: str
) -> None:
    with TestClient(make_app(heartbeat_interval_s=0.05)) as client:
        response = _stream_native(client, flavour, _PROMPT, mock={"stall_ms": 400})

    assert response.status_code == 200
    kinds = _pings_then(parse_frames(response.content))
    assert kinds[0] == "start"
    assert kinds[1] == "ping"
    first_delta = kinds.index("delta")
    assert set(kinds[1:first_delta]) == {"ping"}
    assert "ping" not in kinds[first_delta:]  # the tokens themselves keep the connection busy
    assert kinds[-1] == "done"


def test_heartbeats_on_the_chat_stream(make_app: AppFactory) -> None:
    with TestClient(make_app(heartbeat_interval_s=0.05)) as client:
        response = _chat(client, _PROMPT, stream=True, mock={"stall_ms": 400})

    frames = parse_frames(response.content)
    assert frames[0].json()["choices"][0]["delta"]["role"] == "assistant"
    assert frames[1].is_comment
    assert frames[1].comments == ("ping",)
    assert events(frames)[-1].data == "[DONE]"


@pytest.mark.parametrize("flavour", ["native", "chat"])
def test_an_error_after_the_heartbeat_interval_is_in_band(make_app: AppFactory, flavour: str) -> None:
    directives = {"stall_ms": 400, "error": "rate_limit"}
    with TestClient(make_app(heartbeat_interval_s=0.05)) as client:
        if flavour == "native":
            response = _native_post(client, _PROMPT, mock=directives)
        else:
            response = _chat(client, _PROMPT, stream=True, mock=directives)

    assert response.status_code == 200
    frames = parse_frames(response.content)
    assert any(frame.is_comment for frame in frames)
    last = events(frames)[-1]
    assert last.json()["error"]["code"] == "rate_limit_exceeded"
    if flavour == "native":
        assert last.event == "error"


def test_an_error_within_the_heartbeat_interval_is_still_a_status(make_app: AppFactory) -> None:
    with TestClient(make_app(heartbeat_interval_s=30)) as client:
        response = _native_post(client, _PROMPT, mock={"stall_ms": 100, "error": "unavailable"})
    _assert_openai_error(response, 502, "upstream_error", "upstream_unavailable")


def test_a_whole_completion_ignores_heartbeats(make_app: AppFactory) -> None:
    with TestClient(make_app(heartbeat_interval_s=0.05)) as client:
        response = _chat(client, _PROMPT, mock={"stall_ms": 300}, max_tokens=4)
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "".join(expected_tokens(_PROMPT)[:4])


# --- budgets ---


def test_idle_timeout_after_the_headers_is_a_terminal_event_naming_it(
    make_app: AppFactory, log_capture: LogCapture
) -> None:
    with TestClient(make_app(heartbeat_interval_s=0.05, stream_idle_timeout_s=0.15)) as client:
        response = _native_post(client, _PROMPT, mock={"delay_ms": 1000})

    frames = _named(response)
    assert [frame.event for frame in frames] == ["start", "error"]
    error = frames[-1].json()["error"]
    assert (error["type"], error["code"]) == ("budget_exceeded", "idle_timeout")
    assert [end["outcome"] for end in log_capture.stream_ends] == ["idle_timeout"]


def test_idle_timeout_before_the_first_heartbeat_is_a_504(make_app: AppFactory) -> None:
    with TestClient(make_app(heartbeat_interval_s=30, stream_idle_timeout_s=0.05)) as client:
        response = _native_post(client, _PROMPT, mock={"stall_ms": 5000})
    _assert_openai_error(response, 504, "budget_exceeded", "idle_timeout")


def test_the_deadline_ends_a_slow_stream_with_a_terminal_event(
    make_app: AppFactory, log_capture: LogCapture
) -> None:
    with TestClient(make_app(stream_deadline_s=0.3)) as client:
        response = _native_post(client, _PROMPT, mock={"delay_ms": 20})

    frames = _named(response)
    delivered = [frame.json()["text"] for frame in frames if frame.event == "delta"]
    assert 0 < len(delivered) < len(expected_tokens(_PROMPT))
    assert delivered == expected_tokens(_PROMPT)[: len(delivered)]
    error = frames[-1].json()["error"]
    assert (frames[-1].event, error["code"]) == ("error", "deadline")
    assert [end["outcome"] for end in log_capture.stream_ends] == ["deadline"]


def test_the_deadline_on_the_chat_stream_is_an_error_chunk(make_app: AppFactory) -> None:
    with TestClient(make_app(stream_deadline_s=0.3)) as client:
        chunks, done = _chunks(_chat(client, _PROMPT, stream=True, mock={"delay_ms": 20}))
    assert not done
    assert chunks[-1]["error"]["code"] == "deadline"


# --- logs ---


@pytest.mark.parametrize(
    ("fields", "outcome"),
    [
        ({}, "completed"),
        ({"max_tokens": 3}, "max_tokens"),
        ({"mock": {"fail_after": 2}}, "error"),
        ({"mock": {"error": "auth"}}, "error"),
    ],
)
def test_each_stream_logs_exactly_one_stream_end(
    client: TestClient[Litestar], log_capture: LogCapture, fields: dict[str, Any], outcome: str
) -> None:
    response = _native_post(client, "a secret plan for the prompt", **fields)

    [end] = log_capture.stream_ends
    assert end["outcome"] == outcome
    assert (end["provider"], end["model"], end["dialect"]) == ("mock", "mock", "stream")
    assert {"request_id", "ttft_ms", "duration_ms", "completion_tokens", "prompt_tokens"} <= set(end)
    if response.status_code == 200:
        assert response.headers["x-request-id"] == end["request_id"]
    assert "secret plan" not in repr(
        [(r.getMessage(), getattr(r, "fields", None)) for r in log_capture.records]
    )


def test_prompts_are_logged_only_when_asked(make_app: AppFactory, log_capture: LogCapture) -> None:
    with TestClient(make_app(log_prompts=True)) as client:
        _chat(client, "a secret plan for the prompt")
    [logged] = log_capture.events("stream_prompt")
    assert logged["messages"] == [{"role": "user", "content": "a secret plan for the prompt"}]
    assert logged["request_id"] == log_capture.stream_ends[0]["request_id"]


def test_a_mock_provider_serves_many_requests_independently(
    client: TestClient[Litestar], provider: MockProvider
) -> None:
    for index in range(5):
        assert _native_post(client, f"q{index}").status_code == 200
    assert provider.active_streams == 0
    assert provider.tokens_emitted == sum(len(expected_tokens(f"q{i}")) for i in range(5))


def test_a_cross_site_get_stream_is_refused(client: TestClient[Litestar], provider: MockProvider) -> None:
    # An EventSource (or an <img>) on any web page needs no CORS preflight: without this check it would
    # start a generation on this server's key for a page nobody allowed.
    refused = client.get("/v1/stream", params={"prompt": "hi"}, headers={"origin": "https://evil.example"})

    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "cross_origin"
    assert provider.tokens_emitted == 0
    same_site = client.get(
        "/v1/stream",
        params={"prompt": "hi", "max_tokens": "2"},
        headers={"origin": "http://testserver.local"},
    )
    assert same_site.status_code == 200
    assert client.get("/v1/stream", params={"prompt": "hi", "max_tokens": "2"}).status_code == 200
