"""PROVIDER=bedrock end to end: real clients -> our app on uvicorn -> botocore -> the fake Bedrock Runtime.

The app is built as production builds it, from the environment (`Settings.from_env`, `create_app`), with
botocore finding the fake through `AWS_ENDPOINT_URL_BEDROCK_RUNTIME` and static fake credentials.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import msgspec
import openai
import pydantic
import pytest

from app.factory import create_app
from app.settings import Settings
from tests.app.http.test_openai_clients import WEATHER_PARAMETERS, WEATHER_TOOL
from tests.support.fake_bedrock import REGION, FakeBedrock, fake_bedrock, offline_bedrock_credentials
from tests.support.server import serve
from tests.support.timeouts import run_async

_MODELS = ",".join(
    f"{name}=fake.{name}"
    for name in ("echo", "throttled", "denied", "not-enabled", "fails-mid-stream", "hangs")
)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBedrock]:
    with fake_bedrock() as running:
        environ = offline_bedrock_credentials(
            {
                "PROVIDER": "bedrock",
                "BEDROCK_MODELS": _MODELS,
                "BEDROCK_REGION": REGION,
                "BEDROCK_MAX_RETRIES": "0",
                "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": running.endpoint_url,
            }
        )
        for name, value in environ.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        monkeypatch.delenv("API_KEYS", raising=False)
        monkeypatch.delenv("DEFAULT_MODEL", raising=False)
        yield running


@pytest.fixture
def base_url(fake: FakeBedrock) -> Iterator[str]:
    app = create_app(Settings.from_env())
    with serve(app) as server:
        yield server.base_url


@pytest.fixture
def sdk(base_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{base_url}/v1", api_key="x", max_retries=0, timeout=15) as client:
        yield client


def test_models_lists_the_configured_names_and_the_first_is_the_default(
    sdk: openai.OpenAI, fake: FakeBedrock
) -> None:
    assert [model.id for model in sdk.models.list()] == [
        "echo",
        "throttled",
        "denied",
        "not-enabled",
        "fails-mid-stream",
        "hangs",
    ]
    completion = sdk.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])
    assert completion.choices[0].message.content == "You said: hi"
    assert fake.requests[-1].model_id == "fake.echo"


def test_the_openai_sdk_streams_text(sdk: openai.OpenAI) -> None:
    messages: list[Any] = [{"role": "user", "content": "streams are neat"}]
    with sdk.chat.completions.stream(
        model="echo", messages=messages, max_tokens=50, stream_options={"include_usage": True}
    ) as stream:
        pieces = [event.delta for event in stream if event.type == "content.delta" and event.delta]
        completion = stream.get_final_completion()

    assert pieces == ["You", " said:", " streams", " are", " neat"]
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (12, 5)


def test_the_openai_sdk_streams_a_tool_call_and_sends_the_result_back(
    sdk: openai.OpenAI, fake: FakeBedrock
) -> None:
    messages: list[Any] = [{"role": "user", "content": "What is the weather in Lyon?"}]
    with sdk.chat.completions.stream(model="echo", messages=messages, tools=[WEATHER_TOOL]) as stream:
        pieces = [event for event in stream if event.type == "tool_calls.function.arguments.delta"]
        completion = stream.get_final_completion()

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls or []
    assert call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, WEATHER_PARAMETERS)
    assert len(pieces) > 1

    assistant = {
        "role": "assistant",
        "tool_calls": [{"id": call.id, "type": "function", "function": call.function.model_dump()}],
    }
    messages += [assistant, {"role": "tool", "tool_call_id": call.id, "content": "sunny, 24 degrees"}]
    answer = sdk.chat.completions.create(model="echo", messages=messages, tools=[WEATHER_TOOL])

    assert answer.choices[0].message.content == "The tool said: sunny, 24 degrees"
    sent = fake.requests[-1].body["messages"]
    assert sent[1]["content"][0]["toolUse"] == {
        "toolUseId": call.id,
        "name": "get_weather",
        "input": arguments,
    }
    assert sent[2]["content"][0]["toolResult"]["toolUseId"] == call.id


def test_langchain_bind_tools_streams_tool_call_chunks(base_url: str) -> None:
    from langchain_core.messages import AIMessageChunk
    from langchain_openai import ChatOpenAI

    model = ChatOpenAI(
        model="echo", base_url=f"{base_url}/v1", api_key=pydantic.SecretStr("x"), max_retries=0
    )
    streamed = list(model.bind_tools([dict(WEATHER_TOOL)]).stream("Weather in Lyon?"))
    chunks = [chunk for chunk in streamed if isinstance(chunk, AIMessageChunk)]

    assert sum(len(chunk.tool_call_chunks) for chunk in chunks) > 1
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    [call] = merged.tool_calls
    assert call["name"] == "get_weather"
    jsonschema.validate(call["args"], WEATHER_PARAMETERS)


@pytest.mark.parametrize("stream", [True, False])
def test_throttling_before_the_first_token_is_a_429_with_retry_after(
    sdk: openai.OpenAI, stream: bool
) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        sdk.chat.completions.create(
            model="throttled", messages=[{"role": "user", "content": "hi"}], stream=stream
        )

    assert caught.value.response.headers["retry-after"] == "7"
    assert "Amazon Bedrock throttled the request" in caught.value.message


def test_access_denied_is_a_502_naming_the_missing_permission(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.create(model="denied", messages=[{"role": "user", "content": "hi"}], stream=True)

    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_access_denied"
    assert "bedrock:InvokeModelWithResponseStream on 'fake.denied'" in caught.value.message


def test_a_model_without_access_is_a_502_saying_to_grant_it(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.create(model="not-enabled", messages=[{"role": "user", "content": "hi"}])

    assert caught.value.status_code == 502
    assert "must be granted to this account and region in the Bedrock console" in caught.value.message


def test_an_exception_frame_mid_stream_ends_the_stream_with_an_in_band_error(sdk: openai.OpenAI) -> None:
    received: list[str] = []
    stream = sdk.chat.completions.create(
        model="fails-mid-stream", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    with stream, pytest.raises(openai.APIError) as caught:
        received.extend(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)

    assert [piece for piece in received if piece] == ["Half ", "an "]
    assert not isinstance(caught.value, openai.APIStatusError)  # in-band, after a 200
    assert "modelStreamErrorException" in caught.value.message


def test_what_bedrock_cannot_do_is_a_400_naming_the_field(sdk: openai.OpenAI, fake: FakeBedrock) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}], n=2)

    assert caught.value.code == "unsupported_parameter"
    assert isinstance(caught.value.body, dict)
    assert caught.value.body.get("param") == "n"
    assert fake.requests == []


def test_a_client_that_disconnects_closes_the_bedrock_connection(base_url: str, fake: FakeBedrock) -> None:
    async def body() -> None:
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
            request = {"model": "hangs", "messages": [{"role": "user", "content": "hi"}], "stream": True}
            async with client.stream("POST", "/v1/chat/completions", json=request) as response:
                assert response.status_code == 200
                async for line in response.aiter_lines():
                    if "thinking" in line:
                        break
            # Leaving the block closed our connection mid-body; the fake sends nothing more by itself.

    run_async(body)
    assert fake.client_closed.wait(10)


def test_an_explicit_cancel_closes_the_bedrock_connection(base_url: str, fake: FakeBedrock) -> None:
    async def body() -> str:
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
            request = {"model": "hangs", "messages": [{"role": "user", "content": "hi"}], "stream": True}
            async with client.stream("POST", "/v1/chat/completions", json=request) as response:
                stream_id = response.headers["x-stream-id"]
                lines = response.aiter_lines()
                async for line in lines:
                    if "thinking" in line:
                        break
                cancel = await client.post(f"/v1/streams/{stream_id}/cancel")
                assert cancel.status_code == 202
                return "\n".join([line async for line in lines])

    rest = run_async(body)
    assert '"code":"cancelled"' in rest.replace(" ", "")
    assert fake.client_closed.wait(10)


def test_a_deadline_that_runs_out_closes_the_bedrock_connection(fake: FakeBedrock) -> None:
    app = create_app(msgspec.structs.replace(Settings.from_env(), stream_deadline_s=0.5))
    with serve(app) as server, httpx.Client(base_url=server.base_url, timeout=10) as client:
        body = {"model": "hangs", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        response = client.post("/v1/chat/completions", json=body)

    assert response.status_code == 200
    assert '"code":"deadline"' in response.text.replace(" ", "")
    assert fake.client_closed.wait(10)
