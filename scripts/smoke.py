"""`make smoke URL=... [KEY=...] [GATEWAY_KEY=...]`: does this deployed URL really stream?

One `POST /v1/stream` to a function URL, an API Gateway stage, or a local server, timed chunk by chunk as
the bytes arrive. Prints the time to first byte, the chunk count, the median and the largest gap between
chunks and the total time, then one verdict line. Exit 0 when the answer streamed to its terminal event;
1 with a one-line reason when it was buffered (every byte in one burst at the end), when a key was refused
(which one, in which header), when it was throttled, or when the terminal event never came.

    python -m scripts.smoke https://abc.lambda-url.eu-west-1.on.aws/ [--key K] [--gateway-key G]

The keys may come from SMOKE_KEY (the Bearer key: `Authorization`) and SMOKE_GATEWAY_KEY (API Gateway's
`x-api-key`) instead, so that they stay out of the process list; they are never printed.

Buffered or streamed is told from the arrival of the bytes alone: a front door that buffers hands the whole
body over at once, so every gap between chunks is a few milliseconds at most, while a streamed answer shows
the pace of its tokens between them. The request asks the mock provider (the templates' default) for 100 ms
between tokens, so a streamed answer has clearly separated chunks; other providers ignore that and keep
their own pace, which is slower than one burst too. A stream of fewer than three events is too short to
tell, and says so.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import httpx

# Below this, two chunks count as one burst: far under the 100 ms the mock is asked to pace at, far above
# the microseconds between reads of a body that arrives all at once.
BURST_GAP_S: Final = 0.02
MOCK_PACE_MS: Final = 100
_TERMINAL_EVENTS: Final = ("done", "error")


@dataclass
class Measurement:
    """What one streaming request saw: the status and headers, then each body chunk with its arrival time."""

    url: str
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    started_at: float = 0.0
    chunk_times: list[float] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    ended_at: float = 0.0
    transport_error: str | None = None

    @property
    def ttfb_s(self) -> float | None:
        return self.chunk_times[0] - self.started_at if self.chunk_times else None

    @property
    def gaps_s(self) -> list[float]:
        return [
            later - earlier for earlier, later in zip(self.chunk_times, self.chunk_times[1:], strict=False)
        ]

    @property
    def total_s(self) -> float:
        return self.ended_at - self.started_at

    def event_names(self) -> list[str]:
        """The `event:` of each SSE frame of the body (frames without one are `message`, comments none)."""
        names: list[str] = []
        text = self.body.decode("utf-8", errors="replace").replace("\r\n", "\n")
        for frame in text.split("\n\n"):
            lines = [line for line in frame.split("\n") if line and not line.startswith(":")]
            if not lines:
                continue
            named = [line[len("event:") :].strip() for line in lines if line.startswith("event:")]
            names.append(named[0] if named else "message")
        return names

    def last_data(self, name: str) -> str | None:
        """The data of the body's last `name` event (its `data:` lines, joined), if it has one."""
        text = self.body.decode("utf-8", errors="replace").replace("\r\n", "\n")
        _, found, rest = text.rpartition(f"event: {name}")
        if not found:
            return None
        frame = rest.split("\n\n", 1)[0]
        return "\n".join(
            line[len("data:") :].strip() for line in frame.split("\n") if line.startswith("data:")
        )


@dataclass(frozen=True)
class Verdict:
    """Whether the URL streamed, and the one line that says why not."""

    streamed: bool
    line: str


def measure(
    base_url: str,
    *,
    key: str | None,
    gateway_key: str | None,
    prompt: str,
    max_tokens: int,
    timeout_s: float,
) -> Measurement:
    """Send one streaming request and record every chunk as it arrives."""
    url = base_url.rstrip("/") + "/v1/stream"
    headers = {"accept": "text/event-stream", "content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    if gateway_key:
        headers["x-api-key"] = gateway_key
    body = {
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "mock": {"delay_ms": MOCK_PACE_MS},
    }
    seen = Measurement(url)
    # No compression asked for: a decoder would hold bytes back, and streamed routes are never compressed.
    with httpx.Client(timeout=timeout_s, headers={"accept-encoding": "identity"}) as client:
        seen.started_at = time.monotonic()
        try:
            with client.stream("POST", url, json=body, headers=headers) as response:
                seen.status = response.status_code
                seen.headers = {name.lower(): value for name, value in response.headers.items()}
                for chunk in response.iter_raw():
                    if chunk:
                        seen.chunk_times.append(time.monotonic())
                        seen.body.extend(chunk)
        except httpx.HTTPError as exc:
            seen.transport_error = f"{type(exc).__name__}: {exc}"
        seen.ended_at = time.monotonic()
    return seen


def judge(seen: Measurement, *, key_given: bool, gateway_key_given: bool) -> Verdict:
    """Streamed, or the first reason it did not."""
    if seen.transport_error is not None and seen.status == 0:
        return Verdict(False, f"no response from {seen.url}: {seen.transport_error}")
    if seen.status != 200:
        return Verdict(False, _refusal(seen, key_given=key_given, gateway_key_given=gateway_key_given))
    events = seen.event_names()
    if seen.transport_error is not None:
        return Verdict(False, f"terminal event missing: the connection broke after {len(events)} events")
    if not events or events[-1] not in _TERMINAL_EVENTS:
        last = events[-1] if events else "none"
        return Verdict(
            False, f"terminal event missing: the stream ended after {len(events)} events (last: {last})"
        )
    if events[-1] == "error" and len(events) < 3:
        return Verdict(False, f"the answer failed before it streamed: {_error_text(seen)}")
    if len(events) < 3:
        return Verdict(False, f"too short to tell: only {len(events)} events; ask for a longer answer")
    if _buffered(seen):
        return Verdict(
            False,
            f"buffered: all {len(seen.body)} bytes ({len(events)} events) arrived in one burst "
            f"{seen.ttfb_s or 0:.2f} s after the request; the front door holds the stream back",
        )
    if events[-1] == "error":
        return Verdict(False, f"streamed, but the answer ended with an error event: {_error_text(seen)}")
    bursts = 1 + sum(gap >= BURST_GAP_S for gap in seen.gaps_s)
    return Verdict(True, f"streamed: {len(events)} events in {bursts} bursts, ending with `done`")


def _buffered(seen: Measurement) -> bool:
    """Whether the bytes came in one burst. With the server's own duration (the `done` event's
    `timings.duration_ms`), a burst is an arrival spread under a tenth of it: a fast model's deltas a few
    ms apart still spread over the whole answer, a buffered answer arrives at once whatever its length.
    Without it, a burst is every gap under BURST_GAP_S."""
    duration_s = _server_duration_s(seen)
    if duration_s is not None and duration_s >= 10 * BURST_GAP_S:
        spread_s = seen.chunk_times[-1] - seen.chunk_times[0] if seen.chunk_times else 0.0
        return spread_s < duration_s / 10
    return all(gap < BURST_GAP_S for gap in seen.gaps_s)


def _server_duration_s(seen: Measurement) -> float | None:
    """How long the server says the answer took (the native `done` event), if it says."""
    data = seen.last_data("done")
    if data is None:
        return None
    try:
        duration_ms = json.loads(data)["timings"]["duration_ms"]
    except (ValueError, KeyError, TypeError):
        return None
    return duration_ms / 1000 if isinstance(duration_ms, int | float) else None


def _refusal(seen: Measurement, *, key_given: bool, gateway_key_given: bool) -> str:
    error_type = seen.headers.get("x-amzn-errortype", "").split(":")[0]
    text = seen.body.decode("utf-8", errors="replace").strip()
    if seen.status == 401 and "bearer" in seen.headers.get("www-authenticate", "").lower():
        if not key_given:
            return "auth failed: the service wants a Bearer key in the Authorization header (KEY=...)"
        return "auth failed: the Bearer key in the Authorization header (KEY) was refused"
    if seen.status == 403 and error_type == "ForbiddenException":
        if not gateway_key_given:
            return (
                "auth failed: API Gateway wants a usage plan's key in the x-api-key header (GATEWAY_KEY=...)"
            )
        return (
            "auth failed: API Gateway refused the x-api-key header (GATEWAY_KEY): not a key of the usage plan"
        )
    if seen.status == 403 and error_type == "AccessDeniedException":
        return "auth failed: this function URL takes SigV4-signed requests only (FunctionUrlAuthType=AWS_IAM)"
    if seen.status == 403 and error_type == "MissingAuthenticationTokenException":
        return f"no such route at {seen.url}: check the URL (an API Gateway URL ends with its stage, /live/)"
    if seen.status == 429:
        return f"throttled (429): {text[:160]}"
    return f"HTTP {seen.status}: {text[:160]}"


def _error_text(seen: Measurement) -> str:
    return (seen.last_data("error") or "").replace("\n", " ")[:200] or "(no data)"


def report(seen: Measurement) -> str:
    """The figures, one line."""
    gaps = seen.gaps_s
    ttfb = f"{seen.ttfb_s:.3f} s" if seen.ttfb_s is not None else "-"
    median = f"{statistics.median(gaps):.3f} s" if gaps else "-"
    largest = f"{max(gaps):.3f} s" if gaps else "-"
    return (
        f"status {seen.status or '-'}  ttfb {ttfb}  chunks {len(seen.chunk_times)}  "
        f"gap median {median}  gap max {largest}  total {seen.total_s:.3f} s"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.smoke", description=__doc__.split("\n")[0])
    parser.add_argument("url", help="the deployment's base URL (the API is under /v1)")
    parser.add_argument("--key", default=os.environ.get("SMOKE_KEY") or None, help="Bearer key (SMOKE_KEY)")
    parser.add_argument(
        "--gateway-key",
        default=os.environ.get("SMOKE_GATEWAY_KEY") or None,
        help="API Gateway's x-api-key (SMOKE_GATEWAY_KEY)",
    )
    parser.add_argument("--prompt", default="Say hello to the smoke test")
    parser.add_argument("--max-tokens", type=int, default=12)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for any byte")
    args = parser.parse_args(argv)
    if not args.url.startswith(("http://", "https://")):
        parser.error(f"URL={args.url!r} is not an http(s) URL")

    seen = measure(
        args.url,
        key=args.key,
        gateway_key=args.gateway_key,
        prompt=args.prompt,
        max_tokens=args.max_tokens,
        timeout_s=args.timeout,
    )
    verdict = judge(seen, key_given=bool(args.key), gateway_key_given=bool(args.gateway_key))
    print(f"smoke: POST {seen.url}")
    print(f"smoke: {report(seen)}")
    print(f"smoke: {verdict.line}", file=sys.stdout if verdict.streamed else sys.stderr)
    return 0 if verdict.streamed else 1


if __name__ == "__main__":
    sys.exit(main())
