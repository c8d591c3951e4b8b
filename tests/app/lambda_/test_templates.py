"""The deployment templates: template.yaml (SAM) and serverless.yml (Serverless Framework v3).

cfn-lint on a SAM template does not notice a wrong `InvokeMode`, `AuthType` or `Runtime` in SAM's own
properties, so the template is transformed offline with aws-sam-translator, as CloudFormation would,
and the output is linted and read. serverless.yml is packaged offline by Serverless v3 itself into
CloudFormation, which is linted and read the same way.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import stat
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.app.lambda_.fake_runtime_api import ROOT, WRAPPER
from tests.support.aws import sam_template
from tests.support.tools import serverless_cli

WRAPPER_ON_LAMBDA = "/var/task/app/lambda_/bootstrap"


def transform(template: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What CloudFormation's SAM transform makes of `template` (after `sam package` set the code's S3 URI)."""
    from samtranslator.translator.transform import transform as sam_transform

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    template = copy.deepcopy(template)
    template["Globals"]["Function"]["CodeUri"] = "s3://deployment-bucket/tokenrelay.zip"

    class NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    transformed: dict[str, Any] = sam_transform(template, {}, NoManagedPolicies())
    return transformed


def lint(template: dict[str, Any]) -> list[str]:
    """cfn-lint's findings (errors and warnings) on a plain CloudFormation template."""
    from cfnlint.api import ManualArgs
    from cfnlint.api import lint as cfn_lint

    matches = cfn_lint(json.dumps(template), config=ManualArgs(regions=["eu-west-1"]))
    return [f"{m.rule.id} {m.message}" for m in matches]


def resources_of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def url_permissions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The function URL's invoke permissions (not the REST API's, which has its own condition)."""
    permissions = resources_of_type(template, "AWS::Lambda::Permission")
    return {name: p for name, p in permissions.items() if p.get("Condition") != "RestStreaming"}


@pytest.fixture
def sam(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    return transform(sam_template(), monkeypatch)


def test_the_sam_template_transforms_and_lints_clean(sam: dict[str, Any]) -> None:
    assert lint(sam) == []


def test_cfn_lint_passes_on_the_template_as_written() -> None:
    from cfnlint.api import ManualArgs
    from cfnlint.api import lint as cfn_lint

    assert cfn_lint((ROOT / "template.yaml").read_text(), config=ManualArgs(regions=["eu-west-1"])) == []


def test_the_lint_of_the_transformed_template_catches_a_wrong_invoke_mode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    template = sam_template()
    template["Resources"]["StreamFunction"]["Properties"]["FunctionUrlConfig"]["InvokeMode"] = "STREAMING"

    assert any("STREAMING" in finding for finding in lint(transform(template, monkeypatch)))


def test_the_streaming_function_url_streams_on_python_312_arm64(sam: dict[str, Any]) -> None:
    functions = resources_of_type(sam, "AWS::Lambda::Function")
    assert set(functions) == {"StreamFunction", "BufferedFunction"}
    for function in functions.values():
        properties = function["Properties"]
        assert properties["Runtime"] == "python3.12"
        assert properties["Architectures"] == ["arm64"]
        assert properties["Handler"] == "handler.handler"
    [url] = resources_of_type(sam, "AWS::Lambda::Url").values()
    assert url["Properties"]["InvokeMode"] == "RESPONSE_STREAM"
    assert url["Properties"]["AuthType"] == {"Ref": "FunctionUrlAuthType"}
    assert url["Properties"]["TargetFunctionArn"] == {"Ref": "StreamFunctionAliaslive"}
    assert sam["Parameters"]["FunctionUrlAuthType"]["AllowedValues"] == ["NONE", "AWS_IAM"]
    stream_env = functions["StreamFunction"]["Properties"]["Environment"]["Variables"]
    buffered_env = functions["BufferedFunction"]["Properties"]["Environment"]["Variables"]
    assert stream_env["AWS_LAMBDA_EXEC_WRAPPER"] == WRAPPER_ON_LAMBDA
    assert "AWS_LAMBDA_EXEC_WRAPPER" not in buffered_env
    assert sam["Outputs"]["StreamUrl"]["Value"] == {"Fn::GetAtt": ["StreamFunctionUrl", "FunctionUrl"]}


def test_a_public_url_gets_both_invoke_permissions_and_needs_api_keys(sam: dict[str, Any]) -> None:
    permissions = url_permissions(sam)
    assert {p["Condition"] for p in permissions.values()} == {"PublicUrl"}
    assert sorted(p["Properties"]["Action"] for p in permissions.values()) == [
        "lambda:InvokeFunction",
        "lambda:InvokeFunctionUrl",
    ]
    invoke = next(p for p in permissions.values() if p["Properties"]["Action"] == "lambda:InvokeFunction")
    assert invoke["Properties"]["InvokedViaFunctionUrl"] is True
    rule = sam["Rules"]["PublicUrlNeedsApiKeys"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "FunctionUrlAuthType"}, "NONE"]}
    assert '{"Ref": "ApiKeysSecretArn"}' in json.dumps(rule["Assertions"])
    assert '{"Ref": "ApiKeysSsmParameter"}' in json.dumps(rule["Assertions"])


def test_the_api_keys_are_never_in_the_environment_only_where_to_find_them(sam: dict[str, Any]) -> None:
    assert "ApiKeys" not in sam["Parameters"]  # a plain parameter would land in the environment
    for name, function in resources_of_type(sam, "AWS::Lambda::Function").items():
        variables = function["Properties"]["Environment"]["Variables"]
        assert "API_KEYS" not in variables
        assert variables["API_KEYS_SECRET_ARN"]["Fn::If"][0] == "UseApiKeysSecret"
        assert variables["API_KEYS_SSM_PARAMETER"]["Fn::If"][0] == "UseApiKeysParameter"
        statements = json.dumps(sam["Resources"][f"{name}Role"]["Properties"]["Policies"])
        assert '"Sid": "ApiKeysSecret"' in statements
        assert '"Sid": "ApiKeysParameter"' in statements


def test_the_public_url_can_be_given_a_concurrency_ceiling(sam: dict[str, Any]) -> None:
    stream = sam["Resources"]["StreamFunction"]["Properties"]
    assert stream["ReservedConcurrentExecutions"] == {
        "Fn::If": ["HasReservedConcurrency", {"Ref": "ReservedConcurrency"}, {"Ref": "AWS::NoValue"}]
    }
    assert sam["Parameters"]["ReservedConcurrency"]["Default"] == -1


def test_the_openai_key_is_never_in_the_environment_only_where_to_find_it(sam: dict[str, Any]) -> None:
    for function in resources_of_type(sam, "AWS::Lambda::Function").values():
        variables = function["Properties"]["Environment"]["Variables"]
        assert "OPENAI_API_KEY" not in variables
        assert variables["OPENAI_API_KEY_SECRET_ARN"]["Fn::If"][0] == "UseSecretsManager"
        assert variables["OPENAI_API_KEY_SSM_PARAMETER"]["Fn::If"][0] == "UseParameterStore"
    role = sam["Resources"]["StreamFunctionRole"]["Properties"]
    statements = json.dumps(role["Policies"])
    assert '"secretsmanager:GetSecretValue"' in statements
    assert '"ssm:GetParameter"' in statements
    assert "secretsmanager:*" not in statements


def dynamodb_actions_called() -> list[str]:
    """The IAM actions of every DynamoDB operation the cancel registry and the stream log call."""
    called: set[str] = set()
    # Operations are called on the built client (`client.update_item`) or named to `_call` / `_read`
    # (`"put_item"`), since the client is built in the background (app/stream/dynamodb_client.py).
    operation = r'(?:\bclient\.|")([a-z_]+_item|query|scan|transact_[a-z_]+)\b'
    for module in ("app/stream/cancel/dynamodb.py", "app/stream/log/dynamodb.py"):
        called.update(re.findall(operation, (ROOT / module).read_text()))
    return sorted("dynamodb:" + "".join(part.title() for part in name.split("_")) for name in called)


def test_the_iam_actions_are_those_of_the_calls() -> None:
    # Not a Scan nor a Query among them: the table has no range key and no index to read by.
    assert dynamodb_actions_called() == [
        "dynamodb:BatchGetItem",
        "dynamodb:DeleteItem",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
    ]


def test_the_cancel_table_and_log_groups(sam: dict[str, Any]) -> None:
    table = sam["Resources"]["CancelTable"]["Properties"]
    assert table["KeySchema"] == [{"AttributeName": "stream_id", "KeyType": "HASH"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    functions = resources_of_type(sam, "AWS::Lambda::Function")
    assert functions["StreamFunction"]["Properties"]["Environment"]["Variables"]["CANCEL_TABLE"] == {
        "Ref": "CancelTable"
    }
    # The stream log shares the table: one table, items typed by their key.
    assert functions["StreamFunction"]["Properties"]["Environment"]["Variables"]["STREAM_TABLE"] == {
        "Ref": "CancelTable"
    }
    [statement] = [
        statement
        for policy in sam["Resources"]["StreamFunctionRole"]["Properties"]["Policies"]
        # (the others are under an `Fn::If`: the key's source is a parameter)
        for statement in policy.get("PolicyDocument", {}).get("Statement", [])
        if statement.get("Sid") == "CancelTable"
    ]
    assert statement["Resource"] == {"Fn::GetAtt": ["CancelTable", "Arn"]}
    assert sorted(statement["Action"]) == dynamodb_actions_called()
    # A buffered client sees the stream id only once the stream is over: no cancel, no boto3, no table.
    buffered_env = functions["BufferedFunction"]["Properties"]["Environment"]["Variables"]
    assert "CANCEL_TABLE" not in buffered_env
    assert "STREAM_TABLE" not in buffered_env
    buffered_policies = json.dumps(sam["Resources"]["BufferedFunctionRole"]["Properties"]["Policies"])
    assert "dynamodb:" not in buffered_policies
    groups = resources_of_type(sam, "AWS::Logs::LogGroup")
    assert {g["Properties"]["LogGroupName"]["Fn::Sub"] for g in groups.values()} == {
        "/aws/lambda/${StreamFunction}",
        "/aws/lambda/${BufferedFunction}",
    }
    assert all(g["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"} for g in groups.values())


def test_the_wrapper_is_executable_and_survives_packaging(tmp_path: Path) -> None:
    from scripts.lambda_package import copy_sources, trim, zip_tree

    assert os.access(WRAPPER, os.X_OK)
    tracked = subprocess.run(
        ["git", "ls-files", "--stage", "app/lambda_/bootstrap"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert tracked.stdout.startswith("100755 "), "git must record the wrapper as executable"
    tree = tmp_path / "tree"
    tree.mkdir()
    copy_sources(tree)
    trim(tree)
    archive = tmp_path / "lambda.zip"
    zip_tree(tree, archive)
    with zipfile.ZipFile(archive) as bundle:
        mode = bundle.getinfo("app/lambda_/bootstrap").external_attr >> 16
    assert mode & stat.S_IXUSR, "Lambda must be able to exec the wrapper"
    assert mode & stat.S_IXOTH


def serverless_yml() -> dict[str, Any]:
    """serverless.yml as data; its CloudFormation tags read the way SAM reads them (`{"Ref": ...}`)."""
    from samtranslator.yaml_helper import yaml_parse

    parsed: dict[str, Any] = yaml_parse((ROOT / "serverless.yml").read_text())
    return parsed


def test_serverless_yml_declares_the_same_deployment() -> None:
    config = serverless_yml()

    assert config["provider"]["runtime"] == "python3.12"
    assert config["provider"]["architecture"] == "arm64"
    assert config["package"]["artifact"] == "dist/tokenrelay-lambda.zip"  # what `make package` writes
    stream = config["functions"]["stream"]
    assert stream["environment"]["AWS_LAMBDA_EXEC_WRAPPER"] == WRAPPER_ON_LAMBDA
    assert {mode["invokeMode"] for mode in config["custom"]["urls"].values()} == {"RESPONSE_STREAM"}
    assert "OPENAI_API_KEY" not in config["provider"]["environment"]
    table = config["resources"][0]["Resources"]["CancelTable"]["Properties"]
    assert table == sam_template()["Resources"]["CancelTable"]["Properties"]


_KEYS_SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:tokenrelay/api-keys-AbCdEf"


def _serverless_package(tmp_path: Path, *params: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """`serverless package` of serverless.yml, offline, with `--param` values; and where it writes."""
    cli = serverless_cli()
    if cli is None:
        pytest.skip(
            "Serverless v3 is not installed: `make test` installs it with `npm ci` in tests/node (needs npm)"
        )
    project = tmp_path / "project"
    (project / "dist").mkdir(parents=True)
    shutil.copy(ROOT / "serverless.yml", project / "serverless.yml")
    with zipfile.ZipFile(project / "dist" / "tokenrelay-lambda.zip", "w") as bundle:
        bundle.writestr("handler.py", "handler = None\n")  # the real one is `make package`'s, not needed here
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "SLS_TELEMETRY_DISABLED": "1",
        "SLS_NOTIFICATIONS_MODE": "off",
        "AWS_ACCESS_KEY_ID": "offline",
        "AWS_SECRET_ACCESS_KEY": "offline",
    }
    command = [str(cli), "package", *(f"--param={param}" for param in params)]
    done = subprocess.run(
        command, cwd=project, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    return done, project / ".serverless" / "cloudformation-template-update-stack.json"


@pytest.mark.parametrize(
    ("params", "auth_type"),
    [((f"apiKeysSecretArn={_KEYS_SECRET}",), "NONE"), (("urlAuth=aws_iam",), "AWS_IAM")],
    ids=["public, with keys", "aws_iam, no keys needed"],
)
def test_serverless_v3_packages_it_offline_into_clean_cloudformation(
    tmp_path: Path, params: tuple[str, ...], auth_type: str
) -> None:
    done, output = _serverless_package(tmp_path, *params)
    assert done.returncode == 0, done.stdout + done.stderr

    generated = json.loads(output.read_text())
    assert lint(generated) == []
    [url] = resources_of_type(generated, "AWS::Lambda::Url").values()
    assert url["Properties"]["InvokeMode"] == "RESPONSE_STREAM"
    assert url["Properties"]["AuthType"] == auth_type
    function = generated["Resources"]["StreamLambdaFunction"]["Properties"]
    assert (function["Runtime"], function["Architectures"]) == ("python3.12", ["arm64"])
    variables = function["Environment"]["Variables"]
    assert variables["AWS_LAMBDA_EXEC_WRAPPER"] == WRAPPER_ON_LAMBDA
    assert variables["CANCEL_TABLE"] == {"Ref": "CancelTable"}
    assert variables["STREAM_TABLE"] == {"Ref": "CancelTable"}
    assert "API_KEYS" not in variables
    buffered = generated["Resources"]["BufferedLambdaFunction"]["Properties"]["Environment"]["Variables"]
    assert "CANCEL_TABLE" not in buffered
    assert "STREAM_TABLE" not in buffered
    role = generated["Resources"]["IamRoleLambdaExecution"]["Properties"]
    [statement] = [
        statement
        for policy in role["Policies"]
        for statement in policy.get("PolicyDocument", {}).get("Statement", [])
        if statement.get("Sid") == "CancelTable"
    ]
    assert sorted(statement["Action"]) == dynamodb_actions_called()
    assert "ReservedConcurrentExecutions" not in function
    actions = sorted(p["Properties"]["Action"] for p in url_permissions(generated).values())
    if auth_type == "NONE":
        assert variables["API_KEYS_SECRET_ARN"] == _KEYS_SECRET
        assert actions == ["lambda:InvokeFunction", "lambda:InvokeFunctionUrl"]
    else:
        assert actions == []


def test_serverless_refuses_a_public_url_without_api_keys(tmp_path: Path) -> None:
    # Anyone could spend the owner's model budget through it: packaging (and so deploying) fails, saying why.
    done, output = _serverless_package(tmp_path)

    assert done.returncode != 0
    assert "aPublicUrlNeedsTheParamApiKeysSecretArnOrApiKeysSsmParameter" in done.stdout + done.stderr
    assert not output.exists()
    with_parameter, _ = _serverless_package(tmp_path / "ssm", "apiKeysSsmParameter=/tokenrelay/api-keys")
    assert with_parameter.returncode == 0, with_parameter.stdout + with_parameter.stderr


def test_serverless_takes_a_concurrency_ceiling_for_the_public_url(tmp_path: Path) -> None:
    done, output = _serverless_package(tmp_path, f"apiKeysSecretArn={_KEYS_SECRET}", "reservedConcurrency=20")
    assert done.returncode == 0, done.stdout + done.stderr

    function = json.loads(output.read_text())["Resources"]["StreamLambdaFunction"]["Properties"]
    assert function["ReservedConcurrentExecutions"] == 20


def _url_cors(template: dict[str, Any]) -> dict[str, Any]:
    """The function URL's CORS settings when the origins parameter is set (the `Fn::If`'s true branch)."""
    [url] = resources_of_type(template, "AWS::Lambda::Url").values()
    condition, when_set, when_empty = url["Properties"]["Cors"]["Fn::If"]
    assert when_empty == {"Ref": "AWS::NoValue"}
    assert condition == "HasCorsOrigins"
    cors: dict[str, Any] = when_set
    return cors


def test_the_function_url_cors_comes_from_the_same_origins_as_the_app(sam: dict[str, Any]) -> None:
    from app.http.origins import EXPOSED_HEADERS

    cors = _url_cors(sam)
    assert cors["AllowOrigins"] == {"Fn::Split": [",", {"Ref": "CorsAllowOrigins"}]}
    assert cors["AllowMethods"] == ["GET", "POST"]
    assert "authorization" in cors["AllowHeaders"]
    assert cors["ExposeHeaders"] == [header.lower() for header in EXPOSED_HEADERS]
    assert sam["Conditions"]["HasCorsOrigins"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "CorsAllowOrigins"}, ""]}]
    }
    functions = resources_of_type(sam, "AWS::Lambda::Function")
    for name in ("StreamFunction", "BufferedFunction"):
        variables = functions[name]["Properties"]["Environment"]["Variables"]
        assert variables["CORS_ALLOW_ORIGINS"] == {
            "Fn::If": ["HasCorsOrigins", {"Ref": "CorsAllowOrigins"}, {"Ref": "AWS::NoValue"}]
        }
    # Only the URL's function leaves the headers to its host; the buffered twin adds its own.
    stream_env = functions["StreamFunction"]["Properties"]["Environment"]["Variables"]
    buffered_env = functions["BufferedFunction"]["Properties"]["Environment"]["Variables"]
    assert stream_env["CORS_HEADERS_FROM_HOST"] == "true"
    assert "CORS_HEADERS_FROM_HOST" not in buffered_env


def test_serverless_derives_the_url_cors_from_its_origins_parameter(tmp_path: Path) -> None:
    origins = "https://app.example.com,http://localhost:5173"
    done, output = _serverless_package(
        tmp_path, f"apiKeysSecretArn={_KEYS_SECRET}", f"corsAllowOrigins={origins}"
    )
    assert done.returncode == 0, done.stdout + done.stderr

    generated = json.loads(output.read_text())
    assert lint(generated) == []
    cors = _url_cors(generated)
    assert cors["AllowOrigins"] == {"Fn::Split": [",", {"Ref": "CorsAllowOrigins"}]}
    assert generated["Parameters"]["CorsAllowOrigins"]["Default"] == origins
    assert generated["Conditions"]["HasCorsOrigins"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "CorsAllowOrigins"}, ""]}]
    }
    function = generated["Resources"]["StreamLambdaFunction"]["Properties"]["Environment"]["Variables"]
    assert (function["CORS_ALLOW_ORIGINS"], function["CORS_HEADERS_FROM_HOST"]) == (origins, "true")


# --- The API Gateway REST front door (ApiGateway=rest-streaming) ------------------------------------------

API_GATEWAY_TYPES = {
    "AWS::ApiGateway::RestApi",
    "AWS::ApiGateway::Deployment",
    "AWS::ApiGateway::Stage",
    "AWS::ApiGateway::UsagePlan",
    "AWS::ApiGateway::ApiKey",
    "AWS::ApiGateway::UsagePlanKey",
}


def condition_holds(template: dict[str, Any], name: str, parameters: dict[str, str]) -> bool:
    """Evaluate the template's condition `name` as CloudFormation would for these parameter values."""

    def value(node: Any) -> Any:
        if isinstance(node, dict) and len(node) == 1:
            [(function, argument)] = node.items()
            if function == "Ref":
                declared = template["Parameters"][argument]
                return str(parameters.get(argument, declared.get("Default", "")))
            if function == "Condition":
                return condition_holds(template, argument, parameters)
            if function == "Fn::Equals":
                return value(argument[0]) == value(argument[1])
            if function == "Fn::Not":
                return not value(argument[0])
            if function == "Fn::Or":
                return any(value(item) for item in argument)
            if function == "Fn::And":
                return all(value(item) for item in argument)
        if isinstance(node, (str, int)):
            return str(node)
        raise AssertionError(f"cannot evaluate {node!r}")

    return bool(value(template["Conditions"][name]))


def created(template: dict[str, Any], **parameters: str) -> dict[str, str]:
    """The resources CloudFormation would create for these parameter values: logical id -> type."""
    return {
        name: resource["Type"]
        for name, resource in template["Resources"].items()
        if "Condition" not in resource or condition_holds(template, resource["Condition"], parameters)
    }


@pytest.fixture
def sam_rest(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    return transform(sam_template(), monkeypatch)


def _integrations(api: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        path: methods["x-amazon-apigateway-any-method"]["x-amazon-apigateway-integration"]
        for path, methods in api["Properties"]["Body"]["paths"].items()
    }


def _uri_text(uri: dict[str, Any]) -> str:
    """An integration URI's `Fn::Sub` as one string, with its variable map (if any) substituted."""
    sub = uri["Fn::Sub"]
    if isinstance(sub, str):
        return sub
    text, variables = sub
    for name, ref in variables.items():
        text = text.replace("${" + name + "}", "${" + ref["Ref"] + "}")
    return str(text)


@pytest.mark.parametrize("mode", ["none", "rest-streaming"])
def test_the_sam_template_is_clean_with_the_api_gateway_on_and_off(
    monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    # The transform itself does not evaluate conditions; CloudFormation does, with these parameter values.
    from samtranslator.translator.transform import transform as sam_transform

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    template = sam_template()
    template["Globals"]["Function"]["CodeUri"] = "s3://deployment-bucket/tokenrelay.zip"

    class NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    parameters = {"ApiGateway": mode, "ApiKeysSecretArn": _KEYS_SECRET}
    transformed: dict[str, Any] = sam_transform(template, parameters, NoManagedPolicies())
    assert lint(transformed) == []
    assert sam_template()["Parameters"]["ApiGateway"]["Default"] == "none"
    kinds = set(created(transformed, **parameters).values())
    assert bool(kinds & API_GATEWAY_TYPES) == (mode == "rest-streaming")


def test_without_the_api_gateway_nothing_of_it_is_created(sam_rest: dict[str, Any]) -> None:
    resources = created(sam_rest, ApiKeysSecretArn=_KEYS_SECRET)

    assert not set(resources.values()) & API_GATEWAY_TYPES
    assert "StreamApiInvokePermission" not in resources
    assert {"StreamFunction", "StreamFunctionUrl", "BufferedFunction", "CancelTable"} <= set(resources)
    outputs = {name for name, output in sam_rest["Outputs"].items() if "Condition" not in output}
    assert "ApiGatewayUrl" not in outputs


def test_the_rest_api_streams_from_the_live_alias_with_keys_quota_and_throttling(
    sam_rest: dict[str, Any],
) -> None:
    resources = created(sam_rest, ApiGateway="rest-streaming", ApiKeysSecretArn=_KEYS_SECRET)
    apigw = {name: kind for name, kind in resources.items() if kind.startswith("AWS::ApiGateway::")}
    assert sorted(apigw.values()) == sorted(API_GATEWAY_TYPES)
    # The function URL stays: the REST API is a second door, not a replacement.
    assert resources["StreamFunctionUrl"] == "AWS::Lambda::Url"

    [api] = resources_of_type(sam_rest, "AWS::ApiGateway::RestApi").values()
    integrations = _integrations(api)
    assert set(integrations) == {"/", "/{proxy+}"}
    for integration in integrations.values():
        assert integration["type"] == "aws_proxy"
        assert integration["httpMethod"] == "POST"
        assert integration["responseTransferMode"] == "STREAM"
        assert _uri_text(integration["uri"]) == (
            "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2021-11-15/functions/"
            "${StreamFunctionAliaslive}/response-streaming-invocations"
        )
        # The function's timeout, in milliseconds.
        assert integration["timeoutInMillis"] == {"Fn::Sub": "${FunctionTimeout}000"}
    body = api["Properties"]["Body"]
    assert body["securityDefinitions"]["api_key"] == {"type": "apiKey", "name": "x-api-key", "in": "header"}
    assert all(m["security"] == [{"api_key": []}] for p in body["paths"].values() for m in p.values())
    assert api["Properties"]["EndpointConfiguration"] == {"Types": ["REGIONAL"]}

    [stage] = resources_of_type(sam_rest, "AWS::ApiGateway::Stage").values()
    assert stage["Properties"]["StageName"] == "live"
    [settings] = stage["Properties"]["MethodSettings"]
    assert (settings["ResourcePath"], settings["HttpMethod"], settings["CachingEnabled"]) == (
        "/*",
        "*",
        False,
    )
    assert settings["ThrottlingRateLimit"] == {"Ref": "ApiGatewayRateLimit"}
    assert settings["ThrottlingBurstLimit"] == {"Ref": "ApiGatewayBurstLimit"}

    plan = sam_rest["Resources"]["StreamApiUsagePlan"]["Properties"]
    assert plan["ApiStages"] == [{"ApiId": {"Ref": "StreamApi"}, "Stage": {"Ref": "StreamApiliveStage"}}]
    assert plan["Throttle"] == {
        "RateLimit": {"Ref": "ApiKeyRateLimit"},
        "BurstLimit": {"Ref": "ApiKeyBurstLimit"},
    }
    assert plan["Quota"] == {"Limit": {"Ref": "ApiKeyDailyQuota"}, "Period": "DAY"}
    key = sam_rest["Resources"]["StreamApiUsagePlanKey"]["Properties"]
    assert key == {
        "KeyId": {"Ref": "StreamApiKey"},
        "KeyType": "API_KEY",
        "UsagePlanId": {"Ref": "StreamApiUsagePlan"},
    }

    permission = sam_rest["Resources"]["StreamApiInvokePermission"]
    assert permission["Condition"] == "RestStreaming"
    assert permission["Properties"]["FunctionName"] == {"Ref": "StreamFunctionAliaslive"}
    assert permission["Properties"]["Principal"] == "apigateway.amazonaws.com"
    assert sam_rest["Outputs"]["ApiGatewayUrl"]["Condition"] == "RestStreaming"
    assert sam_rest["Outputs"]["ApiGatewayUrl"]["Value"] == {
        "Fn::Sub": "https://${StreamApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/live/"
    }
    # The Bearer keys stay required: API Gateway's keys meter clients, they do not authenticate them.
    rule = sam_rest["Rules"]["RestApiNeedsApiKeys"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "ApiGateway"}, "rest-streaming"]}
    assert '{"Ref": "ApiKeysSecretArn"}' in json.dumps(rule["Assertions"])


def test_the_hand_written_integration_is_what_sams_response_stream_event_writes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The same API, unconditional, with SAM writing the integration from the `Api` event property instead.
    template = sam_template()
    api = template["Resources"]["StreamApi"]
    del api["Condition"]
    del api["Properties"]["DefinitionBody"]
    template["Resources"]["StreamFunction"]["Properties"]["Events"] = {
        "Proxy": {
            "Type": "Api",
            "Properties": {
                "RestApiId": {"Ref": "StreamApi"},
                "Path": "/{proxy+}",
                "Method": "ANY",
                "ResponseTransferMode": "RESPONSE_STREAM",
            },
        }
    }
    [by_sam] = _integrations(transform(template, monkeypatch)["Resources"]["StreamApi"]).values()
    ours = _integrations(transform(sam_template(), monkeypatch)["Resources"]["StreamApi"])["/{proxy+}"]

    assert {k: by_sam[k] for k in ("type", "httpMethod", "responseTransferMode")} == {
        k: ours[k] for k in ("type", "httpMethod", "responseTransferMode")
    }
    assert by_sam["responseTransferMode"] == "STREAM"
    assert _uri_text(by_sam["uri"]).replace("arn:aws:", "arn:${AWS::Partition}:") == _uri_text(ours["uri"])


def documented_idle_timeouts_s() -> dict[str, float]:
    """The "idle timeout" column of the front doors' table in docs/lambda.md (Behind API Gateway, Limits)."""
    text = (ROOT / "docs" / "lambda.md").read_text()
    section = text.split("## Behind API Gateway", 1)[1]
    table = section.split("### Limits", 1)[1].split("\n\n", 2)[1]
    timeouts: dict[str, float] = {}
    for row in table.splitlines()[2:]:
        door, _, idle = (cell.strip() for cell in row.strip("|").split("|"))
        found = re.match(r"(\d+) (s|min)\b", idle)
        if found:
            timeouts[door] = int(found.group(1)) * (60 if found.group(2) == "min" else 1)
    return timeouts


def test_the_default_heartbeat_is_below_every_documented_front_doors_idle_timeout() -> None:
    from app.settings import Settings

    timeouts = documented_idle_timeouts_s()
    assert timeouts["REST API, edge-optimised endpoint"] == 30
    assert timeouts["REST API, regional or private endpoint (this template)"] == 300
    assert Settings.from_env({}).heartbeat_interval_s < min(timeouts.values())


@pytest.mark.parametrize("mode", ["none", "rest-streaming"])
def test_serverless_packages_the_api_gateway_only_when_asked(tmp_path: Path, mode: str) -> None:
    done, output = _serverless_package(
        tmp_path, f"apiKeysSecretArn={_KEYS_SECRET}", f"apiGateway={mode}", "apiKeyDailyQuota=200"
    )
    assert done.returncode == 0, done.stdout + done.stderr

    generated = json.loads(output.read_text())
    assert lint(generated) == []
    # The packaged template carries the choice as its parameters' defaults: what a plain deploy creates.
    assert generated["Parameters"]["ApiGateway"]["Default"] == mode
    resources = created(generated)
    apigw = {kind for kind in resources.values() if kind.startswith("AWS::ApiGateway::")}
    assert apigw == (API_GATEWAY_TYPES if mode == "rest-streaming" else set())
    assert ("StreamApiInvokePermission" in resources) == (mode == "rest-streaming")
    assert resources["StreamLambdaFunctionUrl"] == "AWS::Lambda::Url"  # the function URL stays either way
    if mode == "none":
        return
    integrations = _integrations(generated["Resources"]["StreamApi"])
    assert set(integrations) == {"/", "/{proxy+}"}
    timeout_ms = serverless_yml()["provider"]["timeout"] * 1000
    for integration in integrations.values():
        assert (integration["type"], integration["httpMethod"]) == ("aws_proxy", "POST")
        assert integration["responseTransferMode"] == "STREAM"
        assert integration["timeoutInMillis"] == timeout_ms
        assert _uri_text(integration["uri"]) == (
            "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2021-11-15/functions/"
            "${StreamLambdaFunction.Arn}/response-streaming-invocations"
        )
    stage = generated["Resources"]["StreamApiStage"]["Properties"]
    assert stage["MethodSettings"][0]["ThrottlingRateLimit"] == {"Ref": "ApiGatewayRateLimit"}
    plan = generated["Resources"]["StreamApiUsagePlan"]["Properties"]
    assert plan["Quota"] == {"Limit": {"Ref": "ApiKeyDailyQuota"}, "Period": "DAY"}
    assert generated["Parameters"]["ApiKeyDailyQuota"]["Default"] == "200"
    assert generated["Outputs"]["ApiGatewayUrl"]["Condition"] == "RestStreaming"


def test_serverless_refuses_a_rest_api_without_the_bearer_keys(tmp_path: Path) -> None:
    # Even with an IAM-only function URL: API Gateway's keys meter clients, they do not authenticate them.
    done, output = _serverless_package(tmp_path, "urlAuth=aws_iam", "apiGateway=rest-streaming")

    assert done.returncode != 0
    assert "aRestApiNeedsTheParamApiKeysSecretArnOrApiKeysSsmParameter" in done.stdout + done.stderr
    assert not output.exists()


# --- metrics and alarms (EnableAlarms; serverless `--param=alarms=true`) ---

ALARMS = ("ErrorOutcomeRateAlarm", "TimeToFirstTokenP90Alarm", "ThrottlesAlarm")


def _with_alarms(enabled: str) -> dict[str, Any]:
    template = sam_template()
    template["Parameters"]["EnableAlarms"]["Default"] = enabled
    return template


def _emf_metrics() -> set[tuple[str, str, frozenset[str]]]:
    """(namespace, metric, dimension names) of every metric the app's EMF records define."""
    from app.metrics import emf
    from tests.app.metrics.support import ERROR_END

    defined: set[tuple[str, str, frozenset[str]]] = set()
    for record in (emf.stream_end_members(ERROR_END, 0), emf.resume_members("stream", 0)):
        for directive in record["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                for dimensions in directive["Dimensions"]:
                    defined.add((directive["Namespace"], metric["Name"], frozenset(dimensions)))
    return defined


def _alarmed_metrics(alarm: dict[str, Any]) -> set[tuple[str, str, frozenset[str]]]:
    properties = alarm["Properties"]
    if "MetricName" in properties:
        dimensions = frozenset(d["Name"] for d in properties.get("Dimensions", []))
        return {(properties["Namespace"], properties["MetricName"], dimensions)}
    found = set()
    for query in properties["Metrics"]:
        if "MetricStat" in query:
            metric = query["MetricStat"]["Metric"]
            dimensions = frozenset(d["Name"] for d in metric.get("Dimensions", []))
            found.add((metric["Namespace"], metric["MetricName"], dimensions))
    return found


@pytest.mark.parametrize("enabled", ["true", "false"])
def test_the_template_lints_clean_with_and_without_alarms(
    enabled: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cfnlint.api import ManualArgs
    from cfnlint.api import lint as cfn_lint

    template = _with_alarms(enabled)

    assert cfn_lint(json.dumps(template), config=ManualArgs(regions=["eu-west-1"])) == []
    transformed = transform(template, monkeypatch)
    assert lint(transformed) == []
    for name in (*ALARMS, "StreamsDashboard"):
        assert transformed["Resources"][name]["Condition"] == "CreateAlarms"
    assert transformed["Conditions"]["CreateAlarms"] == {"Fn::Equals": [{"Ref": "EnableAlarms"}, "true"]}


def test_alarms_are_off_by_default_and_notify_only_a_given_topic(sam: dict[str, Any]) -> None:
    assert sam["Parameters"]["EnableAlarms"]["Default"] == "false"
    for name in ALARMS:
        properties = sam["Resources"][name]["Properties"]
        assert properties["AlarmActions"] == {
            "Fn::If": ["NotifyAlarms", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
        }
        assert properties["TreatMissingData"] == "notBreaching"  # no traffic is no alarm


def test_the_alarms_watch_metrics_the_app_writes(sam: dict[str, Any]) -> None:
    written = _emf_metrics()
    error_rate = sam["Resources"]["ErrorOutcomeRateAlarm"]
    assert (
        _alarmed_metrics(error_rate)
        == {
            ("tokenrelay", "StreamsEnded", frozenset({"Outcome"})),
            ("tokenrelay", "StreamsEnded", frozenset()),
        }
        <= written
    )
    [errors] = [q for q in error_rate["Properties"]["Metrics"] if q["Id"] == "errors"]
    assert errors["MetricStat"]["Metric"]["Dimensions"] == [{"Name": "Outcome", "Value": "error"}]
    assert error_rate["Properties"]["Threshold"] == {"Ref": "ErrorRateAlarmPercent"}
    ttft = sam["Resources"]["TimeToFirstTokenP90Alarm"]
    assert _alarmed_metrics(ttft) == {("tokenrelay", "TimeToFirstToken", frozenset())} <= written
    assert (ttft["Properties"]["ExtendedStatistic"], ttft["Properties"]["Threshold"]) == (
        "p90",
        {"Ref": "TtftP90AlarmMs"},
    )
    throttled = {
        json.dumps(q["MetricStat"]["Metric"]["Dimensions"])
        for q in sam["Resources"]["ThrottlesAlarm"]["Properties"]["Metrics"]
        if "MetricStat" in q
    }
    assert throttled == {
        json.dumps([{"Name": "FunctionName", "Value": {"Ref": function}}])
        for function in ("StreamFunction", "BufferedFunction")
    }


def test_the_dashboard_is_json_on_the_apps_metrics(sam: dict[str, Any]) -> None:
    body = sam["Resources"]["StreamsDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    filled = re.sub(r"\$\{([^}]+)\}", lambda m: "3000" if m.group(1) == "TtftP90AlarmMs" else "name", body)
    widgets = json.loads(filled)["widgets"]

    text = json.dumps(widgets)
    written_names = {name for _, name, _ in _emf_metrics()}
    assert {"StreamsEnded", "TimeToFirstToken", "UpstreamErrors"} <= written_names
    for name in ("StreamsEnded", "TimeToFirstToken", "UpstreamErrors", "Throttles"):
        assert name in text
    assert len(widgets) == 4


@pytest.mark.parametrize("enabled", ["true", "false"])
def test_serverless_packages_the_same_alarms_lint_clean(tmp_path: Path, enabled: str) -> None:
    done, output = _serverless_package(tmp_path, f"apiKeysSecretArn={_KEYS_SECRET}", f"alarms={enabled}")
    assert done.returncode == 0, done.stdout + done.stderr

    generated = json.loads(output.read_text())
    assert lint(generated) == []
    assert generated["Parameters"]["EnableAlarms"]["Default"] == enabled
    sam = sam_template()
    for name in ALARMS:
        alarm = generated["Resources"][name]
        assert alarm["Condition"] == "CreateAlarms"
        ours, theirs = dict(alarm["Properties"]), dict(sam["Resources"][name]["Properties"])
        ours.pop("AlarmDescription")
        theirs.pop("AlarmDescription")
        if name == "ThrottlesAlarm":  # the functions' logical ids differ between the two frameworks
            renamed = json.dumps(theirs).replace('"StreamFunction"', '"StreamLambdaFunction"')
            theirs = json.loads(renamed.replace('"BufferedFunction"', '"BufferedLambdaFunction"'))
        assert ours == theirs, name
