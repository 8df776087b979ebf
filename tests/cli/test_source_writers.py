"""Writers to a SQLite source while `migrate run` reads it (issue 15, point 8).

In a rollback-journal mode a run's snapshot keeps writers out: a writer with no busy timeout is
refused at once, one with a long enough timeout commits once the run has read what it reads,
and every service's chunks are read under one snapshot. In WAL mode writers never wait and the
run still reads one snapshot per service. A run that resumes under a new snapshot (after a kill,
a crash, a full disk...) keeps the chunks it staged under the old one, and says so: a note, an
audit row, and `migrate status` showing the run's snapshots."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest
from support import Invoke, set_run_option
from test_resume_kill import MIGRATE

from migrate.events import ChunkFinished, Event
from migrate.pipeline import run_services
from migrate.project import Project

WRITTEN = "WRITTEN-DURING-RUN"


def _pds_patient(project: Path) -> str:
    """A patient the pds mapping makes a document of (the highest NHS number)."""
    with sqlite3.connect(project / "legacy.db") as db:
        (nhs,) = db.execute(
            "SELECT max(NHS_NUMBER) FROM PATIENTS WHERE COALESCE(SENSITIVE_FLAG, 'N') <> 'S'"
        ).fetchone()
    return str(nhs)


def _pds_loaded(project: Path) -> int:
    state = project / ".migrate" / "state.db"
    if not state.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=5) as db:
            (count,) = db.execute(
                "SELECT count(*) FROM chunks JOIN runs USING (run_id) "
                "WHERE runs.service = 'pds' AND chunks.state = 'loaded'"
            ).fetchone()
            return int(count)
    except sqlite3.OperationalError:
        return 0


def _try_write(database: Path, nhs: str, *, timeout: float) -> str:
    """Write one patient's family name; "committed", or SQLite's refusal (rolled back)."""
    db = sqlite3.connect(database, timeout=timeout, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute("UPDATE PATIENTS SET FAMILY_NAME = ? WHERE NHS_NUMBER = ?", (WRITTEN, nhs))
        db.execute("COMMIT")
        return "committed"
    except sqlite3.OperationalError as exc:
        if db.in_transaction:
            db.execute("ROLLBACK")
        return str(exc)
    finally:
        db.close()


def _start_run(project: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(MIGRATE), "--config", str(project / "migrate.toml"), "run", "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _when_pds_is_loading(project: Path, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 240
    while _pds_loaded(project) < 1:
        if process.poll() is not None or time.monotonic() > deadline:
            process.communicate()
            pytest.fail("the run ended before pds loaded a chunk: the writer never met it")
        time.sleep(0.01)


def _snapshots_per_run(project: Path) -> dict[str, int]:
    with sqlite3.connect(project / ".migrate" / "state.db") as db:
        rows = db.execute(
            "SELECT runs.service, count(DISTINCT chunks.snapshot) FROM chunks "
            "JOIN runs USING (run_id) GROUP BY chunks.run_id"
        ).fetchall()
    return {service: count for service, count in rows}


def _reconcile_pds(migrate_cli: Invoke) -> tuple[int, dict[str, object]]:
    result = migrate_cli("reconcile", "pds", "--dry-run", "--workers", "1", "--format", "json")
    report = json.loads(result.stdout)
    (service,) = report["services"]
    return result.exit_code, service


@pytest.mark.slow
def test_a_writer_waits_for_the_run_and_the_run_reads_one_snapshot(
    demo_project: Path, migrate_cli: Invoke
) -> None:
    set_run_option(demo_project, "chunk_size", 50)
    nhs = _pds_patient(demo_project)
    process = _start_run(demo_project)
    committed: list[str] = []
    try:
        _when_pds_is_loading(demo_project, process)
        # A writer with no busy timeout (the sqlite3 shell's default) is refused at once.
        assert _try_write(demo_project / "legacy.db", nhs, timeout=0) == "database is locked"
        # One that waits commits once the run has read what it reads.
        writer = threading.Thread(
            target=lambda: committed.append(
                _try_write(demo_project / "legacy.db", nhs, timeout=600)
            ),
            daemon=True,
        )
        writer.start()
        _, stderr = process.communicate(timeout=600)
        writer.join(600)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert committed == ["committed"]
    assert set(_snapshots_per_run(demo_project).values()) == {1}
    # pds loaded the patient as it was before the write; the write is the one difference now.
    code, pds = _reconcile_pds(migrate_cli)
    assert code == 1
    assert pds["counts"]["changed"] == 1  # type: ignore[index]
    (doc_type,) = pds["document_types"]  # type: ignore[misc]
    assert [c["key"] for c in doc_type["differences"]["changed"]] == [nhs]


@pytest.mark.slow
def test_in_wal_mode_writers_never_wait_and_the_run_reads_one_snapshot(
    demo_project: Path, migrate_cli: Invoke
) -> None:
    set_run_option(demo_project, "chunk_size", 50)
    with sqlite3.connect(demo_project / "legacy.db") as db:
        assert db.execute("PRAGMA journal_mode = WAL").fetchone() == ("wal",)
    nhs = _pds_patient(demo_project)
    process = _start_run(demo_project)
    try:
        _when_pds_is_loading(demo_project, process)
        written = _try_write(demo_project / "legacy.db", nhs, timeout=0)
        _, stderr = process.communicate(timeout=600)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert written == "committed"
    assert process.returncode == 0, stderr
    assert set(_snapshots_per_run(demo_project).values()) == {1}
    code, pds = _reconcile_pds(migrate_cli)
    assert code == 1
    assert pds["counts"]["changed"] == 1  # type: ignore[index]


class _Stop(Exception):
    """Ends a run after its first loaded chunks, as a failure would."""


def test_a_run_resumed_under_a_new_snapshot_says_so(
    demo_project: Path, migrate_cli: Invoke
) -> None:
    set_run_option(demo_project, "chunk_size", 100)

    def stop_after_two(event: Event) -> None:
        if isinstance(event, ChunkFinished) and event.chunk_id.endswith(":00001"):
            raise _Stop

    project = Project.load(demo_project / "migrate.toml")
    try:
        with pytest.raises(_Stop):
            run_services(project, ["pds"], workers=1, on_event=stop_after_two)
    finally:
        project.close()
    # A committed write between the two runs: the rest is read as the source is now.
    assert _try_write(demo_project / "legacy.db", _pds_patient(demo_project), timeout=5) == (
        "committed"
    )

    result = migrate_cli("run", "pds", "--workers", "1")
    assert result.exit_code == 0, result.output
    assert "continues under a new snapshot of the source" in result.output
    kept = result.output.split("continues under a new snapshot", 1)[1]
    assert "chunks keep the rows read under sqlite:data_version=" in kept

    status = json.loads(migrate_cli("status", "--format", "json").stdout)
    (pds,) = [s for s in status if s["service"] == "pds"]
    assert len(pds["snapshots"]) == 2
    table = migrate_cli("status")
    assert f"pds: run {pds['run_id']} holds chunks read under 2 snapshots" in table.stdout

    project = Project.load(demo_project / "migrate.toml")
    try:
        audit = [a for a in project.ledger.audit_log("pds") if a["action"] == "run.new_snapshot"]
    finally:
        project.close()
    assert len(audit) == 1
    (earlier,) = audit[0]["detail"]["earlier"].values()
    assert earlier >= 2  # the chunks loaded before the stop, at least
