"""AWS in the tests, offline: moto in-process, or dynalite (a DynamoDB-compatible server from npm) on
loopback; and the table the stream log and the cancel registry share, created as template.yaml declares it.

dynalite is a real server speaking DynamoDB's wire protocol (botocore's requests, its own validation and
expression engine, consistent reads, BatchGetItem's limits), where moto patches botocore in-process: a
behaviour both accept is not an artefact of one fake.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from tests.support.server import free_port

if TYPE_CHECKING:
    import pytest

ROOT: Final = Path(__file__).resolve().parents[2]
DYNALITE_CLI: Final = ROOT / "tests" / "node" / "node_modules" / "dynalite" / "cli.js"
REGION: Final = "eu-west-1"


def sam_template() -> dict[str, Any]:
    """template.yaml as data, intrinsic functions as `{"Ref": ...}`-style dictionaries."""
    from samtranslator.yaml_helper import yaml_parse

    parsed: dict[str, Any] = yaml_parse((ROOT / "template.yaml").read_text())
    return parsed


def offline_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials that could never reach a real account, and no profile or config file to find others."""
    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)


@contextlib.contextmanager
def offline_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto's in-process AWS, with `offline_credentials`."""
    from moto import mock_aws

    offline_credentials(monkeypatch)
    with mock_aws():
        yield


def create_declared_table(client: Any, name: str, *, time_to_live: bool = True) -> None:
    """The cancel table (which the stream log shares) exactly as template.yaml declares it.

    `time_to_live=False` for dynalite, which has no UpdateTimeToLive: nothing tested relies on DynamoDB
    deleting expired items (days late, on AWS), since every reader checks `expires_at` itself.
    """
    properties = sam_template()["Resources"]["CancelTable"]["Properties"]
    client.create_table(
        TableName=name,
        BillingMode=properties["BillingMode"],
        AttributeDefinitions=properties["AttributeDefinitions"],
        KeySchema=properties["KeySchema"],
    )
    deadline = time.monotonic() + 10
    while client.describe_table(TableName=name)["Table"]["TableStatus"] != "ACTIVE":
        if time.monotonic() > deadline:
            raise TimeoutError(f"table {name} never became ACTIVE")
        time.sleep(0.02)
    if time_to_live:
        client.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={
                "AttributeName": properties["TimeToLiveSpecification"]["AttributeName"],
                "Enabled": properties["TimeToLiveSpecification"]["Enabled"],
            },
        )


def dynamodb_client(endpoint_url: str | None = None) -> Any:
    """A client of moto (no endpoint) or of a local server, never of AWS: the credentials are fake."""
    import boto3

    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@contextlib.contextmanager
def running_dynalite(node: str, *, start_timeout_s: float = 20.0) -> Iterator[str]:
    """A dynalite server (in memory) on 127.0.0.1, until the block ends: its endpoint URL."""
    port = free_port()
    command = [
        node,
        str(DYNALITE_CLI),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        # Tables are ACTIVE at once (the default makes each test wait half a second per table).
        "--createTableMs",
        "0",
        "--deleteTableMs",
        "0",
    ]
    # Its output goes to a file, not a pipe nobody reads (a full pipe would stall the server).
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + start_timeout_s
            while True:
                if process.poll() is not None:
                    output.seek(0)
                    said = output.read().decode(errors="replace")[-2000:]
                    raise RuntimeError(f"dynalite exited with {process.returncode}: {said}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"dynalite did not listen on 127.0.0.1:{port}") from None
                    time.sleep(0.05)
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
