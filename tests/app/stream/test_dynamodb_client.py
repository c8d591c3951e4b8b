"""The DynamoDB client of the table-backed registries: built in the background, off the first byte's path."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from app.factory import create_app
from app.settings import Settings
from app.stream import dynamodb_client
from app.stream.cancel.dynamodb import DynamoDBCancelRegistry
from app.stream.dynamodb_client import DynamoDBClient
from providers.mock import MockProvider
from tests.support.imports import modules_after_create_app
from tests.support.timeouts import run_async

ROOT = Path(__file__).resolve().parents[3]


class _GatedBuild:
    """Stands in for boto3: each build waits until the test opens the gate."""

    def __init__(self, result: Any = None, error: Exception | None = None) -> None:
        self.gate = threading.Event()
        self.builds = 0
        self._result = result if result is not None else object()
        self._error = error

    def __call__(self) -> Any:
        self.builds += 1
        if not self.gate.wait(10):
            raise TimeoutError("the test never opened the gate")
        if self._error is not None:
            raise self._error
        return self._result


def test_a_given_client_is_ready_at_once_and_nothing_is_built() -> None:
    given = object()
    assert run_async(DynamoDBClient(given).get) is given


def test_one_build_serves_every_waiter_even_when_one_of_them_gives_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    build = _GatedBuild()
    monkeypatch.setattr(dynamodb_client, "_build", build)
    client = DynamoDBClient()

    async def body() -> list[Any]:
        quitter = asyncio.create_task(client.get())
        stayers = [asyncio.create_task(client.get()) for _ in range(2)]
        await asyncio.sleep(0)
        quitter.cancel()  # a watcher stopped at its stream's end
        build.gate.set()
        return await asyncio.gather(*stayers)

    results = run_async(body, timeout_s=15)

    assert build.builds == 1
    assert results == [results[0], results[0]]
    assert results[0] is not None


def test_a_build_error_reaches_whoever_needs_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    build = _GatedBuild(error=ValueError("You must specify a region."))
    build.gate.set()
    monkeypatch.setattr(dynamodb_client, "_build", build)

    with pytest.raises(ValueError, match="region"):
        run_async(DynamoDBClient().get, timeout_s=15)


def test_registering_a_stream_does_not_wait_for_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    class _Table:
        def __getattr__(self, name: str) -> Any:
            return lambda **_: calls.append(name)

    build = _GatedBuild(result=_Table())
    monkeypatch.setattr(dynamodb_client, "_build", build)
    registry = DynamoDBCancelRegistry("t", poll_interval_s=60)

    async def body() -> tuple[bool, list[str], list[str]]:
        await registry.register("s-1")  # returns while the client is still being built
        cancelled = await registry.is_cancelled("s-1")
        before = list(calls)
        build.gate.set()
        await registry.release("s-1")
        await registry.flush()
        return cancelled, before, list(calls)

    cancelled, before, after = run_async(body, timeout_s=15)

    assert cancelled is False
    assert before == []
    assert after == ["put_item", "delete_item"]  # written once the client was there, in order
    assert build.builds == 1


def test_building_the_app_with_a_table_does_not_import_boto3() -> None:
    """A cold start with `CANCEL_TABLE` pays for boto3 only once a stream needs the table."""
    loaded = modules_after_create_app(CANCEL_TABLE="tokenrelay-cancels", AWS_DEFAULT_REGION="us-east-1")

    assert "boto3" not in loaded
    assert "botocore" not in loaded


def test_a_server_builds_the_client_at_its_start_and_fails_there_on_a_bad_configuration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`python -m app` has time before its first request: its first stream must not wait for the client."""
    built: list[str] = []

    def build() -> object:
        built.append(threading.current_thread().name)
        return object()

    monkeypatch.setattr(dynamodb_client, "_build", build)
    create_app(Settings(cancel_table="t"), MockProvider(), aws_clients_at_start=True)
    assert built == [threading.current_thread().name]  # at once, in the caller's thread

    failing = _GatedBuild(error=ValueError("You must specify a region."))
    failing.gate.set()
    monkeypatch.setattr(dynamodb_client, "_build", failing)
    with pytest.raises(ValueError, match="region"):
        create_app(Settings(cancel_table="t"), MockProvider(), aws_clients_at_start=True)
