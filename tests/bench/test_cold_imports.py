"""The mock path's cold start stays lean: building the app imports neither openai nor pydantic."""

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


def test_the_mock_path_imports_neither_openai_nor_pydantic() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "PROVIDER"))}
    env["PROVIDER"] = "mock"
    done = subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    loaded = set(done.stdout.split())

    assert "litestar" in loaded
    assert "openai" not in loaded
    assert "pydantic" not in loaded
    assert "botocore" not in loaded


def test_the_bedrock_path_imports_botocore_but_not_openai_nor_boto3() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "PROVIDER"))}
    env.update(PROVIDER="bedrock", BEDROCK_MODELS="amazon.nova-lite-v1:0", BEDROCK_REGION="us-east-1")
    done = subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    loaded = set(done.stdout.split())

    assert "botocore" in loaded
    assert "openai" not in loaded
    assert "boto3" not in loaded
