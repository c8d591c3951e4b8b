"""The Chromium the browser tests drive: found, fetched once, or reported missing with how to get it.

In this order: the `CHROMIUM` variable (a path), Debian's `chromium` on PATH, then Playwright's own download
(`python -m playwright install chromium`, which `make test` tries once and which fails where browser
downloads are blocked). With none of them the browser tests are skipped with `MISSING`, except in CI, where
they must run: there a missing browser fails them.

`python -m tests.support.browser` prints which browser the tests will use, or that they will be skipped;
with `--fetch` it first tries Playwright's download when no browser is found.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

MISSING: Final = (
    "no Chromium for the browser tests: `apt-get install chromium`, "
    "or `.venv/bin/python -m playwright install chromium`, or set CHROMIUM=/path/to/chromium"
)
_FETCH_TIMEOUT_S: Final = 600


@dataclass(frozen=True, slots=True)
class Chromium:
    """A browser binary the tests can launch, and where it was found."""

    path: Path
    source: str


def in_ci(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether this runs in CI (`.ci/run` is started with CI=true), where no browser test may be skipped."""
    return environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def find_chromium(environ: Mapping[str, str] = os.environ) -> Chromium | None:
    explicit = environ.get("CHROMIUM", "").strip()
    if explicit:
        path = Path(explicit)
        # Named but unusable is a mistake to report, not a reason to look elsewhere.
        if not os.access(path, os.X_OK):
            raise FileNotFoundError(f"CHROMIUM={explicit!r} is not an executable file")
        return Chromium(path, "$CHROMIUM")
    debian = shutil.which("chromium")
    if debian is not None:
        return Chromium(Path(debian), "Debian's chromium")
    downloaded = _playwright_chromium()
    if downloaded is not None:
        return Chromium(downloaded, "Playwright's download")
    return None


def _playwright_chromium() -> Path | None:
    """Where `playwright install chromium` puts its browser, if it is there."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        path = Path(playwright.chromium.executable_path)
    return path if os.access(path, os.X_OK) else None


def fetch() -> None:
    """Try Playwright's browser download once; its failure is reported, never raised."""
    command = [sys.executable, "-m", "playwright", "install", "chromium"]
    print("no Chromium found: trying `python -m playwright install chromium`", flush=True)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=_FETCH_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        print(f"  the download did not finish within {_FETCH_TIMEOUT_S} s")
        return
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()
        print(f"  the download failed ({last[0] if last else f'exit {done.returncode}'})")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fetch", action="store_true", help="try Playwright's download if none is found")
    args = parser.parse_args(argv)
    try:
        found = find_chromium()
        if found is None and args.fetch:
            fetch()
            found = find_chromium()
    except FileNotFoundError as exc:
        print(f"browser tests: {exc}")
        return 1
    if found is not None:
        print(f"browser tests: {found.source} at {found.path}")
    elif in_ci():
        print(f"browser tests will FAIL (CI must run them): {MISSING}")
    else:
        print(f"browser tests will be SKIPPED: {MISSING}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
