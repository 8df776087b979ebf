"""A small benchmark runner: cases give figures (medians of repeats, each with the baseline measured
in the same run), the runner prints them as one table and writes them as JSON.

Figures keep their samples so a reader can see the spread, and a goal (from the issues) is judged
on the median. Ratios are always figure / baseline, whatever direction is better.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from migrate.processes import quiet_gc

_S = TypeVar("_S")


@contextmanager
def as_in_the_toolkit() -> Iterator[None]:
    """Cyclic garbage collection as the toolkit's own processes have it (the console script and
    every worker: `migrate.processes.quiet_gc`), for measurements made in this process; the
    process's own setting comes back afterwards."""
    threshold = gc.get_threshold()
    quiet_gc()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


@dataclass(frozen=True, slots=True)
class Goal:
    """A target from the issues: `value <= 100`, or `ratio >= 0.9`."""

    op: Literal["<=", ">="]
    limit: float
    on: Literal["value", "ratio"] = "value"

    def met(self, value: float | None, ratio: float | None) -> bool | None:
        subject = value if self.on == "value" else ratio
        if subject is None:
            return None
        return subject <= self.limit if self.op == "<=" else subject >= self.limit

    @property
    def text(self) -> str:
        unit = "x" if self.on == "ratio" else ""
        return f"{self.op} {self.limit:g}{unit}"


@dataclass(frozen=True, slots=True)
class Figure:
    """One line of the table: a median figure and its baseline, measured in the same run."""

    case: str
    name: str
    unit: str
    samples: tuple[float, ...]
    baseline_name: str = ""
    baseline_samples: tuple[float, ...] = ()
    goal: Goal | None = None
    note: str = ""

    @property
    def value(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    @property
    def baseline(self) -> float | None:
        return statistics.median(self.baseline_samples) if self.baseline_samples else None

    @property
    def ratio(self) -> float | None:
        value, baseline = self.value, self.baseline
        if value is None or not baseline:
            return None
        return value / baseline

    @property
    def met(self) -> bool | None:
        return None if self.goal is None else self.goal.met(self.value, self.ratio)

    def as_json(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "name": self.name,
            "unit": self.unit,
            "value": self.value,
            "samples": list(self.samples),
            "baseline_name": self.baseline_name or None,
            "baseline": self.baseline,
            "baseline_samples": list(self.baseline_samples),
            "ratio": self.ratio,
            "goal": self.goal.text if self.goal else None,
            "met": self.met,
            "note": self.note or None,
        }


def skipped(case: str, name: str, unit: str, reason: str) -> Figure:
    """A figure that could not be measured in this run, saying why."""
    return Figure(case, name, unit, (), note=f"skipped ({reason})")


@dataclass(frozen=True, slots=True)
class Settings:
    """How hard a run works: `quick` trades precision for a run under 30 s."""

    quick: bool = False
    repeats: int = 5
    documents: int | None = None  # per load; None lets each case choose by `quick`


Case = Callable[[Settings], list[Figure]]


def repeat(count: int, *runs: Callable[[], _S]) -> list[list[_S]]:
    """Run each callable `count` times, interleaved (A B A B ...) so drift hits all alike."""
    results: list[list[_S]] = [[] for _ in runs]
    for _ in range(count):
        for slot, run in zip(results, runs, strict=True):
            slot.append(run())
    return results


def compile_package(folder: Path | None = None) -> Path:
    """Byte-compile the toolkit's modules (or those under `folder`) as an install does (pip
    writes their .pyc files); returns the folder. Without it, where PYTHONDONTWRITEBYTECODE is
    set (as in some CI images and containers), every `migrate` process the bench starts, and
    its forkserver, would compile the package's sources again, which no installed tool does."""
    import compileall

    import migrate

    folder = folder or Path(migrate.__file__).parent
    compileall.compile_dir(folder, quiet=1)
    return folder


def run_cases(
    cases: Sequence[tuple[str, Case]],
    settings: Settings,
    *,
    echo: Callable[[str], None] = print,
) -> list[Figure]:
    """Each case's figures, every measurement made in this process (the toolkit's and the
    baselines' alike) with the garbage-collection setting of the toolkit's own processes (the
    build and extract cases also freeze what their setup made, as a worker has only its
    imports frozen and its chunk alive)."""
    figures: list[Figure] = []
    for name, case in cases:
        echo(f"{name} ...")
        started = time.perf_counter()
        with as_in_the_toolkit():
            figures.extend(case(settings))
        echo(f"{name} ... done in {time.perf_counter() - started:.1f}s")
    return figures


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


def render_table(figures: Sequence[Figure]) -> str:
    """The figures as an aligned plain-text table (the CLI's rich is not needed here)."""
    header = ("case", "figure", "value", "unit", "baseline", "base value", "ratio", "goal", "met")
    rows = [header]
    for f in figures:
        met = {True: "yes", False: "NO", None: "-"}[f.met]
        ratio = f"{f.ratio:.2f}x" if f.ratio is not None else "-"
        value = _number(f.value) if f.samples else f.note
        rows.append(
            (
                f.case,
                f.name,
                value,
                f.unit,
                f.baseline_name or "-",
                _number(f.baseline),
                ratio,
                f.goal.text if f.goal else "-",
                met,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    right = {2, 5, 6}
    lines = []
    for row in rows:
        cells = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = [f"  {f.case} / {f.name}: {f.note}" for f in figures if f.note and f.samples]
    if notes:
        lines += ["", "notes:", *notes]
    return "\n".join(lines)


def write_json(path: Path, figures: Sequence[Figure], settings: Settings, command: str) -> None:
    """The run's figures and the machine they were measured on."""
    payload = {
        "command": command,
        "quick": settings.quick,
        "repeats": settings.repeats,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
        },
        "figures": [f.as_json() for f in figures],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)  # figures only, no row values: an ordinary file, written atomically
