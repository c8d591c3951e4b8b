"""The trace context of a request: W3C `traceparent`/`tracestate` and the AWS X-Ray trace header.

Headers come from clients, so each value is checked before it is logged or sent upstream: a malformed
`traceparent` is dropped, as the W3C recommendation tells a participant to do (the trace then restarts
upstream), and never answered with an error, since tracing must not make a request fail.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping
from typing import Any, Final

from providers.protocol import TraceContext

# W3C Trace Context, version-format: version, trace-id, parent-id, trace-flags (lower-case hex). A later
# version may append fields after another `-`; version ff is invalid, as are all-zero ids.
# (Pattern strings, compiled on first use by `re`'s own cache: a cold start without traces never pays.)
_TRACEPARENT: Final = r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[\x21-\x7e]*)?"
# Where a host puts the X-Ray trace header of the current invocation (the Lambda hosts, from the runtime's
# `_X_AMZN_TRACE_ID`): it names the function's own segment, the right parent for the upstream call.
XRAY_SCOPE_EXTENSION: Final = "tokenrelay.xray_trace_id"
_ZERO_TRACE_ID: Final = "0" * 32
_ZERO_PARENT_ID: Final = "0" * 16
# `tracestate` is a comma-separated list of at most 32 `key=value` members (512 characters suffice).
_TRACESTATE: Final = r"[\x20-\x7e]{1,512}"
# `Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1` (and `Lineage=...`).
_XRAY: Final = r"Root=[0-9a-fA-F-]{1,64}(;[ ]?[A-Za-z]{1,32}=[A-Za-z0-9:._-]{0,128}){0,8}"


def trace_context(headers: Mapping[str, str], scope: Mapping[str, Any]) -> TraceContext | None:
    """The request's trace context, or None when it has none (or only malformed values).

    `headers` must look names up case-insensitively (Litestar's do). The host's X-Ray trace id (Lambda)
    wins over an `X-Amzn-Trace-Id` header that the client or a load balancer sent.
    """
    traceparent = _valid_traceparent(headers.get("traceparent"))
    tracestate = headers.get("tracestate") if traceparent is not None else None
    if tracestate is not None and not re.fullmatch(_TRACESTATE, tracestate):
        tracestate = None
    extensions: Mapping[str, Any] = scope.get("extensions") or {}
    host_xray = extensions.get(XRAY_SCOPE_EXTENSION)
    xray = _valid_xray(host_xray if isinstance(host_xray, str) else None) or _valid_xray(
        headers.get("x-amzn-trace-id")
    )
    if traceparent is None and xray is None:
        return None
    return TraceContext(traceparent=traceparent, tracestate=tracestate, xray=xray)


def with_xray_trace_id(scope: MutableMapping[str, Any], trace_id: str) -> None:
    """Put the invocation's X-Ray trace header into a request's scope (the Lambda hosts do)."""
    extensions = scope.get("extensions") or {}
    extensions[XRAY_SCOPE_EXTENSION] = trace_id
    scope["extensions"] = extensions


def log_fields(trace: TraceContext | None) -> dict[str, str]:
    """What every log line of the stream says about its trace."""
    if trace is None:
        return {}
    fields: dict[str, str] = {}
    if trace.traceparent is not None:
        fields["traceparent"] = trace.traceparent
    if trace.xray is not None:
        fields["xray_trace_id"] = trace.xray
    return fields


def _valid_traceparent(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    match = re.fullmatch(_TRACEPARENT, value)
    if match is None:
        return None
    version, trace_id, parent_id, _, rest = match.groups()
    if version == "ff" or trace_id == _ZERO_TRACE_ID or parent_id == _ZERO_PARENT_ID:
        return None
    if version == "00" and rest:
        return None  # version 00 has exactly four fields
    return value


def _valid_xray(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value if re.fullmatch(_XRAY, value) else None
