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
    permissions = resources_of_type(sam, "AWS::Lambda::Permission")
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
    actions = sorted(
        p["Properties"]["Action"] for p in resources_of_type(generated, "AWS::Lambda::Permission").values()
    )
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
