"""The one metrics model: what the stream session reports, fanned out to the log line and the sinks."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol

from app.logs import log_event, log_metric_record
from app.metrics import emf
from app.metrics.record import StreamEnd, StreamLabels


class MetricsSink(Protocol):
    """Somewhere metrics are kept besides the log (Prometheus' counters)."""

    def stream_started(self, labels: StreamLabels) -> None: ...

    def stream_ended(self, end: StreamEnd) -> None: ...

    def stream_resumed(self, dialect: str) -> None: ...

    def close(self) -> None:
        """The process is about to exit (a multiprocess registry forgets its live gauges)."""
        ...


class StreamMetrics:
    """Records streams starting, ending and being resumed.

    A stream's end is always its one `stream_end` log line; with `emf` (on Lambda) that line is also an
    Embedded Metric Format record, so CloudWatch extracts the metrics from it. Each sink (Prometheus, with
    `METRICS=true`) is told everything.
    """

    def __init__(self, *, emf: bool = False, sinks: Sequence[MetricsSink] = ()) -> None:
        self.emf = emf
        self.sinks = tuple(sinks)

    def stream_started(self, labels: StreamLabels) -> None:
        # No EMF line: on Lambda every stream ends inside its invocation, so StreamsEnded counts them all,
        # and AWS/Lambda ConcurrentExecutions is the active count.
        for sink in self.sinks:
            sink.stream_started(labels)

    def stream_ended(self, end: StreamEnd) -> None:
        fields = end.log_fields()
        if self.emf:
            fields.update(emf.stream_end_members(end, _now_ms()))
        (log_metric_record if self.emf else log_event)("stream_end", **fields)
        for sink in self.sinks:
            sink.stream_ended(end)

    def stream_resumed(self, stream_id: str, dialect: str) -> None:
        """A client asked to read a resumable stream again (`GET /v1/streams/{id}/events`, a chat resume)."""
        fields: dict[str, Any] = {"request_id": stream_id, "dialect": dialect}
        if self.emf:
            fields.update(emf.resume_members(dialect, _now_ms()))
        (log_metric_record if self.emf else log_event)("stream_resume", **fields)
        for sink in self.sinks:
            sink.stream_resumed(dialect)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


def _now_ms() -> int:
    return int(time.time() * 1000)
