"""Delta (issue 16): changed documents/s of `migrate delta` against the bulk run's documents/s on
the same estate, the lag after a burst of 10,000 source changes (until `capture status` shows
nothing pending), and an idle delta's whole-process wall time, each as the installed `migrate`
command in a fresh demo project (pds under change capture by triggers); and the same three
under change capture by watermark (every table given an UPDATED_AT column the "application"
keeps), beside the figures by triggers.

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
from dataclasses import dataclass, field
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


def add_last_modified(database: Path) -> None:
    """Give every table of a demo database an UPDATED_AT column that "the application" keeps:
    SQLite triggers standing in for an application that sets it on every insert and update
    (for change capture by watermark)."""
    now = "strftime('%Y-%m-%d %H:%M:%f', 'now')"
    with sqlite3.connect(database) as db:
        tables = [
            r[0]
            for r in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'"
            )
        ]
        for table in tables:
            db.execute(f'ALTER TABLE "{table}" ADD COLUMN UPDATED_AT TEXT')
            db.execute(f"UPDATE \"{table}\" SET UPDATED_AT = '2020-01-01 00:00:00.000'")
            db.execute(
                f'CREATE TRIGGER "app_{table}_i" AFTER INSERT ON "{table}" BEGIN UPDATE '
                f'"{table}" SET UPDATED_AT = {now} WHERE rowid = NEW.rowid; END'
            )
            db.execute(
                f'CREATE TRIGGER "app_{table}_u" AFTER UPDATE ON "{table}" WHEN NEW.UPDATED_AT IS '
                f'OLD.UPDATED_AT BEGIN UPDATE "{table}" SET UPDATED_AT = {now} WHERE rowid = '
                "NEW.rowid; END"
            )


def _pending(command: Path, project: Path) -> int:
    status = json.loads(
        run_migrate(command, project, "capture", "status", "pds", "--format", "json")
    )
    return int(status["pending"] or 0)


@dataclass
class _Measured:
    bulk: list[float] = field(default_factory=list)  # bulk run documents/s
    rates: list[float] = field(default_factory=list)  # delta changed documents/s
    lags: list[float] = field(default_factory=list)
    idle: list[float] = field(default_factory=list)
    rebuilt: int = 0


def _measure(command: Path, project: Path, changes: int, seed: int, into: _Measured) -> None:
    run_migrate(command, project, "capture", "install", "pds")
    started = time.perf_counter()
    run_migrate(command, project, "run", "pds")
    seconds = time.perf_counter() - started
    status = json.loads(run_migrate(command, project, "status", "--format", "json"))
    documents = next(int(s["documents"]) for s in status if s["service"] == "pds")
    into.bulk.append(documents / seconds)
    _burst(project / "legacy.db", changes, seed=seed)
    burst_at = time.perf_counter()
    started = time.perf_counter()
    report = json.loads(run_migrate(command, project, "delta", "pds", "--format", "json"))
    seconds = time.perf_counter() - started
    into.rebuilt = int(report[0]["roots"])
    into.rates.append(into.rebuilt / seconds)
    while _pending(command, project):
        run_migrate(command, project, "delta", "pds")
    into.lags.append(time.perf_counter() - burst_at)
    started = time.perf_counter()
    run_migrate(command, project, "delta", "pds")
    into.idle.append(time.perf_counter() - started)


def run(settings: Settings) -> list[Figure]:
    patients = 5_000 if settings.quick else 100_000
    if settings.documents is not None:
        patients = settings.documents
    changes = min(CHANGES, patients)
    repeats = 1 if settings.quick else min(settings.repeats, 3)
    command = migrate_command()
    triggers, watermark = _Measured(), _Measured()
    startup: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "demo"
        create_demo(template, patients=patients, seed=1)
        config = template / "migrate.toml"
        text = config.read_text()
        line = 'mapping = "mappings/pds.yaml"\n'
        for attempt in range(repeats):
            for mode, into in (("triggers", triggers), ("watermark", watermark)):
                project = Path(tmp) / f"{mode}-{attempt}"
                shutil.copytree(template, project)
                extra = f'capture = "{mode}"\n'
                if mode == "watermark":
                    add_last_modified(project / "legacy.db")
                    extra += 'watermark = "UPDATED_AT"\n'
                (project / "migrate.toml").write_text(text.replace(line, line + extra))
                _measure(command, project, changes, attempt, into)
                shutil.rmtree(project, ignore_errors=True)
            started = time.perf_counter()
            run_migrate(command, template, "--version")
            startup.append(time.perf_counter() - started)
    note = (
        f"{patients:,}-patient demo, pds, a burst of {changes:,} changes rebuilding "
        f"{triggers.rebuilt:,} documents"
    )
    return [
        Figure(
            CASE,
            "delta changed documents/s vs bulk documents/s",
            "docs/s",
            tuple(triggers.rates),
            "migrate run pds documents/s, same estate",
            tuple(triggers.bulk),
            goal=Goal(">=", 0.5, "ratio"),
            note=note,
        ),
        Figure(
            CASE,
            f"lag after a burst of {changes:,} changes",
            "s",
            tuple(triggers.lags),
            goal=Goal("<=", 10),
            note="from the burst's commit until `capture status` shows nothing pending, "
            "delta included",
        ),
        Figure(
            CASE,
            "idle delta, whole process",
            "s",
            tuple(triggers.idle),
            "migrate --version, whole process",
            tuple(startup),
            goal=Goal("<=", 0.5),
            note="nothing pending: open the ledger and the source, read the log position",
        ),
        Figure(
            CASE,
            "watermark: delta changed documents/s vs bulk documents/s",
            "docs/s",
            tuple(watermark.rates),
            "migrate run pds documents/s, same estate (watermark digests recorded)",
            tuple(watermark.bulk),
            note=f"capture by watermark; the same burst rebuilt {watermark.rebuilt:,} documents",
        ),
        Figure(
            CASE,
            f"watermark: lag after a burst of {changes:,} changes",
            "s",
            tuple(watermark.lags),
            "the same by triggers",
            tuple(triggers.lags),
            note="every delta reads every table's keys and last-modified values",
        ),
        Figure(
            CASE,
            "watermark: idle delta, whole process",
            "s",
            tuple(watermark.idle),
            "an idle delta by triggers",
            tuple(triggers.idle),
            note="nothing changed: every document's rows are read and compared all the same",
        ),
    ]
