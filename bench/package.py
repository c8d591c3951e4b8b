"""Package size: the zipped Lambda artifact for arm64 / python3.12, ours beside what `sam build` would ship.

Baseline: the runtime dependencies as `sam build` installs them (binary wheels for the target, no
bytecode) plus our code. Ours: `scripts/lambda_package.py` (what `make package` ships): the same, trimmed
of what never runs on Lambda, plus bytecode for the modules a cold start imports. Wheels are fetched from
PyPI once; `--smoke` fetches nothing and packages a small local stand-in instead.

    python -m bench.package [--arch arm64] [--python-version 3.12] [--smoke]
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

from bench import report
from bench.report import Row, print_table, ratio
from scripts import lambda_package

TITLE = "Package size: zipped Lambda artifact"
TARGET_MB = 15.0
OURS = "tokenrelay (our code)"


def distributions(tree: Path) -> dict[str, str]:
    """Top-level names in `tree` -> the distribution that installed them (from each RECORD)."""
    owners = {name: OURS for name in lambda_package.SOURCES}
    for record in tree.glob("*.dist-info/RECORD"):
        dist = record.parent.name.split("-", 1)[0]
        owners[record.parent.name] = dist
        for line in record.read_text().splitlines():
            top = line.split(",", 1)[0].split("/", 1)[0]
            if top and not top.startswith(".."):
                owners.setdefault(top, dist)
    return owners


def zipped_by_distribution(archive: Path, owners: dict[str, str]) -> dict[str, int]:
    sizes: dict[str, int] = {}
    with zipfile.ZipFile(archive) as bundle:
        for info in bundle.infolist():
            top = info.filename.split("/", 1)[0]
            owner = owners.get(top, top)
            sizes[owner] = sizes.get(owner, 0) + info.compress_size
    return sizes


def unpacked_bytes(tree: Path) -> int:
    return sum(path.stat().st_size for path in tree.rglob("*") if path.is_file())


def stand_in(tree: Path) -> None:
    """No download: our code plus two tiny fake distributions, one of them on the trim list."""
    tree.mkdir(parents=True)
    lambda_package.copy_sources(tree)
    for dist, package, version in (("Faker", "faker", "1.0"), ("keepme", "keepme", "1.0")):
        (tree / package).mkdir()
        (tree / package / "__init__.py").write_text(f"# {dist}\n" + "VALUE = 1\n" * 5000)
        info = tree / f"{dist}-{version}.dist-info"
        info.mkdir()
        (info / "RECORD").write_text(f"{package}/__init__.py,,\n{info.name}/RECORD,,\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = report.parser(__doc__)
    parser.add_argument("--arch", choices=sorted(lambda_package.PLATFORMS), default="arm64")
    parser.add_argument("--python-version", default="3.12")
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-package-") as scratch:
        work = Path(scratch)
        baseline, ours = work / "baseline", work / "ours"
        if args.smoke:
            stand_in(baseline)
        else:
            baseline.mkdir()
            needed = lambda_package.runtime_requirements()
            lambda_package.install(baseline, needed, arch=args.arch, python_version=args.python_version)
            lambda_package.copy_sources(baseline)
        owners = distributions(baseline)
        shutil.copytree(baseline, ours)
        removed = lambda_package.trim(ours)
        trimmed_zip = lambda_package.zip_tree(ours, work / "trimmed.zip")
        compiled = 0
        interpreter = None if args.smoke else lambda_package.target_python(args.python_version)
        if interpreter is not None:
            compiled = lambda_package.compile_bytecode(ours, lambda_package.cold_path_modules(), interpreter)
        ours_zip = lambda_package.zip_tree(ours, work / "ours.zip")
        baseline_zip = lambda_package.zip_tree(baseline, work / "baseline.zip")
        ours_by_dist = zipped_by_distribution(work / "ours.zip", owners)
        baseline_by_dist = zipped_by_distribution(work / "baseline.zip", owners)
        ours_unpacked, baseline_unpacked = unpacked_bytes(ours), unpacked_bytes(baseline)

    mb = 1e6
    rows = [
        Row(
            "zipped artifact (MB)",
            f"{ours_zip / mb:.1f}",
            f"{baseline_zip / mb:.1f}",
            ratio(ours_zip, baseline_zip),
            f"< {TARGET_MB:g} MB",
            ours_zip / mb < TARGET_MB,
        ),
        Row(
            "unpacked (MB)",
            f"{ours_unpacked / mb:.1f}",
            f"{baseline_unpacked / mb:.1f}",
            ratio(ours_unpacked, baseline_unpacked),
        ),
        Row(
            "  trimmed, before bytecode (MB)",
            f"{trimmed_zip / mb:.1f}",
            f"{baseline_zip / mb:.1f}",
            ratio(trimmed_zip, baseline_zip),
        ),
        Row("  modules compiled to bytecode", str(compiled), "0"),
    ]
    largest = sorted(baseline_by_dist.items(), key=lambda item: -item[1])[: args.top]
    rows += [
        Row(f"largest: {name} (MB zipped)", f"{ours_by_dist.get(name, 0) / mb:.2f}", f"{size / mb:.2f}")
        for name, size in largest
    ]
    trimmed_dists = sorted(owners[name] for name in removed if name.endswith(".dist-info"))
    notes = [
        f"{args.arch}, python{args.python_version}"
        + (" — smoke: a local stand-in, nothing downloaded, no bytecode." if args.smoke else "."),
        "Trimmed: " + (", ".join(trimmed_dists) or "nothing") + "; every `__pycache__`, `*.pyi`, `bin/`.",
        "Bytecode: "
        + (
            "none (no target interpreter here)."
            if not compiled
            else f"{compiled} modules a cold start imports (mock and OpenAI paths), unchecked-hash."
        ),
    ]
    print_table(TITLE, rows, notes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
