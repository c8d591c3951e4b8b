"""Stream metrics: one model fed by the stream session, written as EMF on Lambda and served to Prometheus.

`recorder.StreamMetrics` is what the session calls; `emf` turns a stream's end into CloudWatch's Embedded
Metric Format (inside the `stream_end` log line itself); `prometheus` keeps counters for `GET /metrics`
and is imported only when `METRICS=true`, so that a Lambda cold start never pays for it.
"""
