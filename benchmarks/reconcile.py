"""Reconcile throughput (documents/s) on the demo's pds service loaded into the Riak fake (its own
process), clean and with 1% of root rows changed, against reading every body back with 16 threads
of GET through RiakTarget.get (what a reconcile without the chunk index would have to do)."""

from __future__ import annotations

import sqlite3
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.harness import Figure, Goal, Settings, repeat
from benchmarks.sink import ServerProcess
from migrate.demo import create_demo
from migrate.pipeline import run_services
from migrate.project import Project
from migrate.reconcile import Options, reconcile_service
from migrate.target.chunks import CHUNK_INDEX, chunk_prefix_range
from migrate.target.riak import RiakTarget

CASE = "reconcile"
BASELINE = "GET every body, 16 threads"
GOAL = Goal(">=", 10, "ratio")  # issue 5, goal 5
LOCAL_URL = 'url = "local:///.migrate/target.db"'


def _project(folder: Path, patients: int, port: int) -> Project:
    create_demo(folder, patients=patients, seed=1)
    config = folder / "migrate.toml"
    config.write_text(config.read_text().replace(LOCAL_URL, f'url = "riak://127.0.0.1:{port}"'))
    return Project.load(config)


def _reconcile_rate(project: Project) -> tuple[float, bool]:
    service = project.config.service("pds")
    started = time.perf_counter()
    result = reconcile_service(project, service, Options(dry_run=True))
    return result.counts()["expected"] / (time.perf_counter() - started), result.equal


def _get_all_rate(url: str) -> float:
    target = RiakTarget(url)
    try:
        start, end = chunk_prefix_range()
        keys = [k for _, k in target.index_terms("default", "patients", CHUNK_INDEX, start, end)]
        started = time.perf_counter()
        with ThreadPoolExecutor(16) as pool:
            found = sum(
                1 for o in pool.map(lambda k: target.get("default", "patients", k), keys) if o
            )
        assert found == len(keys)
        return len(keys) / (time.perf_counter() - started)
    finally:
        target.close()


def run(settings: Settings) -> list[Figure]:
    patients = settings.documents or (2_000 if settings.quick else 100_000)
    repeats = 1 if settings.quick else min(settings.repeats, 3)
    with tempfile.TemporaryDirectory() as tmp, ServerProcess("fake") as fake:
        url = f"riak://127.0.0.1:{fake.port}"
        project = _project(Path(tmp) / "demo", patients, fake.port)
        try:
            run_services(project, ["pds"])
            clean, baseline = repeat(
                repeats, lambda: _reconcile_rate(project)[0], lambda: _get_all_rate(url)
            )
            with sqlite3.connect(Path(tmp) / "demo" / "legacy.db") as db:
                db.execute(
                    "UPDATE PATIENTS SET FAMILY_NAME = FAMILY_NAME || 'x'"
                    " WHERE abs(CAST(NHS_NUMBER AS INTEGER)) % 100 = 7"
                )
            changed = [_reconcile_rate(project) for _ in range(repeats)]
            assert not any(equal for _, equal in changed)
        finally:
            project.close()
    note = f"pds of a {patients:,}-patient demo, chunk index via 2i return_terms, dry run"
    return [
        Figure(
            CASE,
            "reconcile documents/s, clean",
            "docs/s",
            tuple(clean),
            BASELINE,
            tuple(baseline),
            GOAL,
            note=note,
        ),
        Figure(
            CASE,
            "reconcile documents/s, 1% of roots changed",
            "docs/s",
            tuple(r for r, _ in changed),
            BASELINE,
            tuple(baseline),
            GOAL,
            note=note,
        ),
    ]
