"""The one reader of the environment: defaults, parsing, and start-up failures that name the variable."""

from __future__ import annotations

import pytest

from app.__main__ import main
from app.settings import Secret, Settings, SettingsError


def test_an_empty_environment_serves_the_mock_with_documented_defaults() -> None:
    settings = Settings.from_env({})

    assert settings == Settings()
    assert (settings.provider, settings.default_model) == ("mock", "mock")
    assert settings.heartbeat_interval_s == 15.0
    assert settings.api_keys == ()
    assert settings.openai_api_key is None
    assert settings.log_prompts is False
    assert settings.host == "127.0.0.1"


def test_every_knob_is_read_and_typed() -> None:
    settings = Settings.from_env(
        {
            "PROVIDER": "OpenAI",
            "OPENAI_API_KEY": " sk-upstream ",
            "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
            "OPENAI_MODELS": "gpt-a, gpt-b,,",
            "DEFAULT_MODEL": "gpt-b",
            "OPENAI_TIMEOUT_S": "2.5",
            "OPENAI_MAX_RETRIES": "0",
            "MOCK_TOKEN_DELAY_MS": "30",
            "HEARTBEAT_INTERVAL_S": "0.5",
            "STREAM_IDLE_TIMEOUT_S": "7",
            "STREAM_DEADLINE_S": "90",
            "STREAM_SEND_TIMEOUT_S": "4",
            "REQUEST_HEAD_TIMEOUT_S": "3",
            "REQUEST_BODY_TIMEOUT_S": "6",
            "KEEP_ALIVE_TIMEOUT_S": "9",
            "MAX_TOKENS_LIMIT": "256",
            "MAX_BODY_BYTES": "2048",
            "API_KEYS": "k1, k2",
            "LOG_LEVEL": "debug",
            "LOG_PROMPTS": "yes",
            "HOST": "0.0.0.0",
            "PORT": "9000",
        }
    )

    assert settings.provider == "openai"
    assert settings.openai_api_key == Secret("sk-upstream")
    assert settings.openai_base_url == "http://127.0.0.1:9/v1"
    assert settings.openai_models == ("gpt-a", "gpt-b")
    assert settings.default_model == "gpt-b"
    assert (settings.openai_timeout_s, settings.openai_max_retries) == (2.5, 0)
    assert settings.mock_token_delay_ms == 30
    assert (settings.heartbeat_interval_s, settings.stream_idle_timeout_s, settings.stream_deadline_s) == (
        0.5,
        7.0,
        90.0,
    )
    assert settings.stream_send_timeout_s == 4.0
    assert (settings.request_head_timeout_s, settings.request_body_timeout_s) == (3.0, 6.0)
    assert settings.keep_alive_timeout_s == 9
    assert (settings.max_tokens_limit, settings.max_body_bytes) == (256, 2048)
    assert settings.api_keys == (Secret("k1"), Secret("k2"))
    assert (settings.log_level, settings.log_prompts) == ("DEBUG", True)
    assert (settings.host, settings.port) == ("0.0.0.0", 9000)


def test_an_openai_key_selects_the_openai_provider_and_its_default_model() -> None:
    settings = Settings.from_env({"OPENAI_API_KEY": "sk-x"})
    assert (settings.provider, settings.default_model) == ("openai", "gpt-4o-mini")
    assert Settings.from_env({"OPENAI_API_KEY": "sk-x", "OPENAI_MODELS": "m1,m2"}).default_model == "m1"
    assert Settings.from_env({"OPENAI_API_KEY": "sk-x", "PROVIDER": "mock"}).provider == "mock"


def test_bedrock_models_are_names_for_model_ids_or_ids_and_arns_as_their_own_names() -> None:
    arn = "arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.amazon.nova-lite-v1:0"
    settings = Settings.from_env(
        {"PROVIDER": "bedrock", "BEDROCK_MODELS": f"haiku=anthropic.claude-3-5-haiku-20241022-v1:0, {arn}"}
    )
    assert settings.provider == "bedrock"
    assert settings.bedrock_models == (("haiku", "anthropic.claude-3-5-haiku-20241022-v1:0"), (arn, arn))
    assert settings.default_model == "haiku"
    assert settings.bedrock_region is None


def test_the_bedrock_region_is_bedrock_region_then_the_lambda_region() -> None:
    base = {"PROVIDER": "bedrock", "BEDROCK_MODELS": "m"}
    assert Settings.from_env({**base, "AWS_REGION": "eu-west-3"}).bedrock_region == "eu-west-3"
    both = {**base, "AWS_REGION": "eu-west-3", "BEDROCK_REGION": "us-east-1"}
    assert Settings.from_env(both).bedrock_region == "us-east-1"


@pytest.mark.parametrize(
    ("environ", "names"),
    [
        ({"PROVIDER": "anthropic"}, "PROVIDER"),
        ({"PROVIDER": "openai"}, "OPENAI_API_KEY"),
        ({"DEFAULT_MODEL": "gpt-4o"}, "DEFAULT_MODEL"),
        ({"OPENAI_API_KEY": "k", "OPENAI_MODELS": "a,b", "DEFAULT_MODEL": "c"}, "DEFAULT_MODEL"),
        ({"OPENAI_API_KEY": "k", "OPENAI_BASE_URL": "ftp://x"}, "OPENAI_BASE_URL"),
        ({"HEARTBEAT_INTERVAL_S": "soon"}, "HEARTBEAT_INTERVAL_S"),
        ({"HEARTBEAT_INTERVAL_S": "0"}, "HEARTBEAT_INTERVAL_S"),
        ({"HEARTBEAT_INTERVAL_S": "nan"}, "HEARTBEAT_INTERVAL_S"),
        ({"STREAM_DEADLINE_S": "nan"}, "STREAM_DEADLINE_S"),
        ({"STREAM_IDLE_TIMEOUT_S": "inf"}, "STREAM_IDLE_TIMEOUT_S"),
        ({"OPENAI_TIMEOUT_S": "1e400"}, "OPENAI_TIMEOUT_S"),
        ({"STREAM_IDLE_TIMEOUT_S": "-1"}, "STREAM_IDLE_TIMEOUT_S"),
        ({"STREAM_SEND_TIMEOUT_S": "0"}, "STREAM_SEND_TIMEOUT_S"),
        ({"MOCK_TOKEN_DELAY_MS": "1.5"}, "MOCK_TOKEN_DELAY_MS"),
        ({"MOCK_TOKEN_DELAY_MS": "-1"}, "MOCK_TOKEN_DELAY_MS"),
        ({"MAX_TOKENS_LIMIT": "0"}, "MAX_TOKENS_LIMIT"),
        ({"MAX_BODY_BYTES": "100"}, "MAX_BODY_BYTES"),
        ({"OPENAI_MAX_RETRIES": "-1"}, "OPENAI_MAX_RETRIES"),
        ({"PORT": "70000"}, "PORT"),
        ({"PORT": "http"}, "PORT"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"LOG_PROMPTS": "maybe"}, "LOG_PROMPTS"),
        ({"PROVIDER": "bedrock"}, "BEDROCK_MODELS"),
        ({"PROVIDER": "bedrock", "BEDROCK_MODELS": "a=x,a=y"}, "BEDROCK_MODELS"),
        ({"PROVIDER": "bedrock", "BEDROCK_MODELS": "=x"}, "BEDROCK_MODELS"),
        ({"PROVIDER": "bedrock", "BEDROCK_MODELS": "a=x", "DEFAULT_MODEL": "x"}, "DEFAULT_MODEL"),
        (
            {"PROVIDER": "bedrock", "BEDROCK_MODELS": "a=x", "BEDROCK_MAX_RETRIES": "-1"},
            "BEDROCK_MAX_RETRIES",
        ),
    ],
)
def test_a_bad_setting_fails_naming_the_variable(environ: dict[str, str], names: str) -> None:
    with pytest.raises(SettingsError, match=names):
        Settings.from_env(environ)


def test_setting_errors_never_echo_keys() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"OPENAI_API_KEY": "sk-never-echo", "OPENAI_BASE_URL": "sk-never-echo-url"})
    assert "sk-never-echo" not in str(caught.value)


def test_secrets_hide_themselves_everywhere_but_reveal() -> None:
    settings = Settings.from_env({"OPENAI_API_KEY": "sk-hidden-upstream", "API_KEYS": "client-hidden-key"})

    for shown in (repr(settings), str(settings), repr(settings.api_keys), f"{settings.openai_api_key}"):
        assert "sk-hidden-upstream" not in shown
        assert "client-hidden-key" not in shown
    assert settings.openai_api_key is not None
    assert settings.openai_api_key.reveal() == "sk-hidden-upstream"
    assert Secret("a") != Secret("b")
    assert Secret("a") != "a"


def test_the_entry_point_refuses_to_start_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("PROVIDER", "OPENAI_API_KEY", "DEFAULT_MODEL", "OPENAI_MODELS", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STREAM_DEADLINE_S", "forever")

    assert main() == 2

    err = capsys.readouterr().err
    assert err.startswith("tokenrelay: configuration error: STREAM_DEADLINE_S=")
    assert "Traceback" not in err


def test_metrics_are_off_by_default_and_emf_is_on_by_default_on_lambda(tmp_path: object) -> None:
    plain = Settings.from_env({})
    on_lambda = Settings.from_env({"AWS_LAMBDA_FUNCTION_NAME": "tokenrelay-stream"})
    chosen = Settings.from_env(
        {"AWS_LAMBDA_FUNCTION_NAME": "f", "METRICS_EMF": "false", "METRICS": "true"}
        | {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    )

    assert (plain.metrics, plain.metrics_emf, plain.prometheus_multiproc_dir) == (False, False, None)
    assert on_lambda.metrics_emf is True
    assert (chosen.metrics, chosen.metrics_emf, chosen.prometheus_multiproc_dir) == (
        True,
        False,
        str(tmp_path),
    )


@pytest.mark.parametrize(
    ("environ", "names"),
    [
        ({"METRICS": "sometimes"}, "METRICS='sometimes' is not a boolean"),
        (
            {"PROMETHEUS_MULTIPROC_DIR": "/nonexistent/prometheus"},
            "PROMETHEUS_MULTIPROC_DIR=.* not an existing",
        ),
    ],
)
def test_a_bad_metrics_setting_fails_naming_the_variable(environ: dict[str, str], names: str) -> None:
    with pytest.raises(SettingsError, match=names):
        Settings.from_env(environ)
