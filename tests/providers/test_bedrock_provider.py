"""The Bedrock provider through the real botocore, against the fake Bedrock Runtime on loopback.

Only the far end of the socket is fake: botocore builds, signs (SigV4, static fake credentials), sends and
parses event-stream frames as it does against bedrock-runtime.<region>.amazonaws.com. moto 5.2 cannot stand
in: its `bedrock-runtime` implements `invoke_model` only, not `converse_stream`.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator

import pytest
from botocore.eventstream import EventStreamBuffer

from providers.bedrock import BedrockProvider
from providers.errors import (
    ProviderAccessDeniedError,
    ProviderBadRequestError,
    ProviderError,
    ProviderNotReadyError,
    ProviderRateLimitError,
    ProviderStreamError,
    ProviderTimeoutError,
    ProviderUnsupportedParameterError,
)
from providers.protocol import (
    ChatMessage,
    ChatRequest,
    Finish,
    FunctionCall,
    FunctionDefinition,
    ImagePart,
    ImageURL,
    JsonObjectFormat,
    StreamItem,
    TextDelta,
    TextPart,
    Tool,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from tests.support.fake_bedrock import (
    ACCESS_KEY_ID,
    REGION,
    FakeBedrock,
    event,
    exception,
    fake_bedrock,
    offline_bedrock_credentials,
)
from tests.support.timeouts import run_async

MODELS = (
    ("claude", "anthropic.claude-3-5-haiku-20241022-v1:0"),
    ("echo", "fake.echo"),
    ("throttled", "fake.throttled"),
    ("throttled-in-stream", "fake.throttled-in-stream"),
    ("denied", "fake.denied"),
    ("not-enabled", "fake.not-enabled"),
    ("invalid", "fake.invalid"),
    ("unavailable", "fake.unavailable"),
    ("timeout", "fake.timeout"),
    ("fails", "fake.fails-mid-stream"),
    ("hangs", "fake.hangs"),
)
WEATHER = Tool(
    function=FunctionDefinition(
        name="get_weather",
        description="The forecast",
        parameters={
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"],
        },
    )
)
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n-not-really-an-image").decode()


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBedrock]:
    for name, value in offline_bedrock_credentials().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    with fake_bedrock() as running:
        yield running


def provider_for(fake: FakeBedrock, **options: object) -> BedrockProvider:
    return BedrockProvider(
        models=MODELS,
        region=REGION,
        endpoint_url=fake.endpoint_url,
        max_retries=0,
        **options,  # type: ignore[arg-type]
    )


def ask(model: str, text: str = "Tell me about streams", **fields: object) -> ChatRequest:
    return ChatRequest(model=model, messages=(ChatMessage(role="user", content=text),), **fields)  # type: ignore[arg-type]


def collect(fake: FakeBedrock, request: ChatRequest) -> list[StreamItem]:
    items: list[StreamItem] = []

    async def body() -> None:
        provider = provider_for(fake)
        try:
            items.extend([item async for item in provider.stream_chat(request)])
        finally:
            await provider.aclose()

    run_async(body)
    return items


def failure_of(fake: FakeBedrock, request: ChatRequest) -> tuple[ProviderError, list[StreamItem]]:
    seen: list[StreamItem] = []
    with pytest.raises(ProviderError) as raised:
        seen.extend(collect(fake, request))
    return raised.value, seen


# --- the fake's own wire format, checked by botocore's decoder ---


def test_the_fakes_frames_pass_botocores_decoder_with_both_crcs() -> None:
    buffer = EventStreamBuffer()
    buffer.add_data(event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "hé"}}))
    buffer.add_data(exception("throttlingException", "slow"))
    first, second = list(buffer)

    assert first.headers == {
        ":event-type": "contentBlockDelta",
        ":content-type": "application/json",
        ":message-type": "event",
    }
    assert json.loads(first.payload) == {"contentBlockIndex": 0, "delta": {"text": "hé"}}
    assert second.headers[":exception-type"] == "throttlingException"
    assert second.to_response_dict()["status_code"] == 400


# --- streams ---


def test_a_text_stream_is_deltas_then_a_finish_with_the_usage(fake: FakeBedrock) -> None:
    items = collect(fake, ask("echo", "Tell me about streams"))

    assert items[:-1] == [TextDelta(t) for t in ("You", " said:", " Tell", " me", " about", " streams")]
    assert items[-1] == Finish(reason="stop", usage=Usage(prompt_tokens=12, completion_tokens=6))


def test_the_signed_request_carries_the_mapped_conversation(fake: FakeBedrock) -> None:
    request = ChatRequest(
        model="echo",
        messages=(
            ChatMessage(role="system", content="You are terse."),
            ChatMessage(role="developer", content="Answer in French."),
            ChatMessage(
                role="user",
                content=(
                    TextPart("What is this?"),
                    ImagePart(ImageURL(f"data:image/png;base64,{PNG}")),
                ),
            ),
        ),
        max_tokens=200,
        temperature=0.2,
        top_p=0.9,
        stop=("END",),
        tools=(WEATHER,),
        tool_choice="required",
    )
    collect(fake, request)

    [sent] = fake.requests
    assert sent.path == "/model/fake.echo/converse-stream"
    authorization = sent.headers["authorization"]
    assert authorization.startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/")
    assert f"/{REGION}/bedrock/aws4_request" in authorization
    assert sent.body == {
        "system": [{"text": "You are terse."}, {"text": "Answer in French."}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"text": "What is this?"},
                    {"image": {"format": "png", "source": {"bytes": PNG}}},
                ],
            }
        ],
        "inferenceConfig": {"maxTokens": 200, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"]},
        "toolConfig": {
            "tools": [
                {
                    "toolSpec": {
                        "name": "get_weather",
                        "description": "The forecast",
                        "inputSchema": {"json": WEATHER.function.parameters},
                    }
                }
            ],
            "toolChoice": {"any": {}},
        },
    }


def test_a_tool_call_streams_as_tool_call_deltas_and_its_result_goes_back_as_tool_result(
    fake: FakeBedrock,
) -> None:
    first = collect(fake, ask("echo", "Weather in Lyon?", tools=(WEATHER,)))

    calls = [item for item in first if isinstance(item, ToolCallDelta)]
    assert calls[0].id == "tooluse_0000"
    assert calls[0].name == "get_weather"
    assert {call.index for call in calls} == {0}
    arguments = "".join(call.arguments for call in calls)
    assert json.loads(arguments) == {"location": "Lyon", "unit": "celsius"}
    assert len([call for call in calls if call.arguments]) > 1
    assert first[-1] == Finish(reason="tool_calls", usage=Usage(prompt_tokens=30, completion_tokens=8))

    call = ToolCall(id="tooluse_0000", function=FunctionCall(name="get_weather", arguments=arguments))
    answer = collect(
        fake,
        ChatRequest(
            model="echo",
            messages=(
                ChatMessage(role="user", content="Weather in Lyon?"),
                ChatMessage(role="assistant", content=None, tool_calls=(call,)),
                ChatMessage(role="tool", content="sunny, 24 degrees", tool_call_id="tooluse_0000"),
                ChatMessage(role="user", content="Thanks. Shorts?"),
            ),
            tools=(WEATHER,),
        ),
    )

    assert (
        "".join(item.text for item in answer if isinstance(item, TextDelta))
        == "The tool said: sunny, 24 degrees"
    )
    # The tool result and the user text after it are one user turn: Converse wants turns to alternate.
    assert fake.requests[-1].body["messages"] == [
        {"role": "user", "content": [{"text": "Weather in Lyon?"}]},
        {
            "role": "assistant",
            "content": [
                {
                    "toolUse": {
                        "toolUseId": "tooluse_0000",
                        "name": "get_weather",
                        "input": json.loads(arguments),
                    }
                }
            ],
        },
        {
            "role": "user",
            "content": [
                {"toolResult": {"toolUseId": "tooluse_0000", "content": [{"text": "sunny, 24 degrees"}]}},
                {"text": "Thanks. Shorts?"},
            ],
        },
    ]


def test_a_public_name_maps_to_its_model_id_and_an_arn_travels_url_encoded(fake: FakeBedrock) -> None:
    arn = (
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0"
    )
    collect(fake, ask("claude"))
    collect(fake, ask(arn))

    assert fake.requests[0].model_id == "anthropic.claude-3-5-haiku-20241022-v1:0"
    assert fake.requests[1].model_id == arn


# --- errors, translated once ---


def test_throttling_before_the_first_token_is_a_rate_limit_with_retry_after(fake: FakeBedrock) -> None:
    error, seen = failure_of(fake, ask("throttled"))

    assert isinstance(error, ProviderRateLimitError)
    assert error.retry_after_s == 7
    assert "Too many requests" in error.message
    assert seen == []


def test_a_throttling_frame_before_any_content_is_still_a_rate_limit(fake: FakeBedrock) -> None:
    error, _ = failure_of(fake, ask("throttled-in-stream"))
    assert isinstance(error, ProviderRateLimitError)


def test_access_denied_says_which_permission_is_missing(fake: FakeBedrock) -> None:
    error, _ = failure_of(fake, ask("denied"))

    assert isinstance(error, ProviderAccessDeniedError)
    assert "bedrock:InvokeModelWithResponseStream on 'fake.denied'" in error.message
    assert "is not authorized to perform" in error.message
    # The caller's ARN names the account and the role: for the deployer's log, not for the API client.
    assert "123456789012" not in error.message
    assert "User: <arn> is not authorized" in error.message


def test_arguments_botocore_refuses_before_sending_are_a_bad_request(fake: FakeBedrock) -> None:
    error, _ = failure_of(fake, ask("fake.echo", stop=("",)))

    assert isinstance(error, ProviderBadRequestError)
    assert "stopSequences" in error.message


def test_a_model_without_access_says_to_grant_model_access(fake: FakeBedrock) -> None:
    error, _ = failure_of(fake, ask("not-enabled"))

    assert isinstance(error, ProviderAccessDeniedError)
    assert "model access to 'fake.not-enabled' must be granted" in error.message


@pytest.mark.parametrize(
    ("model", "kind", "words"),
    [
        ("invalid", ProviderBadRequestError, "The provided model identifier is invalid."),
        ("unavailable", ProviderNotReadyError, "ServiceUnavailableException"),
        ("timeout", ProviderTimeoutError, "did not answer in time"),
    ],
)
def test_other_failures_before_the_first_token(
    fake: FakeBedrock, model: str, kind: type[ProviderError], words: str
) -> None:
    error, _ = failure_of(fake, ask(model))

    assert type(error) is kind
    assert words in error.message


def test_an_exception_frame_after_the_first_token_is_a_stream_error(fake: FakeBedrock) -> None:
    error, _ = failure_of(fake, ask("fails"))

    assert isinstance(error, ProviderStreamError)
    assert "modelStreamErrorException" in error.message
    assert "The model failed." in error.message


def test_the_deltas_before_an_exception_frame_arrive_first(fake: FakeBedrock) -> None:
    seen: list[StreamItem] = []

    async def body() -> None:
        provider = provider_for(fake)
        try:

            async def consume() -> None:
                async for item in provider.stream_chat(ask("fails")):
                    seen.append(item)

            with pytest.raises(ProviderStreamError):
                await consume()
        finally:
            await provider.aclose()

    run_async(body)
    assert seen == [TextDelta("Half "), TextDelta("an ")]


@pytest.mark.parametrize(
    ("request_", "param"),
    [
        (ask("echo", n=2), "n"),
        (ask("echo", response_format=JsonObjectFormat()), "response_format"),
        (ask("echo", extra={"logprobs": True}), "logprobs"),
        (ask("echo", tools=(WEATHER,), tool_choice="none"), "tool_choice"),
        (
            ChatRequest(
                model="echo",
                messages=(
                    ChatMessage(role="user", content=(ImagePart(ImageURL("https://example.com/cat.png")),)),
                ),
            ),
            "messages[0].content[0].image_url.url",
        ),
    ],
)
def test_what_bedrock_cannot_do_is_refused_by_name_before_any_request(
    fake: FakeBedrock, request_: ChatRequest, param: str
) -> None:
    error, _ = failure_of(fake, request_)

    assert isinstance(error, ProviderUnsupportedParameterError)
    assert error.param == param
    assert fake.requests == []


# --- the endpoint from the SDK's chain, and closing ---


def test_the_endpoint_comes_from_aws_endpoint_url_bedrock_runtime(
    fake: FakeBedrock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", fake.endpoint_url)
    items: list[StreamItem] = []

    async def body() -> None:
        provider = BedrockProvider(models=MODELS, region=REGION, max_retries=0)
        try:
            items.extend([item async for item in provider.stream_chat(ask("echo", "hi"))])
        finally:
            await provider.aclose()

    run_async(body)
    assert isinstance(items[-1], Finish)
    assert [request.model_id for request in fake.requests] == ["fake.echo"]


def test_closing_the_stream_closes_the_upstream_connection_at_once(fake: FakeBedrock) -> None:
    async def body() -> None:
        provider = provider_for(fake)
        try:
            items = provider.stream_chat(ask("hangs"))
            assert await anext(items) == TextDelta("Still ")
            assert await anext(items) == TextDelta("thinking")
            assert provider.active_streams == 1

            await items.aclose()  # type: ignore[attr-defined]

            assert provider.active_streams == 0
            # The fake sends nothing more after these two: only our close can end its read.
            assert await asyncio.to_thread(fake.client_closed.wait, 10)
        finally:
            await provider.aclose()

    run_async(body)


@pytest.mark.parametrize("missing", ["stub", "absent"])
def test_closing_works_with_a_urllib3_that_has_no_shutdown(
    fake: FakeBedrock, monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    # urllib3 < 2.3 (an older Lambda runtime's botocore): 2.0 to 2.2 have only the base class's stub, which
    # raises NotImplementedError, 1.26 nothing at all. The socket under the response is shut instead.
    import urllib3
    from urllib3.response import BaseHTTPResponse

    monkeypatch.delattr(urllib3.HTTPResponse, "shutdown")
    if missing == "absent":
        monkeypatch.delattr(BaseHTTPResponse, "shutdown")

    async def body() -> None:
        provider = provider_for(fake)
        try:
            items = provider.stream_chat(ask("hangs"))
            assert await anext(items) == TextDelta("Still ")
            await items.aclose()  # type: ignore[attr-defined]
            assert provider.active_streams == 0
            assert await asyncio.to_thread(fake.client_closed.wait, 10)
        finally:
            await provider.aclose()

    run_async(body)


def test_cancelling_the_consumer_closes_the_upstream_connection(fake: FakeBedrock) -> None:
    async def body() -> None:
        provider = provider_for(fake)
        two = asyncio.Event()

        async def consume() -> None:
            seen = 0
            async for _ in provider.stream_chat(ask("hangs")):
                seen += 1
                if seen == 2:
                    two.set()

        try:
            task = asyncio.create_task(consume())
            await two.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert provider.active_streams == 0
            assert await asyncio.to_thread(fake.client_closed.wait, 10)
        finally:
            await provider.aclose()

    run_async(body)
