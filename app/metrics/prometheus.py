"""Prometheus counters for `GET /metrics`, with the official client; imported only when `METRICS=true`.

Several worker processes (gunicorn, `uvicorn --workers`) share their counts through the client's
multiprocess mode: with `PROMETHEUS_MULTIPROC_DIR` set before the client is imported, every process writes
its values into files there and an exposition adds them up (the active-streams gauge over live processes).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from app.metrics.record import StreamEnd, StreamLabels

# Seconds: a first token usually comes in well under a second, a slow upstream takes several.
_TTFT_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
# Seconds: from a short answer to a stream at the longest deadline (STREAM_DEADLINE_S, 300 by default).
_DURATION_BUCKETS: Final = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)
# When any model id passes through to the upstream (no OPENAI_MODELS), clients choose the `model` label:
# the first ones seen keep their name, the rest share one, so that a client cannot grow the series forever.
MAX_PASSTHROUGH_MODELS: Final = 32
OTHER_MODEL: Final = "other"

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST


class PrometheusSink:
    """The stream metrics as Prometheus counters, gauges and histograms (`tokenrelay_*`)."""

    def __init__(self, *, models: Sequence[str] = (), multiprocess_dir: str | None = None) -> None:
        self._multiprocess_dir = multiprocess_dir
        self._models = frozenset(models)
        self._passthrough: set[str] = set()
        # A registry of its own, not the client's global one: every app built (tests build many) has its
        # own metrics, and none of the client's default process collectors.
        self.registry = registry = CollectorRegistry(auto_describe=True)
        stream = ("dialect", "provider", "model")
        self._started = Counter("tokenrelay_streams_started", "Streams started.", stream, registry=registry)
        self._ended = Counter(
            "tokenrelay_streams_ended",
            "Streams ended, by outcome (completed, error, cancelled, max_tokens, idle_timeout, deadline, "
            "stalled, abandoned).",
            ("outcome", *stream),
            registry=registry,
        )
        self._ttft = Histogram(
            "tokenrelay_time_to_first_token_seconds",
            "Time from the request to the first token, for streams that produced one.",
            stream,
            buckets=_TTFT_BUCKETS,
            registry=registry,
        )
        self._duration = Histogram(
            "tokenrelay_stream_duration_seconds",
            "Time from the request to the end of the stream.",
            ("outcome", "dialect", "provider"),
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )
        self._tokens = Counter(
            "tokenrelay_completion_tokens", "Completion tokens streamed.", stream, registry=registry
        )
        self._active = Gauge(
            "tokenrelay_active_streams",
            "Streams running now.",
            ("dialect", "provider"),
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._upstream_errors = Counter(
            "tokenrelay_upstream_errors",
            "Streams ended by an upstream failure, by its error code.",
            ("provider", "type"),
            registry=registry,
        )
        self._resumes = Counter(
            "tokenrelay_stream_resumes",
            "Reads of a resumable stream after its first (GET /v1/streams/{id}/events, chat resumes).",
            ("dialect",),
            registry=registry,
        )

    def stream_started(self, labels: StreamLabels) -> None:
        self._started.labels(labels.dialect, labels.provider, self._model(labels.model)).inc()
        self._active.labels(labels.dialect, labels.provider).inc()

    def stream_ended(self, end: StreamEnd) -> None:
        labels = end.labels
        stream = (labels.dialect, labels.provider, self._model(labels.model))
        if end.started:
            self._active.labels(labels.dialect, labels.provider).dec()
        self._ended.labels(end.outcome, *stream).inc()
        self._duration.labels(end.outcome, labels.dialect, labels.provider).observe(end.duration_ms / 1000)
        if end.ttft_ms is not None:
            self._ttft.labels(*stream).observe(end.ttft_ms / 1000)
        if end.completion_tokens:
            self._tokens.labels(*stream).inc(end.completion_tokens)
        if end.upstream_error is not None:
            self._upstream_errors.labels(labels.provider, end.upstream_error).inc()

    def stream_resumed(self, dialect: str) -> None:
        self._resumes.labels(dialect).inc()

    def exposition(self) -> bytes:
        """The text format of every metric: this process's, or all workers' in multiprocess mode."""
        if self._multiprocess_dir is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self._multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(registry)

    def close(self) -> None:
        if self._multiprocess_dir is not None:
            # Its live gauge values no longer count; its counters stay in the totals.
            multiprocess.mark_process_dead(os.getpid(), self._multiprocess_dir)  # type: ignore[no-untyped-call]

    def _model(self, model: str) -> str:
        if self._models:
            return model if model in self._models else OTHER_MODEL
        if model in self._passthrough:
            return model
        if len(self._passthrough) < MAX_PASSTHROUGH_MODELS:
            self._passthrough.add(model)
            return model
        return OTHER_MODEL
