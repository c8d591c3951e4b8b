"""`GET /metrics`: the Prometheus text format, with `METRICS=true` only (the factory imports this then)."""

from __future__ import annotations

from litestar import Response, get
from litestar.datastructures import State

from app.metrics.prometheus import CONTENT_TYPE, PrometheusSink


def prometheus_of(state: State) -> PrometheusSink:
    sink: PrometheusSink = state.prometheus
    return sink


@get("/metrics", tags=["ops"], summary="Stream metrics in the Prometheus text format")
async def metrics_endpoint(state: State) -> Response[bytes]:
    return Response(prometheus_of(state).exposition(), media_type=CONTENT_TYPE)
