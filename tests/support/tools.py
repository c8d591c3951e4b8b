"""External tools of the Lambda tests: where the tests find them, and how `make` fetches them.

- AWS's Runtime Interface Emulator, the Go binary that `sam local` runs, shipped inside the aws-sam-cli
  wheel on PyPI: only that wheel is unpacked (`--no-deps`), never SAM CLI's dependencies.
- Serverless Framework v3 from npm, which packages serverless.yml offline into CloudFormation, and the
  JavaScript clients our users run (the `openai` package): installed by `npm ci` into
  tests/node/node_modules from tests/node/package-lock.json, so every one of their dependencies is the
  locked one.

`python -m tests.support.tools` (run by `make test` whenever the lock changed) fetches the emulator into
`.venv/lambda-tools` and installs the Node packages. A test whose tool is missing is skipped with the
reason; without npm, only the Serverless one is.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Final

from scripts.uv import uv_binary

ROOT: Final = Path(__file__).resolve().parents[2]
TOOLS: Final = ROOT / ".venv" / "lambda-tools"
NODE_PROJECT: Final = ROOT / "tests" / "node"
SAM_CLI_VERSION: Final = "1.170.0"

_RIE_ARCH: Final = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}


def rie_binary(tools: Path = TOOLS) -> Path | None:
    path = tools / "aws-lambda-rie"
    return path if os.access(path, os.X_OK) else None


def serverless_cli(project: Path = NODE_PROJECT) -> Path | None:
    path = project / "node_modules" / ".bin" / "serverless"
    return path if path.exists() and shutil.which("node") else None


def node_script_runner(package: str, project: Path = NODE_PROJECT) -> str | None:
    """`node`, if it is installed and `package` is in tests/node's node_modules (`npm ci` put it there)."""
    node = shutil.which("node")
    if node is None or not (project / "node_modules" / package / "package.json").exists():
        return None
    return node


def run_node_client(package: str, script: str, *args: str, stdin: str | None = None) -> Any:
    """Run `tests/node/clients/<script>` (a client app built on `package`) and return the JSON it prints.

    Skips the test, saying why, when node or the package is missing; fails it when the script does.
    """
    import pytest  # only the tests call this; `python -m tests.support.tools` runs without pytest

    node = node_script_runner(package)
    if node is None:
        pytest.skip(f"node, or the {package} npm package (make test runs npm ci in tests/node), is missing")
    done = subprocess.run(
        [node, str(NODE_PROJECT / "clients" / script), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def fetch_rie(tools: Path = TOOLS) -> Path:
    """Unpack the aws-sam-cli wheel (8 MB) and take the emulator for this machine out of it."""
    arch = _RIE_ARCH[platform.machine().lower()]
    unpacked = tools / "aws-sam-cli"
    subprocess.run(
        [uv_binary(), "pip", "install", "--quiet", "--no-deps", "--only-binary", ":all:", "--target",
         str(unpacked), "--python", sys.executable, f"aws-sam-cli=={SAM_CLI_VERSION}"],
        check=True,
    )  # fmt: skip
    target = tools / "aws-lambda-rie"
    shutil.copyfile(unpacked / "samcli" / "local" / "rapid" / f"aws-lambda-rie-{arch}", target)
    target.chmod(0o755)
    shutil.rmtree(unpacked)
    return target


def install_node_packages(project: Path = NODE_PROJECT) -> bool:
    """`npm ci` in tests/node: exactly what its package-lock.json says; False without npm."""
    npm = shutil.which("npm")
    if npm is None:
        print("npm not found: the tests that need Node packages will be skipped", file=sys.stderr)
        return False
    subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=project, check=True)
    return True


def main() -> int:
    TOOLS.mkdir(parents=True, exist_ok=True)
    if rie_binary() is None:
        print(f"Runtime Interface Emulator: {fetch_rie()}")
    if install_node_packages():
        print(f"Serverless Framework: {serverless_cli()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
