"""A stream's budgets, and the deadline a host (AWS Lambda) imposes on it."""

from __future__ import annotations

import time
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Final

# The ASGI scope extension through which a host caps the deadline of every stream of a request.
DEADLINE_SCOPE_EXTENSION: Final = "tokenrelay.deadline"


@dataclass(frozen=True, slots=True)
class Deadline:
    """A moment by which a stream must have ended, on the event loop's clock (`time.monotonic`).

    Made once, where the host learns it (Lambda: the invocation's remaining time), and compared as it is.
    """

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def earlier_by(self, seconds: float) -> Deadline:
        return Deadline(self.at - seconds)

    def remaining_s(self) -> float:
        return self.at - time.monotonic()


def host_deadline(scope: Mapping[str, Any]) -> Deadline | None:
    """The deadline a host put into a request's scope, if any."""
    extensions: Mapping[str, Any] = scope.get("extensions") or {}
    deadline = extensions.get(DEADLINE_SCOPE_EXTENSION)
    return deadline if isinstance(deadline, Deadline) else None


def with_deadline(scope: MutableMapping[str, Any], deadline: Deadline) -> None:
    """Put a host deadline into a request's scope (the Lambda hosts do, for every request)."""
    extensions = scope.get("extensions") or {}
    extensions[DEADLINE_SCOPE_EXTENSION] = deadline
    scope["extensions"] = extensions


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """Budgets and pacing of one stream."""

    max_tokens: int
    idle_timeout_s: float
    deadline_s: float
    heartbeat_s: float
    # How long one write may wait for a client that does not read, before the stream is dropped.
    send_timeout_s: float = 30.0
    host_deadline: Deadline | None = None
