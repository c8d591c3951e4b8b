"""The boto3 DynamoDB client of the table-backed cancel registry and stream log, off the first byte's path.

`import boto3` and `boto3.client("dynamodb")` cost ~160 ms of a Lambda cold start (more than half of the
streaming function's time to first byte without a table). Nothing a stream needs before its first byte
waits for the table (the cancel item and the log's open are written in the background), so the client is
built in a worker thread that starts when the first stream registers: it runs while that stream waits for
the provider's first token (network I/O, which releases the GIL), and whatever first needs the client
awaits it. Before a stream, building costs nothing at all, so init stays as fast as without a table.

The price: the first stream of an instance is written to the table only once the client exists, so a
resume or cancel reaching another instance within that time finds nothing yet. On Lambda that is the
trade a cold start wants; a long-lived server (`python -m app`) builds the client at its start instead
(`create_app(aws_clients_at_start=True)`), and a bad AWS configuration then fails the start. Otherwise a
configuration error (no region, a malformed endpoint) surfaces where the client is first needed, as any
failure of the table does: a background write logs it, a read becomes the caller's error.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from typing import Any


def _build() -> Any:
    # Imported only here: a process without a table never imports boto3 at all.
    import boto3

    # A session of its own: boto3's default session is not safe to create from another thread.
    return boto3.session.Session().client("dynamodb")


def _wake_soon(loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[None]) -> None:
    """From the building thread: wake a waiter on its loop, unless it gave up or its loop is gone."""

    def wake() -> None:
        if not waiter.done():
            waiter.set_result(None)

    with contextlib.suppress(RuntimeError):  # the loop was closed meanwhile: nobody is waiting
        loop.call_soon_threadsafe(wake)


class DynamoDBClient:
    """One boto3 DynamoDB client, built once in the background, shared by all that talks to the table."""

    def __init__(self, client: Any | None = None) -> None:
        self._future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._started = threading.Lock()
        self._building = False
        if client is not None:  # given (tests, a custom endpoint): ready at once
            self._building = True
            self._future.set_result(client)

    def warm(self) -> None:
        """Start building the client, if nothing did yet; returns at once."""
        with self._started:
            if self._building:
                return
            self._building = True
        threading.Thread(target=self._run, name="dynamodb-client", daemon=True).start()

    def build_now(self) -> None:
        """Build the client in this thread, now (a server at its start); its error is raised here."""
        with self._started:
            if self._building:
                return
            self._building = True
        self._run()
        self._future.result()

    async def get(self) -> Any:
        """The client, once built (building it now if nothing started it); its build error, if it failed."""
        if not self._future.done():
            self.warm()
            # Not `asyncio.wrap_future`: a cancelled waiter (a watcher stopped at a stream's end) would
            # cancel the one shared build for every other waiter.
            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[None] = loop.create_future()
            self._future.add_done_callback(lambda _: _wake_soon(loop, waiter))
            await waiter
        return self._future.result()

    def _run(self) -> None:
        try:
            self._future.set_result(_build())
        except BaseException as exc:  # handed to whoever awaits the client, never lost in the thread
            self._future.set_exception(exc)
