"""Secrets from AWS Secrets Manager or an SSM SecureString, fetched once when an instance starts.

Deployment templates name where a secret is (`OPENAI_API_KEY_SECRET_ARN`, `API_KEYS_SSM_PARAMETER`, ...)
instead of putting it into the function's environment, where anyone allowed to read the function's
configuration would see it. Two secrets are read this way: the OpenAI key and the service's own API keys
(comma-separated). Each joins a copy of the environment that goes to `Settings.from_env`; it is never logged
and never written back to `os.environ`. (Locally, the plain variables stay the way to set them.)
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from app.settings import SettingsError

# boto3.client, or a stand-in with its signature.
ClientFactory = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class SecretSetting:
    """A setting that may come from a secret store: its variable, and the two that can say where it is."""

    variable: str
    what: str  # for messages: "the OpenAI key"

    @property
    def secret_arn_variable(self) -> str:
        return f"{self.variable}_SECRET_ARN"

    @property
    def ssm_parameter_variable(self) -> str:
        return f"{self.variable}_SSM_PARAMETER"


OPENAI_API_KEY: Final = SecretSetting("OPENAI_API_KEY", "the OpenAI key")
API_KEYS: Final = SecretSetting("API_KEYS", "the API keys")
SECRET_SETTINGS: Final = (OPENAI_API_KEY, API_KEYS)


def with_secrets(
    environ: Mapping[str, str], *, client_factory: ClientFactory | None = None
) -> Mapping[str, str]:
    """`environ`, plus every secret setting read from the store it names; `environ` itself when none does."""
    for setting in SECRET_SETTINGS:
        # The Bedrock provider authenticates as the function's role: no OpenAI key is fetched for it.
        if setting is OPENAI_API_KEY and environ.get("PROVIDER", "").strip().lower() == "bedrock":
            continue
        environ = with_secret(environ, setting, client_factory=client_factory)
    return environ


def with_secret(
    environ: Mapping[str, str], setting: SecretSetting, *, client_factory: ClientFactory | None = None
) -> Mapping[str, str]:
    """`environ`, plus `setting` read from the secret it names; `environ` itself when it names none."""
    secret_id = environ.get(setting.secret_arn_variable, "").strip()
    parameter = environ.get(setting.ssm_parameter_variable, "").strip()
    if not secret_id and not parameter:
        return environ
    if secret_id and parameter:
        raise SettingsError(
            f"set only one of {setting.secret_arn_variable} and {setting.ssm_parameter_variable}"
        )
    if secret_id:
        variable, name = setting.secret_arn_variable, secret_id
    else:
        variable, name = setting.ssm_parameter_variable, parameter
    if environ.get(setting.variable, "").strip():
        raise SettingsError(
            f"{setting.variable} is set as well as {variable}: keep {setting.what} in one place"
        )
    if client_factory is None:
        # Imported only when a secret is configured: boto3 adds ~0.2 s to a cold start.
        import boto3

        client_factory = boto3.client
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        with _botocore_quiet():
            if secret_id:
                client = client_factory("secretsmanager", **_region_of(name))
                value = _from_secrets_manager(client, setting, name)
            else:
                value = _from_parameter_store(client_factory("ssm", **_region_of(name)), setting, name)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "ClientError")
        raise SettingsError(f"{variable}={name!r}: cannot read {setting.what} ({code})") from exc
    except BotoCoreError as exc:
        raise SettingsError(
            f"{variable}={name!r}: cannot read {setting.what} ({type(exc).__name__})"
        ) from exc
    if not value.strip():
        raise SettingsError(f"{variable}={name!r} holds an empty value")
    return {**environ, setting.variable: value.strip()}


def _from_secrets_manager(client: Any, setting: SecretSetting, secret_id: str) -> str:
    variable = setting.secret_arn_variable
    value = client.get_secret_value(SecretId=secret_id).get("SecretString")
    if not isinstance(value, str):
        raise SettingsError(f"{variable}={secret_id!r} is a binary secret; store it as text")
    if not value.lstrip().startswith("{"):
        return value
    # The console's key/value secrets are JSON objects.
    try:
        fields = msgspec.json.decode(value, type=dict[str, Any])
    except msgspec.DecodeError:
        raise SettingsError(f"{variable}={secret_id!r} holds malformed JSON") from None
    found = fields.get(setting.variable)
    if not isinstance(found, str):
        raise SettingsError(
            f"{variable}={secret_id!r} is a JSON secret without a {setting.variable} text field"
        )
    return found


def _from_parameter_store(client: Any, setting: SecretSetting, name: str) -> str:
    parameter = client.get_parameter(Name=name, WithDecryption=True)["Parameter"]
    if parameter.get("Type") != "SecureString":
        raise SettingsError(
            f"{setting.ssm_parameter_variable}={name!r} must be a SecureString (it is not encrypted)"
        )
    value: str = parameter["Value"]
    return value


@contextlib.contextmanager
def _botocore_quiet() -> Iterator[None]:
    """botocore logs whole response bodies at DEBUG, and Lambda's log-level control can set the root
    logger to DEBUG (managed runtime, buffered handler): the secret would land in CloudWatch."""
    logger = logging.getLogger("botocore")
    level = logger.level
    logger.setLevel(max(logging.INFO, logger.getEffectiveLevel()))
    try:
        yield
    finally:
        logger.setLevel(level)


def _region_of(name: str) -> dict[str, str]:
    """A secret named by its ARN may live in another region than the function."""
    parts = name.split(":")
    if name.startswith("arn:") and len(parts) > 3 and parts[3]:
        return {"region_name": parts[3]}
    return {}
