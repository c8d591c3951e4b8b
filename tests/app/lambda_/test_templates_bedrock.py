"""The templates with Provider=bedrock (template.yaml) and provider=bedrock (serverless.yml): the role may
invoke exactly the listed models, no OpenAI key is granted or read, and every provider lints clean.

The helpers of test_templates.py transform and lint; the intrinsic functions of the output are then
evaluated for a set of parameter values (`resolve`), so that the test reads the ARNs CloudFormation
would write into the policy rather than the expression that builds them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.app.lambda_.test_templates import _KEYS_SECRET, _serverless_package, lint, transform
from tests.support.aws import sam_template

_MODEL_IDS = "anthropic.claude-3-5-haiku-20241022-v1:0,us.amazon.nova-lite-v1:0"
_PSEUDO = {"AWS::Partition": "aws", "AWS::Region": "eu-west-1", "AWS::AccountId": "123456789012"}
_EXPECTED_ARNS = [
    "arn:aws:bedrock:*::foundation-model/anthropic.claude-3-5-haiku-20241022-v1:0",
    "arn:aws:bedrock:*::foundation-model/us.amazon.nova-lite-v1:0",
    "arn:aws:bedrock:*:*:inference-profile/anthropic.claude-3-5-haiku-20241022-v1:0",
    "arn:aws:bedrock:*:*:inference-profile/us.amazon.nova-lite-v1:0",
]
_NO_VALUE = object()


def resolve(template: Mapping[str, Any], node: Any, values: Mapping[str, str]) -> Any:
    """`node` with its intrinsic functions evaluated, parameters from `values` or their defaults."""
    parameters = {name: p.get("Default") for name, p in template.get("Parameters", {}).items()}
    parameters.update(values)

    def ref(name: str) -> Any:
        if name in values:  # a pseudo parameter too, such as another AWS::Partition
            return values[name]
        return _PSEUDO[name] if name in _PSEUDO else parameters.get(name, f"<{name}>")

    def condition(name: str) -> bool:
        return bool(walk(template["Conditions"][name]))

    def walk(item: Any) -> Any:
        if isinstance(item, list):
            return [value for value in map(walk, item) if value is not _NO_VALUE]
        if not isinstance(item, dict):
            return item
        if len(item) == 1:
            [(key, argument)] = item.items()
            if key == "Ref":
                return _NO_VALUE if argument == "AWS::NoValue" else ref(argument)
            if key == "Fn::Sub":
                text, names = (
                    (argument, {}) if isinstance(argument, str) else (argument[0], walk(argument[1]))
                )
                return re.sub(r"\$\{([^}]+)\}", lambda m: str(names.get(m[1], ref(m[1]))), text)
            if key == "Fn::Join":
                return walk(argument[0]).join(walk(argument[1]))
            if key == "Fn::Split":
                return walk(argument[1]).split(walk(argument[0]))
            if key == "Fn::If":
                return walk(argument[1] if condition(argument[0]) else argument[2])
            if key == "Fn::Equals":
                return walk(argument[0]) == walk(argument[1])
            if key == "Fn::Not":
                return not walk(argument[0])
            if key == "Fn::And":
                return all(walk(argument))
            if key == "Fn::Or":
                return any(walk(argument))
            if key == "Condition":
                return condition(argument)
        return {
            key: value for key, value in ((k, walk(v)) for k, v in item.items()) if value is not _NO_VALUE
        }

    return walk(node)


def statements(template: Mapping[str, Any], role: str, values: Mapping[str, str]) -> list[dict[str, Any]]:
    policies = resolve(template, template["Resources"][role]["Properties"]["Policies"], values)
    return [statement for policy in policies for statement in policy["PolicyDocument"]["Statement"]]


def rule_holds(template: Mapping[str, Any], name: str, values: Mapping[str, str]) -> bool:
    rule = template["Rules"][name]
    if "RuleCondition" in rule and not resolve(template, rule["RuleCondition"], values):
        return True
    return all(resolve(template, assertion["Assert"], values) for assertion in rule["Assertions"])


@pytest.fixture
def sam(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    return transform(sam_template(), monkeypatch)


@pytest.mark.parametrize("provider", ["mock", "openai", "bedrock"])
def test_every_provider_transforms_and_lints_clean(provider: str, monkeypatch: pytest.MonkeyPatch) -> None:
    template = sam_template()
    template["Parameters"]["Provider"]["Default"] = provider
    if provider == "bedrock":
        template["Parameters"]["BedrockModelIds"]["Default"] = _MODEL_IDS
    if provider == "openai":
        template["Parameters"]["OpenAIApiKeySecretArn"]["Default"] = _KEYS_SECRET
    assert lint(transform(template, monkeypatch)) == []


def test_with_bedrock_both_roles_may_invoke_exactly_the_listed_models(sam: dict[str, Any]) -> None:
    values = {"Provider": "bedrock", "BedrockModelIds": _MODEL_IDS}
    for role in ("StreamFunctionRole", "BufferedFunctionRole"):
        granted = statements(sam, role, values)
        [bedrock] = [statement for statement in granted if statement["Sid"] == "BedrockInvoke"]
        assert bedrock["Action"] == "bedrock:InvokeModelWithResponseStream"
        assert bedrock["Resource"] == _EXPECTED_ARNS
        # The role is the credential: nothing of OpenAI's key is granted.
        assert not [statement for statement in granted if statement["Sid"].startswith("OpenAIKey")]
    for function in ("StreamFunction", "BufferedFunction"):
        variables = resolve(sam, sam["Resources"][function]["Properties"]["Environment"]["Variables"], values)
        assert (variables["PROVIDER"], variables["BEDROCK_MODELS"]) == ("bedrock", _MODEL_IDS)
        assert not any(name.startswith("OPENAI_API_KEY") for name in variables)


def test_in_govcloud_the_arns_are_of_its_partition(sam: dict[str, Any]) -> None:
    values = {"Provider": "bedrock", "BedrockModelIds": _MODEL_IDS, "AWS::Partition": "aws-us-gov"}
    [bedrock] = [s for s in statements(sam, "StreamFunctionRole", values) if s["Sid"] == "BedrockInvoke"]
    assert bedrock["Resource"] == [arn.replace("arn:aws:", "arn:aws-us-gov:") for arn in _EXPECTED_ARNS]


@pytest.mark.parametrize("provider", ["mock", "openai"])
def test_other_providers_get_no_bedrock_grant_and_no_bedrock_models(
    sam: dict[str, Any], provider: str
) -> None:
    values = {"Provider": provider, "OpenAIApiKeySecretArn": _KEYS_SECRET}
    granted = statements(sam, "StreamFunctionRole", values)
    assert "bedrock:" not in json.dumps(granted)
    variables = resolve(
        sam, sam["Resources"]["StreamFunction"]["Properties"]["Environment"]["Variables"], values
    )
    assert "BEDROCK_MODELS" not in variables


def test_bedrock_needs_model_ids_and_refuses_an_openai_key(sam: dict[str, Any]) -> None:
    assert rule_holds(sam, "BedrockNeedsModelIds", {"Provider": "bedrock", "BedrockModelIds": _MODEL_IDS})
    assert not rule_holds(sam, "BedrockNeedsModelIds", {"Provider": "bedrock"})
    with_key = {"Provider": "bedrock", "BedrockModelIds": _MODEL_IDS, "OpenAIApiKeySecretArn": _KEYS_SECRET}
    assert not rule_holds(sam, "BedrockNeedsModelIds", with_key)
    assert rule_holds(sam, "BedrockNeedsModelIds", {"Provider": "mock"})
    pattern = re.compile(sam["Parameters"]["BedrockModelIds"]["AllowedPattern"])
    assert pattern.fullmatch(_MODEL_IDS)
    assert not pattern.fullmatch("a, b")  # a space would end up inside an ARN


def test_serverless_with_bedrock_grants_exactly_the_listed_models(tmp_path: Path) -> None:
    done, output = _serverless_package(
        tmp_path, "urlAuth=aws_iam", "provider=bedrock", f"bedrockModelIds={_MODEL_IDS}"
    )
    assert done.returncode == 0, done.stdout + done.stderr

    generated = json.loads(output.read_text())
    assert lint(generated) == []
    policy = generated["Resources"]["BedrockInvokePolicy"]["Properties"]
    assert policy["Roles"] == [{"Ref": "IamRoleLambdaExecution"}]
    [statement] = resolve(generated, policy["PolicyDocument"]["Statement"], {})
    assert statement["Action"] == "bedrock:InvokeModelWithResponseStream"
    assert statement["Resource"] == _EXPECTED_ARNS
    variables = generated["Resources"]["StreamLambdaFunction"]["Properties"]["Environment"]["Variables"]
    assert (variables["PROVIDER"], variables["BEDROCK_MODELS"]) == ("bedrock", _MODEL_IDS)


def test_serverless_refuses_bedrock_without_model_ids_and_grants_nothing_otherwise(tmp_path: Path) -> None:
    refused, _ = _serverless_package(tmp_path / "refused", "urlAuth=aws_iam", "provider=bedrock")
    assert refused.returncode != 0
    assert "aProviderBedrockNeedsTheParamBedrockModelIds" in refused.stdout + refused.stderr

    done, output = _serverless_package(tmp_path / "mock", "urlAuth=aws_iam")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "bedrock:" not in output.read_text()
