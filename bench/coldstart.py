"""Cold start: from spawning a fresh Python process to the first byte of its first response.

Each figure is a new process (`subprocess`), repeated in shuffled rounds; medians. The child prints
`time.perf_counter()` (CLOCK_MONOTONIC, shared with this process) at the moment that counts:

- `import litestar`: the floor any Litestar service pays (the target's reference);
- ours in-process: `create_app()` from the environment, then `GET /v1/stream` until its first body byte;
- the buffered Lambda handler: `handler.handler(event, context)` has returned;
- the streaming Lambda runtime (`app/lambda_/bootstrap`, as Lambda starts it, with an invocation waiting):
  the fake Runtime API of the Lambda tests received the first body chunk after the prelude;
- the baseline: a minimal Mangum + FastAPI function (`bench/baselines/mangum_fastapi.py`) has returned.

With the OpenAI provider selected, requests go to a local stand-in server (`bench/fake_openai.py`); with
Bedrock, botocore talks to the fake Bedrock Runtime of the tests (`tests/support/fake_bedrock.py`).
The streaming runtime is measured again with the AWS features on (`CANCEL_TABLE`, so `STREAM_TABLE` too),
the table served by dynalite on loopback (or, without node, an endpoint that refuses connections: the
background writes then fail and are logged, which is what the first byte must not wait for either); its
target is 1.2x the same function without the table. `python -X importtime` then lists what the mock path
imports, heaviest first, and what the OpenAI provider adds.

    python -m bench.coldstart [--runs 7] [--only-lambda] [--smoke]
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from bench import report
from bench.client import ROOT
from bench.coldstart_event import function_url_event
from bench.fake_openai import fake_openai
from bench.lambda_host import first_body_chunk_at, lambda_environment, running_fake, start_runtime
from bench.report import Row, median, print_table, ratio
from tests.support.fake_bedrock import REGION, fake_bedrock, offline_bedrock_credentials

TITLE = "Cold start: fresh process to the first byte of the first response"
IMPORT_TITLE = "Import time of the mock path (`python -X importtime`), heaviest distributions"
TARGET = 1.5
TABLE_TARGET = 1.2
TABLE = "tokenrelay-bench-cancels"

_PRINT_NOW = "import time as _t; print(_t.perf_counter(), flush=True)"

# Drives the app in-process: a recording `send` that notes the first body byte.
_ASGI_FIRST_BYTE = """
import asyncio, time
from app.factory import create_app
app = create_app()
first = []
async def main():
    done = asyncio.Event()
    delivered = False
    async def receive():
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}
    async def send(message):
        if message["type"] == "http.response.body":
            if message.get("body") and not first:
                first.append(time.perf_counter())
            if not message.get("more_body"):
                done.set()
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": "/v1/stream", "raw_path": b"/v1/stream",
             "query_string": b"prompt=hello", "root_path": "", "headers": [(b"host", b"localhost")],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000), "state": {}}
    await app(scope, receive, send)
asyncio.run(main())
print(first[0], flush=True)
"""

_BUFFERED_HANDLER = """
import time
import handler
from bench.coldstart_event import function_url_event, lambda_context
response = handler.handler(function_url_event(), lambda_context())
assert response["statusCode"] == 200, response
print(time.perf_counter(), flush=True)
"""

_MANGUM_FASTAPI = """
import time
from bench.baselines.mangum_fastapi import handler
from bench.coldstart_event import function_url_event, lambda_context
response = handler(function_url_event(), lambda_context())
assert response["statusCode"] == 200, response
print(time.perf_counter(), flush=True)
"""


@dataclass(frozen=True, slots=True)
class Scenario:
    """One kind of fresh process and what it does before it reports."""

    label: str
    code: str
    env: Mapping[str, str] = field(default_factory=dict)
    openai: bool = False
    streaming_runtime: bool = False
    table: bool = False


def scenarios() -> list[Scenario]:
    return [
        Scenario("python", _PRINT_NOW),
        Scenario("import litestar", "import litestar\n" + _PRINT_NOW),
        Scenario("ours in-process, mock", _ASGI_FIRST_BYTE, {"PROVIDER": "mock"}),
        Scenario("ours in-process, openai", _ASGI_FIRST_BYTE, {"PROVIDER": "openai"}, openai=True),
        Scenario("ours buffered handler, mock", _BUFFERED_HANDLER, {"PROVIDER": "mock"}),
        Scenario("ours buffered handler, openai", _BUFFERED_HANDLER, {"PROVIDER": "openai"}, openai=True),
        Scenario("ours streaming runtime, mock", "", {"PROVIDER": "mock"}, streaming_runtime=True),
        Scenario(
            "ours streaming runtime, openai", "", {"PROVIDER": "openai"}, openai=True, streaming_runtime=True
        ),
        Scenario("ours in-process, bedrock", _ASGI_FIRST_BYTE, _BEDROCK),
        Scenario("ours streaming runtime, bedrock", "", _BEDROCK, streaming_runtime=True),
        Scenario(
            "ours streaming runtime, mock, CANCEL_TABLE",
            "",
            {"PROVIDER": "mock"},
            streaming_runtime=True,
            table=True,
        ),
        Scenario(
            "ours streaming runtime, openai, CANCEL_TABLE",
            "",
            {"PROVIDER": "openai"},
            openai=True,
            streaming_runtime=True,
            table=True,
        ),
        Scenario("Mangum + FastAPI", _MANGUM_FASTAPI),
    ]


# The endpoint is added when the fake runs (`with_bedrock_endpoint`).
_BEDROCK = offline_bedrock_credentials(
    {
        "PROVIDER": "bedrock",
        "BEDROCK_MODELS": "fake.echo",
        "BEDROCK_REGION": REGION,
        "BEDROCK_MAX_RETRIES": "0",
    }
)


def with_bedrock_endpoint(scenario: Scenario, endpoint_url: str) -> Scenario:
    if scenario.env.get("PROVIDER") != "bedrock":
        return scenario
    return dataclasses.replace(
        scenario, env={**scenario.env, "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": endpoint_url}
    )


@contextlib.contextmanager
def table_endpoint() -> Iterator[tuple[str, str]]:
    """A DynamoDB endpoint on loopback with the cancel table (dynalite), or one that refuses connections."""
    from tests.support.aws import create_declared_table, dynamodb_client, running_dynalite
    from tests.support.server import free_port
    from tests.support.tools import node_script_runner

    node = node_script_runner("dynalite")
    if node is None:
        yield f"http://127.0.0.1:{free_port()}", "an endpoint that refuses connections (no node/dynalite)"
        return
    with running_dynalite(node) as endpoint:
        create_declared_table(dynamodb_client(endpoint), TABLE, time_to_live=False)
        yield endpoint, "dynalite on loopback"


def table_env(endpoint: str) -> dict[str, str]:
    """`CANCEL_TABLE` (the stream log shares it) on `endpoint`, with credentials that reach no account."""
    return {
        "CANCEL_TABLE": TABLE,
        "AWS_ENDPOINT_URL_DYNAMODB": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }


def child_env(extra: Mapping[str, str], base_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "PROVIDER", "API_KEYS"))}
    env.update({"PYTHONPATH": str(ROOT), "LOG_LEVEL": "WARNING", "PYTHONDONTWRITEBYTECODE": "1"})
    env.update(extra)
    if env.get("PROVIDER") == "openai":
        env.update({"OPENAI_API_KEY": "sk-bench", "OPENAI_BASE_URL": base_url})
    return env


def spawn_to_first_byte(scenario: Scenario, base_url: str, table: Mapping[str, str]) -> float:
    """Seconds from spawning the process to the moment it reports."""
    if scenario.streaming_runtime:
        return runtime_to_first_byte(scenario, base_url, table)
    env = child_env(scenario.env, base_url)
    started = time.perf_counter()
    command = [sys.executable, "-c", scenario.code]
    done = subprocess.run(
        command, check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        raise RuntimeError(f"{scenario.label} failed:\n{done.stderr[-2000:]}")
    return float(done.stdout.split()[-1]) - started


def runtime_to_first_byte(scenario: Scenario, base_url: str, table: Mapping[str, str]) -> float:
    """Seconds from spawning the streaming runtime to the fake Runtime API's first body chunk."""
    extra = dict(scenario.env)
    if scenario.table:
        extra.update(table)
    if extra.get("PROVIDER") == "openai":
        extra.update(OPENAI_API_KEY="sk-bench", OPENAI_BASE_URL=base_url)
    with running_fake() as fake:  # a fresh one: a stale long poll must not take the next invocation
        request_id = fake.invoke(function_url_event())
        started = time.perf_counter()
        with start_runtime(fake, env=lambda_environment(fake, **extra)):
            response = fake.response(request_id, timeout_s=60)
        return first_body_chunk_at(response) - started


def measure(runs: int, chosen: Sequence[Scenario]) -> tuple[dict[str, list[float]], str]:
    samples: dict[str, list[float]] = {s.label: [] for s in chosen}
    shuffler = random.Random(5)
    with (
        fake_openai() as base_url,
        fake_bedrock() as bedrock,
        table_endpoint() as (endpoint, served_by),
    ):
        order = [with_bedrock_endpoint(scenario, bedrock.endpoint_url) for scenario in chosen]
        table = table_env(endpoint)
        for scenario in order:  # warm the page cache: every figure is a warm-disk cold start
            spawn_to_first_byte(scenario, base_url, table)
        for _ in range(runs):
            shuffler.shuffle(order)
            for scenario in order:
                samples[scenario.label].append(spawn_to_first_byte(scenario, base_url, table))
    return samples, served_by


def import_offenders(code: str, env: Mapping[str, str], top: int) -> list[tuple[str, float]]:
    """Distributions by the import time of all their modules (ms, self times added up), one fresh process."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        cwd=ROOT,
        env=child_env(env, "http://127.0.0.1:9/v1"),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    totals: dict[str, float] = {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        own, _, name = (part for part in line.removeprefix("import time:").split("|"))
        package = name.strip().split(".")[0]
        totals[package] = totals.get(package, 0.0) + int(own) / 1000
    return sorted(totals.items(), key=lambda item: -item[1])[:top]


def loaded_modules(code: str, env: Mapping[str, str]) -> set[str]:
    probe = code.rsplit("print(", 1)[0] + "import sys\nprint(' '.join(sorted(sys.modules)))\n"
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env=child_env(env, "http://127.0.0.1:9/v1"),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return {name.split(".")[0] for name in done.stdout.split()}


def rows(samples: dict[str, list[float]]) -> list[Row]:
    ms = {label: median(values) * 1000 for label, values in samples.items()}
    floor = ms["import litestar"]
    out = [
        Row("python -c pass (the interpreter alone)", f"{ms['python']:.0f} ms"),
        Row("import litestar (reference)", f"{floor:.0f} ms"),
    ]
    baseline = ms["Mangum + FastAPI"]
    for label, ours in ms.items():
        if not label.startswith("ours"):
            continue
        if label.endswith(", CANCEL_TABLE"):
            without = ms[label.removesuffix(", CANCEL_TABLE")]
            out.append(
                Row(
                    f"{label} vs without the table",
                    f"{ours:.0f} ms",
                    f"{without:.0f} ms",
                    ratio(ours, without),
                    f"≤ {TABLE_TARGET:.1f}x",
                    ours <= TABLE_TARGET * without,
                )
            )
            continue
        mock = label.endswith("mock")
        out.append(
            Row(
                f"{label} vs import litestar",
                f"{ours:.0f} ms",
                f"{floor:.0f} ms",
                ratio(ours, floor),
                f"≤ {TARGET:.1f}x" if mock else "",
                ours <= TARGET * floor if mock else None,
            )
        )
        out.append(
            Row(f"{label} vs Mangum + FastAPI", f"{ours:.0f} ms", f"{baseline:.0f} ms", ratio(ours, baseline))
        )
    return out


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


def main(argv: Sequence[str] | None = None) -> int:
    parser = report.parser(__doc__)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument(
        "--only-lambda", action="store_true", help="the streaming runtime (with and without the table) only"
    )
    args = parser.parse_args(argv)
    runs = 1 if args.smoke else args.runs
    chosen = scenarios()
    if args.only_lambda:
        chosen = [s for s in chosen if s.streaming_runtime or not s.label.startswith("ours")]
    samples, served_by = measure(runs, chosen)
    print_table(
        TITLE,
        rows(samples),
        [
            f"{runs} fresh processes per figure, shuffled rounds, medians. The table: {served_by}.",
        ],
    )
    if args.only_lambda:
        return 0
    mock = next(s for s in chosen if s.label == "ours in-process, mock")
    modules = loaded_modules(mock.code, mock.env)
    offenders = import_offenders(mock.code, mock.env, top=5 if args.smoke else 12)
    import_rows = [Row(f"import {name}", f"{cost:.0f} ms") for name, cost in offenders]
    import_rows += [
        Row(
            "mock path imports openai",
            "yes" if "openai" in modules else "no",
            "",
            "",
            "no",
            "openai" not in modules,
        ),
        Row("mock path imports pydantic", _yes_no("pydantic" in modules)),
    ]
    print_table(
        IMPORT_TITLE, import_rows, ["Self times of every module of a distribution, added up; one process."]
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
