"""How a stream ended, as HTTP trailers after its body: for hosts that report it beside the stream.

The event-stream response sends them only to a host that advertises the ASGI `http.response.trailers`
extension (the Lambda streaming runtime, which turns a failure into Lambda's error trailers). Clients see
the same failure in-band, as the stream's terminal `error` event.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from app.stream.session import Failed

ASGI_EXTENSION: Final = "http.response.trailers"
# `error`, `cancelled`, `deadline`, ... (no trailer: the stream completed).
OUTCOME_TRAILER: Final = b"tokenrelay-stream-outcome"
# The error as ASCII-only JSON, so that it is always a valid header value: `{"type", "code", "message"}`.
ERROR_TRAILER: Final = b"tokenrelay-stream-error"


@dataclass(frozen=True, slots=True)
class StreamFailure:
    """A failed stream's outcome and error, as read back from its trailers."""

    outcome: str
    type: str
    code: str | None
    message: str


def outcome_trailers(failed: Failed | None) -> list[tuple[bytes, bytes]]:
    """Nothing for a stream that completed; the outcome and the error for one that failed."""
    if failed is None:
        return []
    detail = failed.error.detail
    error = json.dumps({"type": detail.type, "code": detail.code, "message": detail.message})
    return [(OUTCOME_TRAILER, failed.outcome.value.encode()), (ERROR_TRAILER, error.encode("ascii"))]


def read_failure(headers: Iterable[tuple[bytes, bytes]]) -> StreamFailure | None:
    """The failure that trailers describe, if they describe one."""
    found = {bytes(name).lower(): bytes(value) for name, value in headers}
    outcome, error = found.get(OUTCOME_TRAILER), found.get(ERROR_TRAILER)
    if outcome is None or error is None:
        return None
    fields = json.loads(error)
    return StreamFailure(
        outcome=outcome.decode(),
        type=str(fields["type"]),
        code=fields.get("code"),
        message=str(fields["message"]),
    )
