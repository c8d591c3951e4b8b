"""Fixtures of the HTTP tests that talk to a real server with real clients."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from app.settings import Secret
from providers.openai import OpenAIProvider
from tests.app.conftest import AppFactory, ServeFactory


@pytest.fixture(params=["mock", "openai-provider"])
def base_url(request: pytest.FixtureRequest, make_app: AppFactory, serve: ServeFactory) -> Iterator[str]:
    """The `/v1` URL of the app under test: serving the mock, or the OpenAI provider chained to it."""
    with serve(make_app()) as upstream:
        if request.param == "mock":
            yield f"{upstream.base_url}/v1"
            return
        provider = OpenAIProvider(api_key="sk-chained", base_url=f"{upstream.base_url}/v1", max_retries=0)
        chained = make_app(
            provider, provider="openai", openai_api_key=Secret("sk-chained"), default_model="mock"
        )
        with serve(chained) as server:
            yield f"{server.base_url}/v1"


@pytest.fixture
def sdk(base_url: str) -> Iterator[openai.OpenAI]:
    """The openai SDK's client of the app under test (`base_url`)."""
    with openai.OpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=15) as sdk:
        yield sdk
