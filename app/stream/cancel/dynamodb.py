"""Stream cancels in DynamoDB, so that a cancel reaching one Lambda instance stops a stream on another.

On Lambda each instance serves one request at a time: while an instance streams, the cancel request for
that stream is necessarily served by a different instance, so the registry must be shared. One item per
live stream: `stream_id` (hash key), `cancelled`, `owner` (the digest of the API key that started it, when
the service has keys), and `expires_at` (epoch seconds, the table's TTL attribute) so that items of crashed
instances disappear on their own.

Nothing here sits between a stream and its first byte: the boto3 client is built in a worker thread that
the first registration starts (`app/stream/dynamodb_client.py`), registration is written in the
background, and a per-stream watcher polls the item and keeps a local flag that `is_cancelled` reads. A
slow or failing table therefore delays a cancel, never a token. Release is awaited (for a bounded time)
after the last token, before the response ends, because Lambda freezes an instance whose invocation is done.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any, Final

from app.logs import log_event
from app.stream.dynamodb_client import DynamoDBClient

# How often the session reads the local flag; the table itself is read every `poll_interval_s`.
_LOCAL_CHECK_S: Final = 0.1
# How long a stream's end waits for its item to be deleted; a slower table finishes in the background.
_RELEASE_WAIT_S: Final = 2.0


class DynamoDBCancelRegistry:
    """A `CancelRegistry` whose live streams and cancel requests are items in a DynamoDB table."""

    def __init__(
        self,
        table: str,
        *,
        poll_interval_s: float = 1.0,
        ttl_s: float = 3600.0,
        client: Any | None = None,
    ) -> None:
        # A boto3 client (tests), or the shared one the factory builds in the background; None: our own.
        self._client = client if isinstance(client, DynamoDBClient) else DynamoDBClient(client)
        self._table = table
        self._table_poll_s = poll_interval_s
        self._ttl_s = ttl_s
        self._cancelled: dict[str, bool] = {}
        self._owners: dict[str, str | None] = {}
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._writes: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[None]] = set()

    @property
    def poll_interval_s(self) -> float:
        return min(_LOCAL_CHECK_S, self._table_poll_s)

    async def register(self, stream_id: str, owner: str | None = None) -> None:
        self._client.warm()  # built while this stream waits for its first token
        self._cancelled[stream_id] = False
        self._owners[stream_id] = owner
        self._writes[stream_id] = self._spawn(self._put(stream_id, owner))
        self._watchers[stream_id] = asyncio.create_task(
            self._watch(stream_id), name=f"cancel-watch-{stream_id}"
        )

    async def request_cancel(self, stream_id: str, owner: str | None = None) -> bool:
        if stream_id in self._cancelled:  # streamed by this very process: no need to ask the table
            if self._owners.get(stream_id) != owner:
                return False
            self._cancelled[stream_id] = True
            return True
        # A stream that ended (item deleted) or whose instance died (item expired) is not running; one
        # started with another key is not this caller's to stop.
        condition = "attribute_exists(stream_id) AND expires_at > :now AND "
        values: dict[str, Any] = {":yes": {"BOOL": True}, ":now": {"N": str(int(time.time()))}}
        if owner is None:
            condition += "attribute_not_exists(#owner)"
        else:
            condition += "#owner = :owner"
            values[":owner"] = {"S": owner}
        client = await self._client.get()
        try:
            await asyncio.to_thread(
                client.update_item,
                TableName=self._table,
                Key={"stream_id": {"S": stream_id}},
                UpdateExpression="SET cancelled = :yes",
                ConditionExpression=condition,
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues=values,
            )
        except client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    async def is_cancelled(self, stream_id: str) -> bool:
        return self._cancelled.get(stream_id, False)

    def is_live(self, stream_id: str) -> bool:
        return stream_id in self._owners

    async def release(self, stream_id: str) -> None:
        self._cancelled.pop(stream_id, None)
        self._owners.pop(stream_id, None)
        watcher = self._watchers.pop(stream_id, None)
        if watcher is not None:
            watcher.cancel()
        registered = self._writes.pop(stream_id, None)
        # Awaited, within bounds: on Lambda the instance is frozen as soon as the response ends, and a
        # delete left to the background would run minutes later (or never): the item would outlive the
        # stream until its TTL, and a late cancel would get 202 instead of 404.
        deleting = self._spawn(self._delete(stream_id, registered))
        await asyncio.wait((deleting,), timeout=_RELEASE_WAIT_S)

    async def flush(self) -> None:
        """Wait for the background writes issued so far (shutdown, tests)."""
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    async def _put(self, stream_id: str, owner: str | None) -> None:
        item = {
            "stream_id": {"S": stream_id},
            "cancelled": {"BOOL": False},
            "expires_at": {"N": str(int(time.time() + self._ttl_s))},
        }
        if owner is not None:
            item["owner"] = {"S": owner}
        await self._call("register", stream_id, "put_item", TableName=self._table, Item=item)

    async def _delete(self, stream_id: str, registered: asyncio.Task[None] | None) -> None:
        if registered is not None:
            # A delete that overtook the put would leave the item behind until it expires.
            await asyncio.gather(registered, return_exceptions=True)
        await self._call(
            "release",
            stream_id,
            "delete_item",
            TableName=self._table,
            Key={"stream_id": {"S": stream_id}},
        )

    async def _watch(self, stream_id: str) -> None:
        while True:
            await asyncio.sleep(self._table_poll_s)
            item = await self._call(
                "poll",
                stream_id,
                "get_item",
                TableName=self._table,
                Key={"stream_id": {"S": stream_id}},
                ProjectionExpression="cancelled",
                ConsistentRead=True,
            )
            if item is not None and item.get("Item", {}).get("cancelled", {}).get("BOOL") is True:
                if stream_id in self._cancelled:
                    self._cancelled[stream_id] = True
                return

    async def _call(self, operation: str, stream_id: str, method: str, **kwargs: Any) -> Any:
        """Run one blocking boto3 call off the event loop; a failure (the client's build included) is logged,
        never raised into a stream."""
        try:
            client = await self._client.get()
            return await asyncio.to_thread(getattr(client, method), **kwargs)
        except Exception as exc:
            log_event(
                "cancel_table_error",
                logging.WARNING,
                operation=operation,
                stream_id=stream_id,
                exc_type=type(exc).__name__,
            )
            return None

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    @property
    def live_streams(self) -> int:
        return len(self._cancelled)
