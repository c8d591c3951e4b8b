"""External tools of the Lambda tests: where the tests find them, and how `make` fetches them.

- AWS's Runtime Interface Emulator, the Go binary that `sam local` runs, shipped inside the aws-sam-cli
  wheel on PyPI: only the wheel is downloaded (`--no-deps`), never SAM CLI's dependencies.
- Serverless Framework v3 from npm, which packages serverless.yml offline into CloudFormation.

`python -m tests.lambda_.tools` (run by `make test`) fetches both into `.venv/lambda-tools`. A test whose
tool is missing is skipped with the reason; without npm, only the Serverless one is.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[2]
TOOLS: Final = ROOT / ".venv" / "lambda-tools"
SAM_CLI_VERSION: Final = "1.170.0"
SERVERLESS_VERSION: Final = "3.40.0"

_RIE_ARCH: Final = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}


def rie_binary(tools: Path = TOOLS) -> Path | None:
    path = tools / "aws-lambda-rie"
    return path if os.access(path, os.X_OK) else None


def serverless_cli(tools: Path = TOOLS) -> Path | None:
    path = tools / "serverless" / "node_modules" / ".bin" / "serverless"
    return path if path.exists() and shutil.which("node") else None


def fetch_rie(tools: Path = TOOLS) -> Path:
    """Download the aws-sam-cli wheel (8 MB) and take the emulator for this machine out of it."""
    arch = _RIE_ARCH[platform.machine().lower()]
    wheels = tools / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--only-binary=:all:",
            "--dest",
            str(wheels),
            f"aws-sam-cli=={SAM_CLI_VERSION}",
        ],
        check=True,
    )
    [wheel] = wheels.glob(f"aws_sam_cli-{SAM_CLI_VERSION}-*.whl")
    target = tools / "aws-lambda-rie"
    with zipfile.ZipFile(wheel) as archive, archive.open(f"samcli/local/rapid/aws-lambda-rie-{arch}") as src:
        target.write_bytes(src.read())
    target.chmod(0o755)
    return target


def fetch_serverless(tools: Path = TOOLS) -> Path | None:
    npm = shutil.which("npm")
    if npm is None:
        print("npm not found: the serverless.yml packaging test will be skipped", file=sys.stderr)
        return None
    prefix = tools / "serverless"
    subprocess.run(
        [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--loglevel=error",
         f"serverless@{SERVERLESS_VERSION}"],
        check=True,
    )  # fmt: skip
    return serverless_cli(tools)


def main() -> int:
    TOOLS.mkdir(parents=True, exist_ok=True)
    if rie_binary() is None:
        print(f"Runtime Interface Emulator: {fetch_rie()}")
    if serverless_cli() is None:
        print(f"Serverless Framework: {fetch_serverless()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
