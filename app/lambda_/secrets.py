"""The OpenAI key from AWS Secrets Manager or an SSM SecureString, fetched once when an instance starts.

Deployment templates name the secret (`OPENAI_API_KEY_SECRET_ARN` or `OPENAI_API_KEY_SSM_PARAMETER`)
instead of putting the key into the function's environment, where anyone allowed to read the function's
configuration would see it. The key joins a copy of the environment that goes to `Settings.from_env`;
it is never logged and never written back to `os.environ`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

import msgspec

from app.settings import SettingsError

SECRET_ARN_VARIABLE: Final = "OPENAI_API_KEY_SECRET_ARN"  # noqa: S105 - a variable name
SSM_PARAMETER_VARIABLE: Final = "OPENAI_API_KEY_SSM_PARAMETER"
KEY_VARIABLE: Final = "OPENAI_API_KEY"

# boto3.client, or a stand-in with its signature.
ClientFactory = Callable[..., Any]


def with_openai_api_key(
    environ: Mapping[str, str], *, client_factory: ClientFactory | None = None
) -> Mapping[str, str]:
    """`environ`, plus `OPENAI_API_KEY` read from the secret it names; `environ` itself when it names none."""
    secret_id = environ.get(SECRET_ARN_VARIABLE, "").strip()
    parameter = environ.get(SSM_PARAMETER_VARIABLE, "").strip()
    if not secret_id and not parameter:
        return environ
    if secret_id and parameter:
        raise SettingsError(f"set only one of {SECRET_ARN_VARIABLE} and {SSM_PARAMETER_VARIABLE}")
    variable, name = (SECRET_ARN_VARIABLE, secret_id) if secret_id else (SSM_PARAMETER_VARIABLE, parameter)
    if environ.get(KEY_VARIABLE, "").strip():
        raise SettingsError(f"{KEY_VARIABLE} is set as well as {variable}: keep the key in one place")
    if client_factory is None:
        # Imported only when a secret is configured: boto3 adds ~0.2 s to a cold start.
        import boto3

        client_factory = boto3.client
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        with _botocore_quiet():
            if secret_id:
                key = _from_secrets_manager(client_factory("secretsmanager", **_region_of(name)), name)
            else:
                key = _from_parameter_store(client_factory("ssm", **_region_of(name)), name)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "ClientError")
        raise SettingsError(f"{variable}={name!r}: cannot read the OpenAI key ({code})") from exc
    except BotoCoreError as exc:
        raise SettingsError(
            f"{variable}={name!r}: cannot read the OpenAI key ({type(exc).__name__})"
        ) from exc
    if not key.strip():
        raise SettingsError(f"{variable}={name!r} holds an empty value")
    return {**environ, KEY_VARIABLE: key.strip()}


def _from_secrets_manager(client: Any, secret_id: str) -> str:
    value = client.get_secret_value(SecretId=secret_id).get("SecretString")
    if not isinstance(value, str):
        raise SettingsError(f"{SECRET_ARN_VARIABLE}={secret_id!r} is a binary secret; store the key as text")
    if not value.lstrip().startswith("{"):
        return value
    # The console's key/value secrets are JSON objects.
    try:
        fields = msgspec.json.decode(value, type=dict[str, Any])
    except msgspec.DecodeError:
        raise SettingsError(f"{SECRET_ARN_VARIABLE}={secret_id!r} holds malformed JSON") from None
    key = fields.get(KEY_VARIABLE)
    if not isinstance(key, str):
        raise SettingsError(
            f"{SECRET_ARN_VARIABLE}={secret_id!r} is a JSON secret without a {KEY_VARIABLE} text field"
        )
    return key


def _from_parameter_store(client: Any, name: str) -> str:
    parameter = client.get_parameter(Name=name, WithDecryption=True)["Parameter"]
    if parameter.get("Type") != "SecureString":
        raise SettingsError(f"{SSM_PARAMETER_VARIABLE}={name!r} must be a SecureString (it is not encrypted)")
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
