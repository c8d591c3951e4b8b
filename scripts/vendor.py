"""The page's vendored JavaScript: fetched at pinned versions from npm, checked, written beside its licence.

    python -m scripts.vendor           # fetch every package in the manifest again (`make vendor`)
    python -m scripts.vendor --check   # offline: the files on disk are the ones the manifest names

The manifest (app/http/static/vendor/vendor.json) pins each package's version and the `sha512` integrity the
npm registry published for its tarball. Fetching asks the registry (through `npm`, its ordinary client) for
that version's integrity, refuses a mismatch, downloads the tarball with `npm pack`, checks its own sha512
against the pin, and copies the listed files out of it byte for byte, recording their sha256 so that
`--check` (and a test) can tell an edited or stale vendored file without a network.

No build step: the page imports the files as they are published.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENDOR = ROOT / "app" / "http" / "static" / "vendor"
MANIFEST = VENDOR / "vendor.json"


class VendorError(Exception):
    """Raised when a vendored package cannot be fetched or does not match its pin."""


def load_manifest(path: Path = MANIFEST) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return manifest


def sha512_integrity(data: bytes) -> str:
    """The Subresource-Integrity form npm publishes (`sha512-<base64>`)."""
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def _npm(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(["npm", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise VendorError(f"npm {' '.join(args)} failed:\n{done.stderr.strip()}")
    return done.stdout


def fetch_package(name: str, pin: dict[str, Any], vendor: Path = VENDOR) -> dict[str, str]:
    """Download `name` at its pinned version, verify it, copy its files; their sha256 by vendored name."""
    spec = f"{name}@{pin['version']}"
    published = json.loads(_npm("view", spec, "dist.integrity", "--json"))
    if published != pin["integrity"]:
        raise VendorError(f"{spec}: the registry publishes {published}, the manifest pins {pin['integrity']}")
    with tempfile.TemporaryDirectory() as scratch:
        packed = json.loads(_npm("pack", spec, "--json", "--pack-destination", scratch, cwd=Path(scratch)))
        tarball = Path(scratch) / packed[0]["filename"]
        data = tarball.read_bytes()
        if sha512_integrity(data) != pin["integrity"]:
            raise VendorError(f"{spec}: the downloaded tarball does not match the pinned sha512")
        hashes: dict[str, str] = {}
        with tarfile.open(tarball) as archive:
            for source, target in pin["files"].items():
                member = archive.extractfile(f"package/{source}")
                if member is None:
                    raise VendorError(f"{spec}: no file {source!r} in the package")
                body = member.read()
                (vendor / target).write_bytes(body)
                hashes[target] = hashlib.sha256(body).hexdigest()
    return hashes


def check(manifest: dict[str, Any], vendor: Path = VENDOR) -> list[str]:
    """What differs between the vendored files and the manifest; empty when they agree."""
    problems: list[str] = []
    for name, pin in manifest["packages"].items():
        for target, expected in pin["sha256"].items():
            path = vendor / target
            if not path.is_file():
                problems.append(f"{name}: {target} is missing (run `make vendor`)")
            elif hashlib.sha256(path.read_bytes()).hexdigest() != expected:
                problems.append(f"{name}: {target} differs from {name}@{pin['version']} (run `make vendor`)")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="verify the files on disk, offline")
    args = parser.parse_args(argv)
    manifest = load_manifest()
    if args.check:
        problems = check(manifest)
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    try:
        for name, pin in manifest["packages"].items():
            pin["sha256"] = fetch_package(name, pin)
            print(f"{name}@{pin['version']}: {', '.join(pin['files'].values())} ({pin['integrity'][:19]}…)")
    except VendorError as exc:
        print(exc, file=sys.stderr)
        return 1
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
