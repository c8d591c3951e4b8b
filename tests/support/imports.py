"""What a fresh interpreter has imported once it has built the app: the cold-start import tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_PROBE = """
import sys
from app.factory import create_app
create_app()
print(" ".join(sorted({name.split(".")[0] for name in sys.modules})))
"""


def modules_after_create_app(**env: str) -> set[str]:
    """The top-level packages loaded by `create_app()` in a new process, with `env` set and none of the
    provider's or AWS's variables of this environment."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "OPENAI_", "PROVIDER"))}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd=ROOT,
        env={**clean, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return set(done.stdout.split())
