"""The app factory: providers from settings, the lifespan, and errors nobody planned for."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pytest
from litestar.testing import TestClient

from app.factory import build_provider, create_app
from app.settings import Secret, Settings, SettingsError
from providers.mock import MockProvider
from tests.app.conftest import AppFactory, LogCapture
from tests.app.helpers import ScriptedProvider, user

_ROOT = Path(__file__).resolve().parents[2]


def test_the_mock_is_built_when_no_key_is_set() -> None:
    provider = build_provider(Settings.from_env({"MOCK_TOKEN_DELAY_MS": "5"}))
    assert isinstance(provider, MockProvider)
    assert provider.models() == ("mock",)


def test_the_openai_provider_is_built_from_its_settings() -> None:
    from providers.openai import OpenAIProvider

    settings = Settings.from_env({"OPENAI_API_KEY": "sk-x", "OPENAI_MODELS": "gpt-a,gpt-b"})
    provider = build_provider(settings)
    assert isinstance(provider, OpenAIProvider)
    assert (provider.name, tuple(provider.models())) == ("openai", ("gpt-a", "gpt-b"))


def test_the_bedrock_provider_is_built_from_its_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from providers.bedrock import BedrockProvider
    from tests.support.fake_bedrock import offline_bedrock_credentials

    for name, value in offline_bedrock_credentials().items():
        monkeypatch.setenv(name, value)
    environ = {
        "PROVIDER": "bedrock",
        "BEDROCK_MODELS": "nova=amazon.nova-lite-v1:0,m2",
        "BEDROCK_REGION": "eu-west-1",
    }
    settings = Settings.from_env(environ)
    provider = build_provider(settings)
    assert isinstance(provider, BedrockProvider)
    assert (provider.name, tuple(provider.models())) == ("bedrock", ("nova", "m2"))


def test_create_app_reads_the_environment_when_given_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PROVIDER", "OPENAI_API_KEY", "DEFAULT_MODEL", "API_KEYS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MOCK_TOKEN_DELAY_MS", "0")
    with TestClient(create_app()) as client:
        assert client.get("/healthz").json()["provider"] == "mock"
        assert client.post("/v1/stream", json={"messages": user("hi")}).status_code == 200

    monkeypatch.setenv("HEARTBEAT_INTERVAL_S", "often")
    with pytest.raises(SettingsError, match="HEARTBEAT_INTERVAL_S"):
        create_app()


def test_the_lifespan_closes_the_provider(make_app: AppFactory) -> None:
    provider = ScriptedProvider([])
    with TestClient(make_app(provider)):
        assert not provider.aclosed
    assert provider.aclosed


class _BrokenModels(ScriptedProvider):
    async def list_models(self) -> Sequence[str]:
        raise RuntimeError("internal detail: sk-do-not-show")


def test_an_unexpected_exception_is_a_bare_500(make_app: AppFactory, log_capture: LogCapture) -> None:
    with TestClient(make_app(_BrokenModels([])), raise_server_exceptions=False) as client:
        response = client.get("/v1/models")

    assert response.status_code == 500
    assert response.json() == {
        "error": {
            "message": "internal server error",
            "type": "server_error",
            "code": "internal_error",
            "param": None,
        }
    }
    assert "sk-do-not-show" not in response.text
    [logged] = log_capture.events("unhandled_error")
    assert (logged["exc_type"], logged["path"]) == ("RuntimeError", "/v1/models")
    assert "sk-do-not-show" not in repr(logged)


def test_a_provider_bug_before_the_first_token_is_a_bare_500(make_app: AppFactory) -> None:
    with TestClient(make_app(ScriptedProvider([ValueError("secret internals")]))) as client:
        response = client.post("/v1/stream", json={"messages": user("hi")})
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert "secret internals" not in response.text


def test_the_openai_settings_never_leak_into_responses() -> None:
    settings = Settings(provider="mock", openai_api_key=Secret("sk-settings-secret"))
    with TestClient(create_app(settings, MockProvider())) as client:
        texts = [client.get(path).text for path in ("/healthz", "/v1/models", "/schema/openapi.json")]
    assert all("sk-settings-secret" not in text for text in texts)


# Every module of the service core, found rather than listed, so that a new one is checked too; the Lambda
# host (app/lambda_/) reads its platform's variables by design.
_CORE_MODULES = sorted(
    str(path.relative_to(_ROOT))
    for pattern in (
        "app/*.py",
        "app/stream/**/*.py",
        "app/http/**/*.py",
        "app/metrics/*.py",
        "providers/*.py",
    )
    for path in _ROOT.glob(pattern)
    if path.name != "settings.py"
)


@pytest.mark.parametrize("module", _CORE_MODULES)
def test_the_service_core_reads_its_configuration_only_through_settings(module: str) -> None:
    # Host adapters (the Lambda runtime) read their platform's variables and hand the rest to
    # `Settings.from_env`; the service itself must not look at the environment anywhere else.
    source = (_ROOT / module).read_text()
    assert not re.search(r"os\.environ|getenv\(", source)
    assert re.search(r"os\.environ", (_ROOT / "app/settings.py").read_text())
