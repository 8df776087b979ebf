"""End to end on the embedded target (issue 5, goal 4): `migrate run` of the whole demo (all
services) as a subprocess of the installed `migrate` command in a fresh copy of a demo project,
whole-process wall time (extract, transform, load, ledger, reconcile: everything), against the
naive script of `benchmarks.naive` in the same run.

Root documents/s = the documents of all services (from `migrate status --format json`) over the
wall seconds of `migrate run`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.harness import Figure, Goal, Settings, repeat
from benchmarks.naive import COMMIT_EVERY, ServiceRate, migrate_naively, mixed_rate
from migrate.demo import SERVICES, create_demo
from migrate.errors import MigrateError
from migrate.project import Project
from migrate.spec import ExtractSpec

CASE = "end_to_end"
BASELINE = "naive script (benchmarks/naive.py)"
RUN_TIMEOUT = 600.0


class BenchError(MigrateError):
    """`migrate` failed under the benchmark (the figure would not mean what it says)."""


@dataclass(frozen=True, slots=True)
class Bounds:
    patients: int
    naive_documents: int  # per service
    naive_seconds: float  # per service
    repeats: int


def bounds_for(settings: Settings) -> Bounds:
    if settings.quick:
        bounds = Bounds(2_000, 300, 1.0, 1)
    else:
        bounds = Bounds(10_000, 3_000, 3.0, min(settings.repeats, 3))
    if settings.documents is not None:
        n = settings.documents
        bounds = Bounds(n, min(bounds.naive_documents, n), bounds.naive_seconds, bounds.repeats)
    return bounds


def migrate_command() -> Path:
    """The installed `migrate` beside this interpreter (the venv's console script)."""
    command = Path(sys.executable).parent / "migrate"
    if not command.is_file():
        raise BenchError(
            f"the migrate command is not installed beside {sys.executable}",
            hint="run `make venv` (pip install -e .) and run the benchmarks with the venv's python",
        )
    return command


def run_migrate(command: Path, project: Path, *args: str) -> str:
    """Run `migrate ARGS` in `project`; its stdout. A failure says what failed, not the output
    (it may hold row values), beyond the last line of the error message."""
    done = subprocess.run(
        [str(command), *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1][:300]
        raise BenchError(
            f"`migrate {' '.join(args)}` exited with {done.returncode} in {project}: {last}",
            hint="run it by hand in a fresh `migrate demo` folder to see why",
        )
    return done.stdout


def documents_by_service(command: Path, project: Path) -> dict[str, int]:
    status = json.loads(run_migrate(command, project, "status", "--format", "json"))
    return {entry["service"]: int(entry["documents"] or 0) for entry in status}


class _Runs:
    """Fresh copies of the demo project, one per `migrate run`."""

    def __init__(self, command: Path, template: Path, work: Path) -> None:
        self.command = command
        self.template = template
        self.work = work
        self.count = 0
        self.documents: dict[str, int] = {}

    def rate(self) -> float:
        self.count += 1
        project = self.work / f"run-{self.count}"
        shutil.copytree(self.template, project)
        try:
            started = time.perf_counter()
            run_migrate(self.command, project, "run")
            seconds = time.perf_counter() - started
            self.documents = documents_by_service(self.command, project)
        finally:
            shutil.rmtree(project, ignore_errors=True)
        return sum(self.documents.values()) / seconds


def _specs(template: Path) -> dict[str, list[ExtractSpec]]:
    project = Project.load(template / "migrate.toml")
    try:
        return {
            service: [p.extract for p in project.plan(project.config.service(service)).doc_types]
            for service in SERVICES
        }
    finally:
        project.close()


def _naive(
    template: Path, work: Path, specs: dict[str, list[ExtractSpec]], bounds: Bounds
) -> list[ServiceRate]:
    output = work / "naive.db"
    try:
        return [
            migrate_naively(
                f"sqlite:///{template / 'legacy.db'}",
                specs[service],
                output,
                max_documents=bounds.naive_documents,
                max_seconds=bounds.naive_seconds,
            )
            for service in SERVICES
        ]
    finally:
        output.unlink(missing_ok=True)


def run(settings: Settings) -> list[Figure]:
    bounds = bounds_for(settings)
    command = migrate_command()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        template = work / "demo"
        create_demo(template, patients=bounds.patients, seed=1)
        specs = _specs(template)
        runs = _Runs(command, template, work)
        naive_runs: list[list[ServiceRate]] = []

        def naive() -> float:
            naive_runs.append(_naive(template, work, specs, bounds))
            return mixed_rate(naive_runs[-1], runs.documents)  # a run came first: A B A B

        fast, baseline = repeat(bounds.repeats, runs.rate, naive)
        totals = runs.documents
    per_service = ", ".join(
        f"{r.service} {r.rate:,.0f}/s ({r.documents:,} docs)" for r in naive_runs[-1]
    )
    note = (
        f"{bounds.patients:,}-patient demo, {sum(totals.values()):,} root documents of "
        f"{len(totals)} services per run, fresh project copy each time; naive: at most "
        f"{bounds.naive_documents:,} documents / {bounds.naive_seconds:g} s per service, commit "
        f"every {COMMIT_EVERY:,} (one commit per document is too slow to finish), rate over the "
        f"demo's mix: {per_service}"
    )
    return [
        Figure(
            CASE,
            "migrate run root documents/s, all services",
            "docs/s",
            tuple(fast),
            BASELINE,
            tuple(baseline),
            goal=Goal(">=", 20_000),
            note=note,
        ),
        Figure(
            CASE,
            "migrate run vs naive script",
            "docs/s",
            tuple(fast),
            BASELINE,
            tuple(baseline),
            goal=Goal(">=", 10, "ratio"),
            note="the same samples as the line above, judged on the ratio",
        ),
    ]
