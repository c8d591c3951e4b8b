"""Fixtures of the stream core tests: every stream log backend behind one fixture.

The DynamoDB backend runs twice: against moto (in-process), and against dynalite, a DynamoDB-compatible
server from npm (tests/node) on 127.0.0.1, started once per session; each test gets a fresh table created as
template.yaml declares it.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from app.stream.log import StreamLog
from app.stream.log.dynamodb import DynamoDBStreamLog
from app.stream.log.memory import InMemoryStreamLog
from tests.support.aws import (
    create_declared_table,
    dynamodb_client,
    offline_aws,
    offline_credentials,
)

DYNAMODB_SERVERS = ("moto", "dynalite")


@dataclass(frozen=True)
class DynamoDBTable:
    """A fresh table, as template.yaml declares it, and the server that holds it."""

    name: str
    endpoint_url: str | None  # None: moto, in-process

    def client(self) -> Any:
        """A client of its own, as another Lambda instance would have."""
        return dynamodb_client(self.endpoint_url)

    def log(self, *, client: Any | None = None, **settings: Any) -> DynamoDBStreamLog:
        """A log on this table, with quick timings so that the tests are; `settings` override them."""
        timings: dict[str, Any] = {
            "retention_s": 60.0,
            "flush_interval_s": 0.05,
            "flush_bytes": 1024,
            "poll_interval_s": 0.02,
        }
        timings.update(settings)
        return DynamoDBStreamLog(self.name, client=client or self.client(), **timings)

    def item(self, key: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = (
            self.client()
            .get_item(TableName=self.name, Key={"stream_id": {"S": key}}, ConsistentRead=True)
            .get("Item")
        )
        return found


@contextlib.contextmanager
def _table(
    server: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DynamoDBTable]:
    name = f"tokenrelay-{uuid.uuid4().hex[:12]}"
    if server == "moto":
        with offline_aws(monkeypatch):
            create_declared_table(dynamodb_client(), name)
            yield DynamoDBTable(name, None)
        return
    endpoint = request.getfixturevalue("dynalite_endpoint")
    offline_credentials(monkeypatch)
    client = dynamodb_client(endpoint)
    create_declared_table(client, name, time_to_live=False)
    try:
        yield DynamoDBTable(name, endpoint)
    finally:
        client.delete_table(TableName=name)


@pytest.fixture(params=DYNAMODB_SERVERS)
def dynamodb_table(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DynamoDBTable]:
    """A fresh table on each DynamoDB server in turn."""
    with _table(request.param, request, monkeypatch) as table:
        yield table


@pytest.fixture(params=["memory", *(f"dynamodb-{server}" for server in DYNAMODB_SERVERS)])
def stream_log_pair(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[StreamLog, StreamLog]]:
    """Two logs on one storage, as two instances of the service see it: the producer's, another's.

    Memory is one process's: the same object twice. DynamoDB: two instances, each with its own client.
    """
    if request.param == "memory":
        log = InMemoryStreamLog(retention_s=60)
        yield log, log
        return
    server = request.param.removeprefix("dynamodb-")
    with _table(server, request, monkeypatch) as table:
        yield table.log(), table.log()


@pytest.fixture
def stream_log(stream_log_pair: tuple[StreamLog, StreamLog]) -> StreamLog:
    """Each backend in turn; the contract tests run against all of them."""
    return stream_log_pair[0]
