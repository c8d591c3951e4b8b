"""The OpenAI key from Secrets Manager or an SSM SecureString (moto), resolved once before the settings."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import Any

import boto3
import pytest

from app.lambda_.secrets import OPENAI_API_KEY, ClientFactory, with_secret, with_secrets
from app.settings import Settings, SettingsError

KEY = "sk-from-the-vault-0123456789"


def with_openai_key(
    environ: Mapping[str, str], *, client_factory: ClientFactory | None = None
) -> Mapping[str, str]:
    return with_secret(environ, OPENAI_API_KEY, client_factory=client_factory)


class CountingFactory:
    """boto3.client, counting the clients made: a key must cost one call per instance, not per request."""

    def __init__(self) -> None:
        self.made: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, service: str, **kwargs: Any) -> Any:
        self.made.append((service, kwargs))
        return boto3.client(service, **kwargs)


def test_without_a_secret_the_environment_is_passed_through_untouched() -> None:
    environ = {"PROVIDER": "mock"}

    assert with_openai_key(environ, client_factory=CountingFactory()) is environ


def test_with_the_bedrock_provider_no_openai_key_is_read() -> None:
    factory = CountingFactory()
    environ = {
        "PROVIDER": "bedrock",
        "OPENAI_API_KEY_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:1:secret:x",
    }

    assert with_secrets(environ, client_factory=factory) is environ
    assert factory.made == []


def test_a_plain_secret_becomes_the_openai_key(aws: None) -> None:
    arn = boto3.client("secretsmanager").create_secret(Name="tokenrelay/openai", SecretString=KEY)["ARN"]
    factory = CountingFactory()

    environ = with_openai_key(
        {"OPENAI_API_KEY_SECRET_ARN": arn, "PROVIDER": "openai"}, client_factory=factory
    )
    settings = Settings.from_env(environ)

    assert settings.provider == "openai"
    assert settings.openai_api_key is not None
    assert settings.openai_api_key.reveal() == KEY
    assert factory.made == [("secretsmanager", {"region_name": "eu-west-1"})]


def test_a_json_secret_gives_its_openai_api_key_field(aws: None) -> None:
    client = boto3.client("secretsmanager")
    arn = client.create_secret(Name="tokenrelay/json", SecretString=json.dumps({"OPENAI_API_KEY": KEY}))[
        "ARN"
    ]
    wrong = client.create_secret(Name="tokenrelay/other", SecretString=json.dumps({"api": KEY}))["ARN"]

    assert with_openai_key({"OPENAI_API_KEY_SECRET_ARN": arn})["OPENAI_API_KEY"] == KEY
    with pytest.raises(SettingsError, match="without a OPENAI_API_KEY"):
        with_openai_key({"OPENAI_API_KEY_SECRET_ARN": wrong})


def test_a_secure_string_parameter_becomes_the_openai_key(aws: None) -> None:
    boto3.client("ssm").put_parameter(Name="/tokenrelay/openai-api-key", Value=KEY, Type="SecureString")

    environ = with_openai_key({"OPENAI_API_KEY_SSM_PARAMETER": "/tokenrelay/openai-api-key"})

    assert environ["OPENAI_API_KEY"] == KEY


def test_a_plain_string_parameter_is_refused(aws: None) -> None:
    boto3.client("ssm").put_parameter(Name="/tokenrelay/plain", Value=KEY, Type="String")

    with pytest.raises(SettingsError, match="must be a SecureString"):
        with_openai_key({"OPENAI_API_KEY_SSM_PARAMETER": "/tokenrelay/plain"})


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"OPENAI_API_KEY_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:gone-AbCdEf"},
            r"cannot read the OpenAI key \(ResourceNotFoundException\)",
        ),
        ({"OPENAI_API_KEY_SSM_PARAMETER": "/missing"}, r"cannot read the OpenAI key \(ParameterNotFound\)"),
        (
            {"OPENAI_API_KEY_SECRET_ARN": "arn:x", "OPENAI_API_KEY_SSM_PARAMETER": "/x"},
            "set only one of OPENAI_API_KEY_SECRET_ARN and OPENAI_API_KEY_SSM_PARAMETER",
        ),
        (
            {"OPENAI_API_KEY_SSM_PARAMETER": "/x", "OPENAI_API_KEY": "sk-plain"},
            "keep the OpenAI key in one place",
        ),
    ],
)
def test_a_key_that_cannot_be_had_stops_the_start_up_naming_the_variable(
    aws: None, environ: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        with_openai_key(environ)


def test_the_key_never_reaches_a_log_or_the_process_environment(
    aws: None, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    arn = boto3.client("secretsmanager").create_secret(Name="tokenrelay/logged", SecretString=KEY)["ARN"]
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    # What Lambda's log-level control does to the root logger with AWS_LAMBDA_LOG_LEVEL=DEBUG.
    caplog.set_level(logging.DEBUG)

    from app.lambda_.buffered import build_handler

    handler = build_handler({"OPENAI_API_KEY_SECRET_ARN": arn, "PROVIDER": "openai", "LOG_LEVEL": "DEBUG"})
    try:
        assert KEY not in caplog.text
        assert logging.getLogger("botocore").level == logging.NOTSET  # quiet only while fetching the key
        assert "OPENAI_API_KEY" not in os.environ
    finally:
        handler.close()


def test_the_api_keys_come_from_their_own_secret_like_the_openai_key(aws: None) -> None:
    # A public function URL's Bearer keys are as secret as the upstream key: not a plain variable either.
    arn = boto3.client("secretsmanager").create_secret(Name="tokenrelay/api-keys", SecretString="k-1, k-2")[
        "ARN"
    ]
    boto3.client("ssm").put_parameter(Name="/tokenrelay/api-keys", Value="k-3", Type="SecureString")

    from_secret = Settings.from_env(with_secrets({"API_KEYS_SECRET_ARN": arn}))
    from_parameter = Settings.from_env(with_secrets({"API_KEYS_SSM_PARAMETER": "/tokenrelay/api-keys"}))

    assert [key.reveal() for key in from_secret.api_keys] == ["k-1", "k-2"]
    assert [key.reveal() for key in from_parameter.api_keys] == ["k-3"]
    with pytest.raises(SettingsError, match="API_KEYS is set as well as API_KEYS_SECRET_ARN"):
        with_secrets({"API_KEYS_SECRET_ARN": arn, "API_KEYS": "plain"})


def test_both_secrets_are_read_at_start_up(aws: None) -> None:
    client = boto3.client("secretsmanager")
    openai = client.create_secret(Name="tokenrelay/openai-2", SecretString=KEY)["ARN"]
    keys = client.create_secret(Name="tokenrelay/keys-2", SecretString=json.dumps({"API_KEYS": "k-9"}))["ARN"]
    factory = CountingFactory()

    environ = with_secrets(
        {"OPENAI_API_KEY_SECRET_ARN": openai, "API_KEYS_SECRET_ARN": keys}, client_factory=factory
    )

    assert (environ["OPENAI_API_KEY"], environ["API_KEYS"]) == (KEY, "k-9")
    assert [service for service, _ in factory.made] == ["secretsmanager", "secretsmanager"]
