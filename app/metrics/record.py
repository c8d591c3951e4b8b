"""What the metrics are made of: a stream's labels, and its end."""

from __future__ import annotations

from typing import Any

import msgspec


# Structs rather than dataclasses: created in C, they add nothing measurable to a cold start.
class StreamLabels(msgspec.Struct, frozen=True, kw_only=True):
    """Who served a stream: its wire dialect, the provider, and the model asked for."""

    dialect: str
    provider: str
    model: str


class StreamEnd(msgspec.Struct, frozen=True, kw_only=True):
    """How one stream ended, with its measurements; logged once as `stream_end`."""

    stream_id: str
    labels: StreamLabels
    # An `app.stream.session.Outcome` value (a string here: the session imports this module).
    outcome: str
    ttft_ms: float | None
    duration_ms: float
    completion_tokens: int
    prompt_tokens: int | None
    # The error code of an upstream failure (`rate_limit_exceeded`, `upstream_timeout`, ...), if one ended it.
    upstream_error: str | None = None
    # False for a session given up before its generation began (a WebSocket prompt cancelled at once):
    # it ends, but it never started, nor counted as active.
    started: bool = True

    def log_fields(self) -> dict[str, Any]:
        """The fields of its `stream_end` line."""
        labels = self.labels
        fields: dict[str, Any] = {
            "outcome": self.outcome,
            "request_id": self.stream_id,
            "dialect": labels.dialect,
            "provider": labels.provider,
            "model": labels.model,
            "ttft_ms": self.ttft_ms,
            "duration_ms": self.duration_ms,
            "completion_tokens": self.completion_tokens,
            "prompt_tokens": self.prompt_tokens,
        }
        if self.upstream_error is not None:
            fields["upstream_error"] = self.upstream_error
        return fields
