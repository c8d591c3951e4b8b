"""Fixtures of the app tests: settings, the app factory, an in-process client, a real server, log capture."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any, Protocol

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from app.factory import create_app
from app.settings import Settings
from providers.mock import MockProvider
from providers.protocol import Provider
from tests.support.server import RunningServer
from tests.support.server import serve as serve_app


class AppFactory(Protocol):
    def __call__(self, with_provider: Provider | None = None, **changes: Any) -> Litestar: ...


ServeFactory = Callable[[Litestar], AbstractContextManager[RunningServer]]


class LogCapture(logging.Handler):
    """Collects the records of logger `tokenrelay`, from any thread, and lets a test wait for them."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self._changed = threading.Condition()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        with self._changed:
            self.records.append(record)
            self._changed.notify_all()

    def events(self, name: str) -> list[dict[str, Any]]:
        """The structured fields of every record of one event name, in order."""
        with self._changed:
            return [dict(getattr(r, "fields", {})) for r in self.records if r.getMessage() == name]

    @property
    def stream_ends(self) -> list[dict[str, Any]]:
        return self.events("stream_end")

    def wait_for(self, name: str, count: int, *, timeout_s: float = 5.0) -> list[dict[str, Any]]:
        """Block until `count` records of `name` exist; fail the test when they do not come in time."""
        with self._changed:
            arrived = self._changed.wait_for(
                lambda: sum(r.getMessage() == name for r in self.records) >= count, timeout_s
            )
        if not arrived:
            raise AssertionError(
                f"expected {count} {name!r} records within {timeout_s}s, got {self.events(name)}"
            )
        return self.events(name)


@pytest.fixture
def settings() -> Settings:
    return Settings(mock_token_delay_ms=0)


@pytest.fixture
def provider(settings: Settings) -> MockProvider:
    return MockProvider(token_delay_s=settings.mock_token_delay_ms / 1000)


@pytest.fixture
def make_app(settings: Settings, provider: MockProvider) -> AppFactory:
    """Build the app as production does, from settings (with `changes` applied) and a provider."""

    def make(with_provider: Provider | None = None, **changes: Any) -> Litestar:
        return create_app(msgspec.structs.replace(settings, **changes), with_provider or provider)

    return make


@pytest.fixture
def app(make_app: AppFactory) -> Litestar:
    return make_app()


@pytest.fixture
def client(app: Litestar) -> Iterator[TestClient[Litestar]]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def serve() -> ServeFactory:
    """`with serve(app) as server:` runs uvicorn on 127.0.0.1 for tests that need a real socket."""
    return serve_app


@pytest.fixture
def log_capture() -> Iterator[LogCapture]:
    logger = logging.getLogger("tokenrelay")
    capture = LogCapture()
    previous_level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(capture)
    try:
        yield capture
    finally:
        logger.removeHandler(capture)
        logger.setLevel(previous_level)
