"""Fixtures of the stream core tests: every stream log backend behind one fixture."""

from __future__ import annotations

import pytest

from app.stream.log import StreamLog
from app.stream.log.memory import InMemoryStreamLog


@pytest.fixture(params=["memory"])
def stream_log(request: pytest.FixtureRequest) -> StreamLog:
    """Each backend in turn; the contract tests run against all of them."""
    if request.param == "memory":
        return InMemoryStreamLog(retention_s=60)
    raise AssertionError(f"no stream log backend {request.param!r}")
