"""Fixtures every test package may use: the real servers the suite starts once per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.aws import running_dynalite
from tests.support.tools import node_script_runner


@pytest.fixture(scope="session")
def dynalite_endpoint() -> Iterator[str]:
    """One dynalite server for the session, on loopback; skipped, saying why, without node or the package."""
    node = node_script_runner("dynalite")
    if node is None:
        pytest.skip("node, or the dynalite npm package (make test runs npm ci in tests/node), is missing")
    with running_dynalite(node) as endpoint:
        yield endpoint
