"""Peers side by side in one run: tokenrelay (both endpoints), the LiteLLM proxy, FastAPI + sse-starlette
and a bare ASGI app, each one uvicorn worker on 127.0.0.1, under the same load.

The workload is LiteLLM's: its mock (`mock_response`) streams a text in 3-character slices, so every other
app streams the same text in the same slices (`bench.workload.SlicedTextProvider`): the same content
chunks and the same characters per stream, both counted from what each client received (a stream whose
count is off is reported, not hidden). Servers are pinned to CPU 0 and this client to CPU 1 where
`taskset` exists; rounds alternate the apps in a shuffled order and figures are medians of the rounds.

Figures: content chunks/s (and characters/s) at concurrency 1 / 16 / 64, first content chunk p50 / p99
(from the request's connect to the first non-empty delta's arrival) at 1 and 64, server CPU seconds per
1,000 chunks (the server process and its children, over every load), resident memory after 500 concurrent
streams, and startup: from spawning the server to the first content chunk of its first stream.

LiteLLM comes from its own virtualenv (`.venv-peers`, a pinned version, installed by `make bench-peers`,
never in uv.lock); without it its column says why. `--stacks fast,h11` adds columns for tokenrelay and
the bare app on asyncio + h11, so the fast stack's gain is measured in the same run.

    python -m bench.peers [--chunks 200] [--rounds 3] [--stacks fast,h11] [--no-litellm] [--smoke]
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from bench import report, workload
from bench.client import ROOT, Recording, fetch
from bench.report import median, percentile
from bench.serve import raise_fd_limit

TITLE = "Peers: the same stream from tokenrelay, LiteLLM, FastAPI + sse-starlette and a bare ASGI app"
PEERS_VENV = ROOT / ".venv-peers"
LITELLM_VERSION = "1.108.7"  # the pin `make bench-peers` installs
LITELLM_KEY = "sk-bench-peers"  # its master key: loopback only, never a real one
CONCURRENCY = (1, 16, 64)
_CONTENT = {
    # A non-empty content delta, however the app spaces its JSON; a stream's first one marks first content.
    "chat": re.compile(rb'"content": ?"[^"]'),
    "native": re.compile(rb"event: delta\n"),
}


@dataclass(frozen=True, slots=True)
class Target:
    """One column: an app, the endpoint asked and the server stack it runs on."""

    label: str
    app: str  # ours, bare, fastapi, litellm
    dialect: str  # chat (POST /v1/chat/completions) or native (GET /v1/stream)
    stack: str = "fast"


@dataclass(slots=True)
class Running:
    """A started server."""

    port: int
    process: subprocess.Popen[bytes]
    startup_s: float

    def cpu_s(self) -> float:
        """User + system CPU of the server and its children (taskset execs; LiteLLM may fork workers)."""
        return sum(_stat(pid)[0] for pid in _tree(self.process.pid))

    def rss_mb(self) -> float:
        return sum(_stat(pid)[1] for pid in _tree(self.process.pid)) / 2**20


def _tree(root: int) -> list[int]:
    """`root` and its descendants, from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    out, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        out += frontier
    return out


def _stat(pid: int) -> tuple[float, int]:
    """CPU seconds (user + system) and resident bytes of one process; zeros once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks, int(fields[21]) * os.sysconf("SC_PAGE_SIZE")


@dataclass(slots=True)
class Load:
    """One load on one target."""

    concurrency: int
    chunks: int = 0
    chars: int = 0
    streams: int = 0
    bad_streams: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    first_ms: list[float] = field(default_factory=list)

    @property
    def chunks_per_s(self) -> float:
        return self.chunks / self.wall_s if self.wall_s else 0.0

    @property
    def chars_per_s(self) -> float:
        return self.chars / self.wall_s if self.wall_s else 0.0


def targets(stacks: Sequence[str]) -> list[Target]:
    out = [
        Target("tokenrelay `/v1/chat/completions`", "ours", "chat"),
        Target("tokenrelay `/v1/stream`", "ours", "native"),
        Target("LiteLLM proxy (`mock_response`)", "litellm", "chat"),
        Target("FastAPI + sse-starlette", "fastapi", "chat"),
        Target("bare ASGI app", "bare", "chat"),
    ]
    if "h11" in stacks:
        out += [
            Target("tokenrelay chat, h11", "ours", "chat", "h11"),
            Target("tokenrelay `/v1/stream`, h11", "ours", "native", "h11"),
            Target("bare ASGI app, h11", "bare", "chat", "h11"),
        ]
    return out


def litellm_missing() -> str | None:
    """Why the LiteLLM column cannot run here, or None."""
    if not (PEERS_VENV / "bin" / "litellm").exists():
        return (
            f"no {PEERS_VENV.name}/bin/litellm: `make bench-peers` installs litellm[proxy]=={LITELLM_VERSION}"
        )
    return None


def pinned(command: list[str], cpu: int) -> list[str]:
    taskset = shutil.which("taskset")
    return [taskset, "-c", str(cpu), *command] if taskset and (os.cpu_count() or 1) > 1 else command


def free_port() -> int:
    from tests.support.server import free_port as pick

    return pick()


def request_for(target: Target, chunks: int, port: int) -> bytes:
    host = f"127.0.0.1:{port}"
    if target.dialect == "native":
        query = workload.native_target(chunks).split("?", 1)[1]
        return f"GET /v1/stream?{query} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    body = msgspec.json.encode(
        {
            "model": workload.MODEL,
            "stream": True,
            "max_tokens": chunks,
            "messages": [{"role": "user", "content": workload.PROMPT}],
        }
    )
    auth = f"Authorization: Bearer {LITELLM_KEY}\r\n" if target.app == "litellm" else ""
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{auth}"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def contents(body: bytes, dialect: str) -> list[str]:
    """The non-empty content deltas of a response body, in order."""
    if dialect == "native":
        return workload.decode_native_deltas(body)
    out: list[str] = []
    for raw in body.split(b"\n"):
        line = raw.strip()
        if not line.startswith(b"data:") or line.endswith(b"[DONE]"):
            continue
        chunk = msgspec.json.decode(line[5:])
        for choice in chunk.get("choices") or ():
            text = (choice.get("delta") or {}).get("content")
            if text:
                out.append(text)
    return out


def first_content_ns(recording: Recording, dialect: str) -> int | None:
    """When the read that completed the first content delta arrived."""
    marker = _CONTENT[dialect]
    seen = b""
    for arrived_ns, data in recording.reads:
        seen += data
        if marker.search(seen):
            return arrived_ns
    return None


@contextlib.contextmanager
def litellm_config(chunks: int) -> Iterator[Path]:
    text = msgspec.json.encode(workload.peer_text(chunks)).decode()  # a JSON string is a YAML string
    config = (
        "model_list:\n"
        f"  - model_name: {workload.MODEL}\n"
        "    litellm_params:\n"
        "      model: openai/bench\n"
        "      api_key: sk-unused\n"
        f"      mock_response: {text}\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "litellm.yaml"
        path.write_text(config)
        yield path


def server_command(target: Target, chunks: int, port: int, config: Path | None) -> list[str]:
    if target.app == "litellm":
        assert config is not None
        litellm = str(PEERS_VENV / "bin" / "litellm")
        command = [litellm, "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
        return pinned([*command, "--num_workers", "1"], 0)
    command = [
        sys.executable,
        "-m",
        "bench.serve",
        target.app,
        "--sliced",
        str(chunks),
        "--stack",
        target.stack,
    ]
    return pinned(command, 0)


def server_env(target: Target) -> dict[str, str]:
    env = dict(os.environ)
    if target.app == "litellm":
        # CLIENTS.md: it refuses to start without a master key, and fetches its cost map unless told not to.
        env.update(
            LITELLM_MASTER_KEY=LITELLM_KEY,
            LITELLM_LOCAL_MODEL_COST_MAP="True",
            LITELLM_LOG="ERROR",
            LITELLM_TELEMETRY="False",
        )
    return env


async def first_stream(port: int, request: bytes, dialect: str, started: float, limit_s: float) -> float:
    """Seconds from `started` (the spawn) to the first content chunk of the first stream that answers."""
    deadline = started + limit_s
    while time.perf_counter() < deadline:
        try:
            recording = await asyncio.wait_for(fetch(port, request), limit_s)
        except OSError:  # not listening yet
            await asyncio.sleep(0.05)
            continue
        arrived = first_content_ns(recording, dialect)
        if arrived is not None:
            return arrived / 1e9 - started
        await asyncio.sleep(0.05)  # listening, but not serving yet (LiteLLM answers 5xx while it starts)
    raise RuntimeError(f"no stream from port {port} within {limit_s:.0f} s")


@contextlib.contextmanager
def start(target: Target, chunks: int, config: Path | None) -> Iterator[Running]:
    port = free_port()
    command = server_command(target, chunks, port, config)
    started = time.perf_counter()
    with (
        tempfile.TemporaryFile() as log,
        subprocess.Popen(
            command, cwd=ROOT, env=server_env(target), stdout=subprocess.PIPE, stderr=log
        ) as process,
    ):
        try:
            if target.app != "litellm":
                assert process.stdout is not None
                line = process.stdout.readline()
                if not line.strip():
                    raise RuntimeError(f"{target.label} did not start (exit code {process.wait(10)})")
                port = int(line)
            request = request_for(target, chunks, port)
            limit_s = 120.0 if target.app == "litellm" else 30.0
            try:
                startup_s = asyncio.run(first_stream(port, request, target.dialect, started, limit_s))
            except RuntimeError:
                log.seek(0)
                raise RuntimeError(f"{target.label}: {log.read().decode(errors='replace')[-2000:]}") from None
            yield Running(port, process, startup_s)
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def run_load(
    target: Target, server: Running, *, concurrency: int, streams: int, chunks: int, budget_s: float
) -> Load:
    """`concurrency` clients, each streaming one answer after the other, `streams` in all (each at least
    one; none started after `budget_s`)."""
    request = request_for(target, chunks, server.port)
    load = Load(concurrency)
    left = streams
    started = time.perf_counter()
    cpu_before = server.cpu_s()

    async def client() -> None:
        nonlocal left
        first = True
        while left > 0 and (first or time.perf_counter() - started < budget_s):
            first = False
            left -= 1
            opened_ns = time.perf_counter_ns()
            recording = await asyncio.wait_for(fetch(server.port, request), 600)
            try:
                texts = contents(recording.body(), target.dialect)
            except (ValueError, msgspec.DecodeError):
                texts = []
            load.streams += 1
            load.chunks += len(texts)
            load.chars += sum(map(len, texts))
            if len(texts) != chunks or "".join(texts) != workload.peer_text(chunks):
                load.bad_streams += 1
            arrived = first_content_ns(recording, target.dialect)
            if arrived is not None:
                load.first_ms.append((arrived - opened_ns) / 1e6)

    await asyncio.gather(*(client() for _ in range(concurrency)))
    load.wall_s = time.perf_counter() - started
    load.cpu_s = server.cpu_s() - cpu_before
    return load


@dataclass(slots=True)
class Results:
    """Everything measured for one target."""

    loads: dict[int, list[Load]] = field(default_factory=dict)
    startup_s: float = 0.0
    rss_mb: float = 0.0
    missing: str | None = None


@dataclass(frozen=True, slots=True)
class Sizes:
    chunks: int
    rounds: int
    streams: dict[int, int]
    budget_s: float
    rss_streams: int
    rss_chunks: int


def measure(chosen: Sequence[Target], sizes: Sizes) -> dict[str, Results]:
    results = {target.label: Results() for target in chosen}
    missing = litellm_missing()
    runnable = []
    for target in chosen:
        if target.app == "litellm" and missing is not None:
            results[target.label].missing = missing
        else:
            runnable.append(target)
    with contextlib.ExitStack() as stack:
        config = stack.enter_context(litellm_config(sizes.chunks)) if missing is None else None
        servers: dict[str, Running] = {}
        for target in runnable:  # one after the other: each starts on a quiet machine
            servers[target.label] = stack.enter_context(start(target, sizes.chunks, config))
            results[target.label].startup_s = servers[target.label].startup_s
        for target in runnable:  # warm-up: first requests pay for lazy imports and caches
            asyncio.run(
                run_load(
                    target, servers[target.label], concurrency=4, streams=4, chunks=sizes.chunks, budget_s=1
                )
            )
        shuffler = random.Random(19)
        order = list(runnable)
        for _ in range(sizes.rounds):
            shuffler.shuffle(order)
            for target in order:
                for concurrency in CONCURRENCY:
                    load = asyncio.run(
                        run_load(
                            target,
                            servers[target.label],
                            concurrency=concurrency,
                            streams=sizes.streams[concurrency],
                            chunks=sizes.chunks,
                            budget_s=sizes.budget_s,
                        )
                    )
                    results[target.label].loads.setdefault(concurrency, []).append(load)
        for target in runnable:
            server = servers[target.label]
            asyncio.run(
                run_load(
                    target,
                    server,
                    concurrency=sizes.rss_streams,
                    streams=sizes.rss_streams,
                    chunks=sizes.rss_chunks,
                    budget_s=0,
                )
            )
            results[target.label].rss_mb = server.rss_mb()
    return results


def table(chosen: Sequence[Target], results: dict[str, Results], sizes: Sizes) -> str:
    def cell(target: Target, render: object) -> str:
        result = results[target.label]
        if result.missing is not None:
            return "not run"
        assert callable(render)
        value: str = render(result)
        return value

    def rate(concurrency: int, chars: bool = False) -> object:
        def render(result: Results) -> str:
            loads = result.loads[concurrency]
            value = median(x.chars_per_s if chars else x.chunks_per_s for x in loads)
            return f"{value / 1000:.2f}k"

        return render

    def rates(chars: bool = False) -> object:
        return lambda r: " / ".join(rate(c, chars)(r) for c in CONCURRENCY)  # type: ignore[operator]

    def first(concurrency: int) -> object:
        def render(result: Results) -> str:
            samples = [ms for load in result.loads[concurrency] for ms in load.first_ms]
            return f"{percentile(samples, 50):.2f} / {percentile(samples, 99):.1f}"

        return render

    def cpu(result: Results) -> str:
        loads = [load for per in result.loads.values() for load in per]
        return f"{sum(x.cpu_s for x in loads) / max(1, sum(x.chunks for x in loads)) * 1000:.3f}"

    def bad(result: Results) -> str:
        loads = [load for per in result.loads.values() for load in per]
        return f"{sum(x.bad_streams for x in loads)} of {sum(x.streams for x in loads)}"

    figures: list[tuple[str, object]] = [
        ("content chunks/s at concurrency 1 / 16 / 64", rates()),
        ("characters/s at concurrency 1 / 16 / 64", rates(chars=True)),
        ("first content chunk p50 / p99, c=1 (ms)", first(1)),
        ("first content chunk p50 / p99, c=64 (ms)", first(64)),
        ("server CPU s per 1,000 chunks", cpu),
        (f"RSS after {sizes.rss_streams} concurrent streams (MB)", lambda r: f"{r.rss_mb:.0f}"),
        ("startup to first stream (s)", lambda r: f"{r.startup_s:.2f}"),
        ("streams with a wrong chunk count or text", bad),
    ]
    header = ["figure", *(t.label for t in chosen)]
    rows = [[name, *(cell(t, render) for t in chosen)] for name, render in figures]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    out = [f"### {TITLE}", "", line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(row) for row in rows]
    return "\n".join(out)


def ratios(chosen: Sequence[Target], results: dict[str, Results]) -> list[str]:
    """The ratios the issue asks about, at concurrency 16, same stack on both sides."""

    def rate(label: str) -> float | None:
        result = results.get(label)
        if result is None or result.missing is not None:
            return None
        return median(load.chunks_per_s for load in result.loads[16])

    labels = {t.label for t in chosen}
    pairs = [
        ("tokenrelay `/v1/chat/completions`", "bare ASGI app"),
        ("tokenrelay `/v1/stream`", "bare ASGI app"),
        ("tokenrelay `/v1/chat/completions`", "FastAPI + sse-starlette"),
        ("tokenrelay `/v1/chat/completions`", "LiteLLM proxy (`mock_response`)"),
        ("tokenrelay `/v1/chat/completions`", "tokenrelay chat, h11"),
        ("tokenrelay `/v1/stream`", "tokenrelay `/v1/stream`, h11"),
        ("bare ASGI app", "bare ASGI app, h11"),
        ("tokenrelay chat, h11", "bare ASGI app, h11"),
    ]
    out = []
    for ours, theirs in pairs:
        if ours in labels and theirs in labels:
            a, b = rate(ours), rate(theirs)
            if a is not None and b:
                out.append(f"{ours} / {theirs}: {a / b:.2f}x")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = report.parser(__doc__)
    parser.add_argument(
        "--chunks", type=int, default=200, help="content chunks per stream (3 characters each)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--stacks", default="fast,h11", help="fast, or fast,h11 (columns on asyncio + h11 too)"
    )
    parser.add_argument("--budget-s", type=float, default=8.0, help="no new stream after this long per load")
    parser.add_argument("--rss-streams", type=int, default=500)
    parser.add_argument("--rss-chunks", type=int, default=40, help="chunks per stream of the memory load")
    parser.add_argument("--no-litellm", action="store_true", help="leave the LiteLLM column out")
    args = parser.parse_args(argv)
    stacks = [s for s in args.stacks.split(",") if s]
    if args.smoke:
        sizes = Sizes(20, 1, {1: 2, 16: 16, 64: 64}, 1.0, 64, 5)
    else:
        sizes = Sizes(
            args.chunks,
            args.rounds,
            {1: 20, 16: 96, 64: 192},
            args.budget_s,
            args.rss_streams,
            args.rss_chunks,
        )
    chosen = [t for t in targets(stacks) if not (args.no_litellm and t.app == "litellm")]
    raise_fd_limit()
    with contextlib.suppress(AttributeError, OSError):  # the client on CPU 1, the servers on CPU 0
        if (os.cpu_count() or 1) > 1 and shutil.which("taskset"):
            os.sched_setaffinity(0, {1})
    results = measure(chosen, sizes)
    print(table(chosen, results, sizes), flush=True)
    notes = [
        "",
        f"Every app streams the same {sizes.chunks * workload.PEER_SLICE_CHARS}-character answer in "
        f"{sizes.chunks} content chunks of {workload.PEER_SLICE_CHARS} characters (LiteLLM's "
        "`mock_response` slicing; the others through `bench.workload.SlicedTextProvider`), at no delay; "
        "chunks and characters are counted from what the client received. One uvicorn worker each; "
        + (
            "server on CPU 0, client on CPU 1 (`taskset`)."
            if shutil.which("taskset") and (os.cpu_count() or 1) > 1
            else "no CPU pinning (no taskset or one CPU)."
        ),
        f"{sizes.rounds} rounds, apps in shuffled order each round, medians of rounds; per load at most "
        f"{sizes.streams[1]} / {sizes.streams[16]} / {sizes.streams[64]} streams at concurrency 1 / 16 / 64 "
        f"and no new one after {sizes.budget_s:g} s; first-content percentiles pooled over the rounds; CPU "
        f"over every load; RSS once, after {sizes.rss_streams} concurrent streams of {sizes.rss_chunks} "
        "chunks; startup once, each server started alone.",
        "Stacks: tokenrelay, FastAPI and the bare app on uvloop + httptools unless marked h11 "
        f"(asyncio + h11); LiteLLM {LITELLM_VERSION} as its CLI starts it (uvloop).",
        *(f"LiteLLM not run: {r.missing}." for r in results.values() if r.missing),
        "",
        "Ratios of chunks/s at concurrency 16: " + "; ".join(ratios(chosen, results)) + ".",
    ]
    print("\n".join(notes), flush=True)
    print(flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
