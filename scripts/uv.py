"""Where the project's pinned uv is: `make` bootstraps it into .tools/ and exports its path as UV."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def uv_binary() -> str:
    """The uv `make` installed (UV, else the newest under .tools/), else one on PATH."""
    found = os.environ.get("UV") or next(iter(sorted(ROOT.glob(".tools/uv-*/bin/uv"), reverse=True)), None)
    found = found or shutil.which("uv")
    if not found:
        raise RuntimeError("uv not found: run this through `make`, which installs the pinned uv in .tools/")
    return str(found)


def locked_runtime_requirements(root: Path = ROOT) -> list[str]:
    """The runtime dependencies exactly as uv.lock pins them (no extras, not the project), with hashes."""
    done = subprocess.run(
        [uv_binary(), "export", "--frozen", "--no-dev", "--no-emit-project", "--no-header", "--no-annotate",
         "--format", "requirements.txt"],
        cwd=root, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"uv export failed:\n{done.stderr}")
    return _requirement_lines(done.stdout)


def _requirement_lines(exported: str) -> list[str]:
    """One requirement per entry: uv writes each hash on a continuation line."""
    return [line for line in exported.replace("\\\n", " ").splitlines() if line.strip()]
