"""`make fuzz`: schemathesis, every check, against the OpenAPI document of a `python -m app` on loopback.

The server runs the mock with short budgets (a fuzzed `mock.stall_ms` of ten minutes then ends as the
documented 504 in a second, not as a client time-out); `tests/schemathesis.toml` says which statuses are
expected and why. Exits with schemathesis's status.

    python -m scripts.fuzz [--port 18765] [--examples 20]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_SERVER_ENV = {
    "PROVIDER": "mock",
    "HOST": "127.0.0.1",
    "MOCK_TOKEN_DELAY_MS": "0",
    "STREAM_IDLE_TIMEOUT_S": "1",
    "STREAM_DEADLINE_S": "3",
    "LOG_LEVEL": "WARNING",
}


def _wait_until_healthy(base_url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{base_url}/healthz", timeout=2) as answer:  # noqa: S310 - loopback
                if answer.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server at {base_url} did not become healthy") from None
        time.sleep(0.1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=18765)
    parser.add_argument("--examples", type=int, default=20, help="examples per operation and phase")
    args = parser.parse_args(argv)
    base_url = f"http://127.0.0.1:{args.port}"
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "API_KEYS", "PROVIDER"))}
    server = subprocess.Popen(
        [sys.executable, "-m", "app"], cwd=ROOT, env={**keep, **_SERVER_ENV, "PORT": str(args.port)}
    )
    try:
        _wait_until_healthy(base_url)
        schemathesis = Path(sys.executable).with_name("schemathesis")
        command = [
            str(schemathesis),
            "--config-file",
            str(ROOT / "tests" / "schemathesis.toml"),
            "run",
            f"{base_url}/schema/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            str(args.examples),
            "--request-timeout",
            "10",
        ]
        return subprocess.run(command, cwd=ROOT, check=False).returncode
    finally:
        server.terminate()
        server.wait(timeout=15)


if __name__ == "__main__":
    raise SystemExit(main())
