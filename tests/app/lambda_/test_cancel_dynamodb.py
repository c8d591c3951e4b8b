"""The DynamoDB cancel registry against moto, on the table exactly as template.yaml declares it.

The property that matters on Lambda: a cancel served by one instance stops a stream on another, and
DynamoDB never sits between a stream and its next token.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import boto3
import pytest

from app.factory import build_cancel_registry
from app.settings import Settings
from app.stream.cancel.dynamodb import DynamoDBCancelRegistry
from app.stream.cancel.memory import InMemoryCancelRegistry
from tests.support.timeouts import run_async


def item(table: str, stream_id: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = (
        boto3.client("dynamodb")
        .get_item(TableName=table, Key={"stream_id": {"S": stream_id}}, ConsistentRead=True)
        .get("Item")
    )
    return found


async def until(check: Callable[[], Awaitable[bool]], *, poll_s: float = 0.02) -> None:
    """Await a condition that a background task makes true; the caller's timeout bounds the wait."""
    while not await check():  # noqa: ASYNC110 - the state is in (moto) DynamoDB: nothing to await
        await asyncio.sleep(poll_s)


def test_a_live_stream_is_an_item_with_an_expiry_and_goes_when_released(cancel_table: str) -> None:
    registry = DynamoDBCancelRegistry(cancel_table, poll_interval_s=0.05, ttl_s=600)

    async def body() -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        await registry.register("s-1")
        await registry.flush()
        live = item(cancel_table, "s-1")
        await registry.release("s-1")
        await registry.flush()
        return live, item(cancel_table, "s-1")

    registered_after = time.time()
    live, gone = run_async(body, timeout_s=10)
    released_before = time.time()

    assert live is not None
    assert live["cancelled"] == {"BOOL": False}
    assert int(registered_after + 600) <= int(live["expires_at"]["N"]) <= released_before + 600
    assert gone is None


def test_a_released_stream_is_gone_from_the_table_when_release_returns(cancel_table: str) -> None:
    # Lambda freezes the instance once the invocation ends: a delete left running in the background would
    # leave the item until its TTL (and a late cancel would get 202 instead of 404).
    registry = DynamoDBCancelRegistry(cancel_table, poll_interval_s=0.05)

    async def body() -> tuple[dict[str, Any] | None, bool]:
        await registry.register("s-7")
        await registry.flush()  # the item is written
        await registry.release("s-7")
        # Read at once, without giving background work a chance to run: as on a frozen instance.
        return item(cancel_table, "s-7"), await DynamoDBCancelRegistry(cancel_table).request_cancel("s-7")

    assert run_async(body, timeout_s=10) == (None, False)


def test_a_cancel_for_an_unknown_or_ended_stream_is_refused(cancel_table: str) -> None:
    registry = DynamoDBCancelRegistry(cancel_table, poll_interval_s=0.05)

    async def body() -> tuple[bool, bool]:
        unknown = await registry.request_cancel("never-existed")
        await registry.register("s-2")
        await registry.release("s-2")
        await registry.flush()
        return unknown, await DynamoDBCancelRegistry(cancel_table).request_cancel("s-2")

    assert run_async(body, timeout_s=10) == (False, False)


def test_an_expired_item_is_not_a_running_stream(cancel_table: str) -> None:
    # TTL deletion can lag by days: the expiry itself must make the stream unknown.
    boto3.client("dynamodb").put_item(
        TableName=cancel_table,
        Item={
            "stream_id": {"S": "crashed"},
            "cancelled": {"BOOL": False},
            "expires_at": {"N": str(int(time.time()) - 5)},
        },
    )

    assert run_async(lambda: DynamoDBCancelRegistry(cancel_table).request_cancel("crashed")) is False


def test_a_cancel_served_by_another_instance_reaches_the_stream(cancel_table: str) -> None:
    streaming = DynamoDBCancelRegistry(cancel_table, poll_interval_s=0.05)
    other = DynamoDBCancelRegistry(cancel_table, poll_interval_s=0.05)

    async def body() -> tuple[bool, bool, bool]:
        await streaming.register("s-3")
        await streaming.flush()
        before = await streaming.is_cancelled("s-3")
        accepted = await other.request_cancel("s-3")
        await until(lambda: streaming.is_cancelled("s-3"))
        after = await streaming.is_cancelled("s-3")
        await streaming.release("s-3")
        await streaming.flush()
        return before, accepted, after

    assert run_async(body, timeout_s=10) == (False, True, True)
    assert item(cancel_table, "s-3") is None


def test_another_instance_cancels_a_stream_only_with_its_owners_key(cancel_table: str) -> None:
    streaming = DynamoDBCancelRegistry(cancel_table, poll_interval_s=0.05)
    other = DynamoDBCancelRegistry(cancel_table, poll_interval_s=0.05)

    async def body() -> tuple[bool, bool, bool, bool]:
        await streaming.register("s-6", "owner-a")
        await streaming.flush()
        by_another_key = await other.request_cancel("s-6", "owner-b")
        without_key = await other.request_cancel("s-6")
        here_by_another_key = await streaming.request_cancel("s-6", "owner-b")
        by_owner = await other.request_cancel("s-6", "owner-a")
        await streaming.release("s-6")
        await streaming.flush()
        return by_another_key, without_key, here_by_another_key, by_owner

    assert run_async(body, timeout_s=10) == (False, False, False, True)


def test_a_cancel_on_the_streaming_instance_itself_needs_no_table_round_trip(cancel_table: str) -> None:
    registry = DynamoDBCancelRegistry(cancel_table, poll_interval_s=60)

    async def body() -> tuple[bool, bool]:
        await registry.register("s-4")
        accepted = await registry.request_cancel("s-4")
        return accepted, await registry.is_cancelled("s-4")

    assert run_async(body, timeout_s=10) == (True, True)


class _SlowTable:
    """The real (moto) client, but every call waits until the test opens the gate."""

    def __init__(self) -> None:
        self._client = boto3.client("dynamodb")
        self.gate = threading.Event()
        self.exceptions = self._client.exceptions
        self.answered = 0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        def call(**kwargs: Any) -> Any:
            if not self.gate.wait(10):
                raise TimeoutError("the test never opened the gate")
            self.answered += 1
            return method(**kwargs)

        return call


def test_a_slow_table_delays_neither_registration_nor_the_cancel_check(cancel_table: str) -> None:
    slow = _SlowTable()
    registry = DynamoDBCancelRegistry(cancel_table, poll_interval_s=0.05, client=slow)

    async def body() -> tuple[int, bool]:
        await registry.register("s-5")
        cancelled = await registry.is_cancelled("s-5")
        answered_meanwhile = slow.answered
        slow.gate.set()
        await registry.release("s-5")
        await registry.flush()
        return answered_meanwhile, cancelled

    answered_meanwhile, cancelled = run_async(body, timeout_s=15)

    assert answered_meanwhile == 0  # both returned while the put and the polls were held at the gate
    assert cancelled is False
    assert item(cancel_table, "s-5") is None  # the delete waited for the put, so nothing is left behind


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.fields: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.fields.append({"event": record.getMessage(), **getattr(record, "fields", {})})


def test_table_errors_are_logged_never_raised_into_a_stream(aws: None) -> None:
    registry = DynamoDBCancelRegistry("no-such-table", poll_interval_s=0.05)
    records = _Records()
    logging.getLogger("tokenrelay").addHandler(records)

    def failed(operation: str) -> bool:
        return any(r["event"] == "cancel_table_error" and r["operation"] == operation for r in records.fields)

    async def polls_failed() -> bool:
        return failed("poll")

    async def body() -> bool:
        await registry.register("s-6")
        await until(polls_failed)
        cancelled = await registry.is_cancelled("s-6")
        await registry.release("s-6")
        await registry.flush()
        return cancelled

    try:
        assert run_async(body, timeout_s=10) is False
    finally:
        logging.getLogger("tokenrelay").removeHandler(records)
    assert failed("register")
    assert failed("release")
    assert {r["exc_type"] for r in records.fields} == {"ResourceNotFoundException"}


def test_the_settings_choose_the_registry(cancel_table: str) -> None:
    in_memory = build_cancel_registry(Settings())
    dynamodb = build_cancel_registry(Settings(cancel_table=cancel_table, cancel_poll_interval_s=0.5))

    assert isinstance(in_memory, InMemoryCancelRegistry)
    assert isinstance(dynamodb, DynamoDBCancelRegistry)
    assert dynamodb.poll_interval_s == 0.1  # the local flag; the table itself every 0.5 s


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("tokenrelay-cancels", True),
        ("arn:aws:dynamodb:eu-west-1:123456789012:table/tokenrelay-cancels", True),
        ("no spaces", False),
        ("ab", False),
    ],
)
def test_cancel_table_is_validated_at_start_up(value: str, accepted: bool) -> None:
    from app.settings import SettingsError

    if accepted:
        assert Settings.from_env({"CANCEL_TABLE": value}).cancel_table == value
    else:
        with pytest.raises(SettingsError, match="CANCEL_TABLE"):
            Settings.from_env({"CANCEL_TABLE": value})
