"""Delta (issue 16): changed documents/s of `migrate delta` against the bulk run's documents/s on
the same estate, the lag after a burst of 10,000 source changes (until `capture status` shows
nothing pending), and an idle delta's whole-process wall time, each as the installed `migrate`
command in a fresh demo project (pds under change capture by triggers).

The burst changes roots (names), children (addresses moved between patients and edited) and
lookups (organisations renamed: each reaches every patient whose GP it is), in one transaction,
as a busy afternoon of the legacy system would.
"""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

from benchmarks.end_to_end import migrate_command, run_migrate
from benchmarks.harness import Figure, Goal, Settings
from migrate.demo import create_demo

CASE = "delta"
CHANGES = 10_000
VISIBLE = "COALESCE(SENSITIVE_FLAG, 'N') <> 'S'"


def _burst(database: Path, changes: int, seed: int) -> None:
    """`changes` row changes: 70% roots, 25% children, the rest lookups."""
    rng = random.Random(seed)
    with sqlite3.connect(database) as db:
        patients = [r[0] for r in db.execute(f"SELECT NHS_NUMBER FROM PATIENTS WHERE {VISIBLE}")]
        addresses = [r[0] for r in db.execute("SELECT ADDRESS_ID FROM PATIENT_ADDRESSES")]
        organisations = [r[0] for r in db.execute("SELECT ODS_CODE FROM ORGANISATIONS")]
        roots = int(changes * 0.7)
        children = int(changes * 0.25)
        lookups = changes - roots - children
        db.executemany(
            "UPDATE PATIENTS SET FAMILY_NAME = FAMILY_NAME || '+' WHERE NHS_NUMBER = ?",
            [(key,) for key in rng.sample(patients, min(roots, len(patients)))],
        )
        db.executemany(
            "UPDATE PATIENT_ADDRESSES SET LINE1 = 'Burst Lane', NHS_NUMBER = ?"
            " WHERE ADDRESS_ID = ?",
            [
                (rng.choice(patients), address)
                for address in rng.sample(addresses, min(children, len(addresses)))
            ],
        )
        db.executemany(
            "UPDATE ORGANISATIONS SET NAME = NAME || '+' WHERE ODS_CODE = ?",
            [(code,) for code in rng.sample(organisations, min(lookups, len(organisations)))],
        )


def _pending(command: Path, project: Path) -> int:
    status = json.loads(
        run_migrate(command, project, "capture", "status", "pds", "--format", "json")
    )
    return int(status["pending"] or 0)


def run(settings: Settings) -> list[Figure]:
    patients = 5_000 if settings.quick else 100_000
    if settings.documents is not None:
        patients = settings.documents
    changes = min(CHANGES, patients)
    repeats = 1 if settings.quick else min(settings.repeats, 3)
    command = migrate_command()
    bulk: list[float] = []
    rates: list[float] = []
    lags: list[float] = []
    idle: list[float] = []
    startup: list[float] = []
    rebuilt = 0
    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "demo"
        create_demo(template, patients=patients, seed=1)
        config = template / "migrate.toml"
        config.write_text(
            config.read_text().replace(
                'mapping = "mappings/pds.yaml"\n',
                'mapping = "mappings/pds.yaml"\ncapture = "triggers"\n',
            )
        )
        for attempt in range(repeats):
            project = Path(tmp) / f"run-{attempt}"
            shutil.copytree(template, project)
            run_migrate(command, project, "capture", "install", "pds")
            started = time.perf_counter()
            run_migrate(command, project, "run", "pds")
            seconds = time.perf_counter() - started
            status = json.loads(run_migrate(command, project, "status", "--format", "json"))
            documents = next(int(s["documents"]) for s in status if s["service"] == "pds")
            bulk.append(documents / seconds)
            _burst(project / "legacy.db", changes, seed=attempt)
            burst_at = time.perf_counter()
            started = time.perf_counter()
            report = json.loads(run_migrate(command, project, "delta", "pds", "--format", "json"))
            seconds = time.perf_counter() - started
            rebuilt = int(report[0]["roots"])
            rates.append(rebuilt / seconds)
            while _pending(command, project):
                run_migrate(command, project, "delta", "pds")
            lags.append(time.perf_counter() - burst_at)
            started = time.perf_counter()
            run_migrate(command, project, "delta", "pds")
            idle.append(time.perf_counter() - started)
            started = time.perf_counter()
            run_migrate(command, project, "--version")
            startup.append(time.perf_counter() - started)
            shutil.rmtree(project, ignore_errors=True)
    note = (
        f"{patients:,}-patient demo, pds, a burst of {changes:,} changes rebuilding "
        f"{rebuilt:,} documents"
    )
    return [
        Figure(
            CASE,
            "delta changed documents/s vs bulk documents/s",
            "docs/s",
            tuple(rates),
            "migrate run pds documents/s, same estate",
            tuple(bulk),
            goal=Goal(">=", 0.5, "ratio"),
            note=note,
        ),
        Figure(
            CASE,
            f"lag after a burst of {changes:,} changes",
            "s",
            tuple(lags),
            goal=Goal("<=", 10),
            note="from the burst's commit until `capture status` shows nothing pending, "
            "delta included",
        ),
        Figure(
            CASE,
            "idle delta, whole process",
            "s",
            tuple(idle),
            "migrate --version, whole process",
            tuple(startup),
            goal=Goal("<=", 0.5),
            note="nothing pending: open the ledger and the source, read the log position",
        ),
    ]
