"""What every benchmark prints: one Markdown table per figure set, ours beside its baseline."""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

HEADER = ("figure", "ours", "baseline", "ratio", "target", "met?")


@dataclass(frozen=True, slots=True)
class Row:
    """One line of a result table; `met` is None where the figure has no target."""

    figure: str
    ours: str
    baseline: str = ""
    ratio: str = ""
    target: str = ""
    met: bool | None = None


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (p50, p99) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, round(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def ratio(ours: float, baseline: float) -> str:
    return f"{ours / baseline:.2f}x" if baseline else "n/a"


def met(value: bool | None) -> str:
    if value is None:
        return ""
    return "yes" if value else "**no**"


def render(title: str, rows: Sequence[Row], notes: Sequence[str] = ()) -> str:
    """A Markdown table, so a run's output can be pasted into BENCHMARKS.md as it is."""
    cells = [HEADER, *((r.figure, r.ours, r.baseline, r.ratio, r.target, met(r.met)) for r in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(HEADER))]

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    out = [f"### {title}", "", line(HEADER), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out.extend(line(c) for c in cells[1:])
    out.extend(["", *notes] if notes else [])
    return "\n".join(out)


def print_table(title: str, rows: Sequence[Row], notes: Sequence[str] = ()) -> None:
    print(render(title, rows, notes), flush=True)
    print(flush=True)


def describe_python() -> str:
    return f"Python {platform.python_version()} ({sys.executable})"


def parser(doc: str | None) -> argparse.ArgumentParser:
    """Every benchmark's command line: its own options plus `--smoke` (tiny sizes, proves it runs)."""
    out = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    out.add_argument(
        "--smoke", action="store_true", help="tiny sizes: proves the script runs, times mean nothing"
    )
    return out
