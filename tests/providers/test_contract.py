"""One behavioural contract, run against every provider implementation.

Each implementation is a *contract case*: a context manager that sets up the provider (and whatever it
needs) and yields a `ProviderCase`. To run the whole suite against another implementation, register one
more case with `@contract_case("name")` below; for example, `OpenAIProvider` chained to this app's own
`/v1` over a real uvicorn server (`tests.support.server.serve(create_app(...))`, then
`OpenAIProvider(api_key=..., base_url=f"{server.base_url}/v1")`). Cases that cannot observe upstream
resources leave `open_upstream_streams` as None and the release checks are skipped for them.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

import pytest

from providers.mock import MockProvider
from providers.protocol import ChatMessage, ChatRequest, Finish, Provider, StreamItem, TextDelta
from tests.providers.fake_upstream import FakeUpstream, close_iterator, echo_stream
from tests.support.timeouts import run_async

MESSAGES = (
    ChatMessage(role="system", content="You are terse."),
    ChatMessage(role="user", content="Explain token streaming in one short paragraph, please."),
)


@dataclass(frozen=True)
class ProviderCase:
    """One provider implementation under the contract, and what the suite may observe about it."""

    provider: Provider
    model: str
    deterministic: bool = True
    # How many upstream streams are still open; None when the implementation cannot be observed.
    open_upstream_streams: Callable[[], int] | None = None

    def request(self) -> ChatRequest:
        return ChatRequest(model=self.model, messages=MESSAGES)


ContractCase = Callable[[], AbstractContextManager[ProviderCase]]

# The fixture hook: every case registered here runs the whole suite.
CONTRACT_CASES: dict[str, ContractCase] = {}


def contract_case(name: str) -> Callable[[ContractCase], ContractCase]:
    """Register a provider implementation for the contract suite under `name` (the test id)."""

    def register(case: ContractCase) -> ContractCase:
        if name in CONTRACT_CASES:
            raise ValueError(f"contract case {name!r} is registered twice")
        CONTRACT_CASES[name] = case
        return case

    return register


@contract_case("mock")
@contextmanager
def mock_case() -> Iterator[ProviderCase]:
    provider = MockProvider(token_delay_s=0)
    yield ProviderCase(provider=provider, model="mock", open_upstream_streams=lambda: provider.active_streams)


@contract_case("openai-fake-transport")
@contextmanager
def openai_fake_transport_case() -> Iterator[ProviderCase]:
    upstream = FakeUpstream(echo_stream)
    yield ProviderCase(
        provider=upstream.provider(), model="gpt-4o-mini", open_upstream_streams=upstream.open_bodies
    )


@contract_case("openai-chained-to-this-app")
@contextmanager
def openai_chained_case() -> Iterator[ProviderCase]:
    # The OpenAI provider against our own OpenAI-compatible /v1 (uvicorn on 127.0.0.1, serving the mock).
    from tests.support.chained import openai_chained_to_this_app

    with openai_chained_to_this_app() as (provider, open_mock_streams):
        yield ProviderCase(provider=provider, model="mock", open_upstream_streams=open_mock_streams)


@contract_case("bedrock-fake-runtime")
@contextmanager
def bedrock_fake_runtime_case() -> Iterator[ProviderCase]:
    # botocore itself, signing with static fake credentials, against the fake Bedrock Runtime on loopback.
    from providers.bedrock import BedrockProvider
    from tests.support.fake_bedrock import REGION, fake_bedrock, offline_bedrock_credentials

    with pytest.MonkeyPatch.context() as patch, fake_bedrock() as fake:
        for name, value in offline_bedrock_credentials().items():
            patch.setenv(name, value)
        patch.delenv("AWS_SESSION_TOKEN", raising=False)
        provider = BedrockProvider(
            models=(("echo", "fake.echo"),), region=REGION, endpoint_url=fake.endpoint_url, max_retries=0
        )
        yield ProviderCase(
            provider=provider, model="echo", open_upstream_streams=lambda: provider.active_streams
        )


@pytest.fixture(params=list(CONTRACT_CASES))
def case(request: pytest.FixtureRequest) -> Iterator[ProviderCase]:
    with CONTRACT_CASES[request.param]() as provider_case:
        yield provider_case


def run_with(case: ProviderCase, body: Callable[[Provider], Awaitable[None]]) -> None:
    """Run `body` under a timeout guard, then release the provider on the same event loop."""

    async def guarded() -> None:
        try:
            await body(case.provider)
        finally:
            await case.provider.aclose()

    run_async(guarded)


async def collect(provider: Provider, request: ChatRequest) -> list[StreamItem]:
    return [item async for item in provider.stream_chat(request)]


def answer_text(items: list[StreamItem]) -> str:
    return "".join(item.text for item in items if isinstance(item, TextDelta))


def test_is_a_provider_with_a_name_and_string_model_ids(case: ProviderCase) -> None:
    provider = case.provider

    assert isinstance(provider, Provider)
    assert isinstance(provider.name, str)
    assert provider.name
    models = provider.models()
    assert not isinstance(models, str)
    assert all(isinstance(model, str) for model in models)


def test_streams_text_deltas_then_exactly_one_finish_last(case: ProviderCase) -> None:
    async def body(provider: Provider) -> None:
        items = await collect(provider, case.request())

        assert len(items) >= 2
        assert isinstance(items[0], TextDelta)
        assert isinstance(items[-1], Finish)
        assert all(isinstance(item, TextDelta) for item in items[:-1])
        assert all(item.text for item in items[:-1] if isinstance(item, TextDelta))

    run_with(case, body)


def test_finish_reports_usage(case: ProviderCase) -> None:
    async def body(provider: Provider) -> None:
        finish = (await collect(provider, case.request()))[-1]

        assert isinstance(finish, Finish)
        assert finish.reason in ("stop", "length", "content_filter")
        assert finish.usage is not None
        assert finish.usage.prompt_tokens >= 0
        assert finish.usage.completion_tokens >= 1
        assert finish.usage.total_tokens == finish.usage.prompt_tokens + finish.usage.completion_tokens

    run_with(case, body)


def test_same_request_streams_the_same_text(case: ProviderCase) -> None:
    if not case.deterministic:
        pytest.skip("this implementation does not promise deterministic answers")

    async def body(provider: Provider) -> None:
        first = await collect(provider, case.request())
        second = await collect(provider, case.request())

        assert answer_text(first) == answer_text(second)
        assert answer_text(first)

    run_with(case, body)


def test_every_delta_gives_other_tasks_a_turn(case: ProviderCase) -> None:
    # A provider that produced tokens without suspending would starve every other stream on the loop.
    async def body(provider: Provider) -> None:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0)
                ticks += 1

        ticking = asyncio.create_task(ticker())
        seen_at: list[int] = []
        try:
            async for item in provider.stream_chat(case.request()):
                if isinstance(item, TextDelta):
                    seen_at.append(ticks)
        finally:
            ticking.cancel()

        assert len(seen_at) >= 2
        assert all(later > earlier for earlier, later in itertools.pairwise(seen_at))

    run_with(case, body)


def test_closing_the_iterator_early_releases_the_upstream(case: ProviderCase) -> None:
    async def body(provider: Provider) -> None:
        items = provider.stream_chat(case.request())
        first = await anext(items)
        second = await anext(items)
        assert isinstance(first, TextDelta)
        assert isinstance(second, TextDelta)

        await close_iterator(items)

        if case.open_upstream_streams is not None:
            assert case.open_upstream_streams() == 0

    run_with(case, body)


def test_cancelling_the_consuming_task_releases_the_upstream(case: ProviderCase) -> None:
    async def body(provider: Provider) -> None:
        two_deltas = asyncio.Event()
        seen = 0

        async def consume() -> None:
            nonlocal seen
            async for _ in provider.stream_chat(case.request()):
                seen += 1
                if seen == 2:
                    two_deltas.set()

        task = asyncio.create_task(consume())
        await two_deltas.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        if case.open_upstream_streams is not None:
            assert case.open_upstream_streams() == 0

    run_with(case, body)


def test_closing_an_iterator_that_never_started_is_harmless(case: ProviderCase) -> None:
    async def body(provider: Provider) -> None:
        items = provider.stream_chat(case.request())
        await close_iterator(items)

        if case.open_upstream_streams is not None:
            assert case.open_upstream_streams() == 0

    run_with(case, body)
