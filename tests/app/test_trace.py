"""The trace context read from a request: checked values only, the host's X-Ray id first."""

from __future__ import annotations

import pytest
from litestar.datastructures import Headers

from app.trace import log_fields, trace_context, with_xray_trace_id
from providers.protocol import TraceContext

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
XRAY = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"


def _read(headers: dict[str, str], scope: dict[str, object] | None = None) -> TraceContext | None:
    return trace_context(Headers(headers), scope or {})


def test_a_valid_traceparent_and_its_tracestate_are_kept() -> None:
    trace = _read({"Traceparent": PARENT, "tracestate": "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"})

    assert trace == TraceContext(traceparent=PARENT, tracestate="congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
    assert trace.headers() == {"traceparent": PARENT, "tracestate": "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"}
    assert log_fields(trace) == {"traceparent": PARENT}


def test_a_later_version_may_carry_more_fields() -> None:
    future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-next"
    assert _read({"traceparent": future}) == TraceContext(traceparent=future)


@pytest.mark.parametrize(
    "value",
    [
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # upper case
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # the invalid version
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero parent id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  # version 00 has four fields
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  # a trace id one digit short
        "not a traceparent\r\nX-Injected: 1",
    ],
)
def test_a_malformed_traceparent_is_dropped_with_its_tracestate(value: str) -> None:
    assert _read({"traceparent": value, "tracestate": "a=b"}) is None


def test_a_tracestate_with_control_characters_is_dropped() -> None:
    assert _read({"traceparent": PARENT, "tracestate": "a=b\x00"}) == TraceContext(traceparent=PARENT)


def test_the_hosts_xray_id_wins_over_the_header() -> None:
    scope: dict[str, object] = {}
    with_xray_trace_id(scope, XRAY)

    trace = _read({"X-Amzn-Trace-Id": "Root=1-00000000-000000000000000000000001"}, scope)

    assert trace == TraceContext(xray=XRAY)
    assert trace.headers() == {"X-Amzn-Trace-Id": XRAY}
    assert log_fields(trace) == {"xray_trace_id": XRAY}


def test_an_xray_header_is_used_off_lambda_and_a_malformed_one_is_not() -> None:
    header = "Root=1-67891233-abcdef012345678912345678"
    assert _read({"x-amzn-trace-id": header}) == TraceContext(xray=header)
    assert _read({"x-amzn-trace-id": "Root=1-6789;evil=\r\nSet-Cookie: a"}) is None


def test_a_request_without_trace_headers_has_no_trace() -> None:
    assert _read({"accept": "text/event-stream"}) is None
    assert log_fields(None) == {}
