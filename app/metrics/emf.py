"""CloudWatch Embedded Metric Format: the members that make a log line a metrics record as well.

CloudWatch Logs extracts the metrics from the line when it is ingested: no API call, no extra latency, no
extra line. Written by hand rather than with aws-lambda-powertools: the format is a small documented JSON
shape, and importing powertools' Metrics put the streaming runtime's cold start over its budget
(README, "Observability"). Dimensions stay low-cardinality (the model is only in the log fields): every
distinct combination is a custom metric that CloudWatch bills.
"""

from __future__ import annotations

from typing import Any, Final

from app.metrics.record import StreamEnd

NAMESPACE: Final = "tokenrelay"

# Each metric under each dimension set: the detail, one dimension an alarm filters by, and the total.
_END_DIMENSIONS: Final = [["Outcome", "Dialect", "Provider"], ["Outcome"], []]
_TTFT_DIMENSIONS: Final = [["Dialect", "Provider"], []]
_UPSTREAM_ERROR_DIMENSIONS: Final = [["Provider", "UpstreamError"]]
_RESUME_DIMENSIONS: Final = [["Dialect"], []]


def stream_end_members(end: StreamEnd, timestamp_ms: int) -> dict[str, Any]:
    """`_aws` and the target members for a stream's end: StreamsEnded, StreamDuration and CompletionTokens
    by outcome; TimeToFirstToken when a token came; UpstreamErrors by error code when the upstream failed."""
    labels = end.labels
    directives: list[dict[str, Any]] = [
        _directive(
            _END_DIMENSIONS,
            [("StreamsEnded", "Count"), ("StreamDuration", "Milliseconds"), ("CompletionTokens", "Count")],
        )
    ]
    members: dict[str, Any] = {
        "Outcome": end.outcome,
        "Dialect": labels.dialect,
        "Provider": labels.provider,
        "StreamsEnded": 1,
        "StreamDuration": end.duration_ms,
        "CompletionTokens": end.completion_tokens,
    }
    # A metric's value must be a number: a stream that never produced a token has no TTFT to record.
    if end.ttft_ms is not None:
        directives.append(_directive(_TTFT_DIMENSIONS, [("TimeToFirstToken", "Milliseconds")]))
        members["TimeToFirstToken"] = end.ttft_ms
    if end.upstream_error is not None:
        directives.append(_directive(_UPSTREAM_ERROR_DIMENSIONS, [("UpstreamErrors", "Count")]))
        members["UpstreamError"] = end.upstream_error
        members["UpstreamErrors"] = 1
    return {"_aws": {"Timestamp": timestamp_ms, "CloudWatchMetrics": directives}, **members}


def resume_members(dialect: str, timestamp_ms: int) -> dict[str, Any]:
    """`_aws` and the target members for one resume of a resumable stream (StreamResumes by dialect)."""
    directive = _directive(_RESUME_DIMENSIONS, [("StreamResumes", "Count")])
    return {
        "_aws": {"Timestamp": timestamp_ms, "CloudWatchMetrics": [directive]},
        "Dialect": dialect,
        "StreamResumes": 1,
    }


def _directive(dimensions: list[list[str]], metrics: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "Namespace": NAMESPACE,
        "Dimensions": dimensions,
        "Metrics": [{"Name": name, "Unit": unit} for name, unit in metrics],
    }
