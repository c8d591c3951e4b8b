"""Structured logs: one JSON object per line on stderr."""

from __future__ import annotations

import contextvars
import logging
import re
import sys
from collections.abc import Mapping
from typing import Any

import msgspec

_encoder = msgspec.json.Encoder()
# A path's query string, as servers quote it in their own lines (`"WebSocket /v1/ws?api_key=..."`): it can
# carry an API key (the WebSocket URL, which browsers cannot give headers) or a prompt (`GET /v1/stream`).
_QUERY_STRING = re.compile(r"(/[^\s\"?]*)\?[^\s\"]*")

logger = logging.getLogger("tokenrelay")
# Fields every line logged in this context carries (a stream's trace ids): set where a stream opens, and
# inherited by the tasks it starts (the provider's, a resumable stream's producer).
_context: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "tokenrelay_log_context", default=None
)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line; structured fields come from `extra={"fields": {...}}`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": _QUERY_STRING.sub(r"\1?[redacted]", record.getMessage()),
        }
        # Lines of other loggers (the server's, the SDK's) get the bound fields when they are formatted.
        bound = _context.get()
        if bound:
            entry.update(bound)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info and record.levelno >= logging.ERROR:
            # The type only: tracebacks can quote request data, and a log line must stay one line.
            entry["exc_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
        return _encoder.encode(entry).decode()


def configure_logging(level: str) -> None:
    """Route the service's and the server's logs to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in ("tokenrelay", "uvicorn", "uvicorn.error"):
        named = logging.getLogger(name)
        named.handlers[:] = [handler]
        named.setLevel(level)
        named.propagate = False
    # The providers' own lines (a retry, an upstream failure) are JSON lines too. They still propagate: no
    # handler is above them in production, and a test's log capture listens at the root.
    providers = logging.getLogger("providers")
    providers.handlers[:] = [handler]
    providers.setLevel(level)


def log_event(event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one structured event."""
    if logger.isEnabledFor(level):
        logger.log(level, event, extra=_extra(fields))


def log_metric_record(event: str, **fields: Any) -> None:
    """Log one event at INFO whatever `LOG_LEVEL` says: an Embedded Metric Format line is where CloudWatch
    reads the metrics (and the alarms on them) from, so `LOG_LEVEL=WARNING` must not silence them."""
    record = logger.makeRecord(logger.name, logging.INFO, __file__, 0, event, (), None, extra=_extra(fields))
    logger.handle(record)


def _extra(fields: dict[str, Any]) -> dict[str, Any]:
    """A record's fields with the context's bound ones, read now, in the caller's context: a handler may
    format the record later, elsewhere."""
    bound = _context.get()
    return {"fields": {**bound, **fields} if bound else fields}


def bind_log_context(fields: Mapping[str, Any]) -> None:
    """Add `fields` to every line logged from here on in this context (and in tasks it starts later)."""
    if fields:
        _context.set({**(_context.get() or {}), **fields})


def reset_log_context() -> None:
    """Forget the bound fields: a host that serves requests one after another in one task (the Lambda
    streaming runtime) calls this between them, so that one stream's trace never labels the next."""
    _context.set(None)
