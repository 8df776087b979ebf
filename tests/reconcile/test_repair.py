"""Repair of a service with several document types: the re-check of the repaired chunks judges
each document type by its own chunks only."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from support import Invoke


def _count(project: Path, bucket: str) -> int:
    with sqlite3.connect(project / ".migrate" / "target.db") as db:
        (count,) = db.execute("SELECT count(*) FROM objects WHERE bucket = ?", (bucket,)).fetchone()
    return int(count)


def test_repairing_one_document_type_leaves_the_others_alone(
    migrate_cli: Invoke, demo_project: Path
) -> None:
    assert migrate_cli("run", "ods").exit_code == 0
    roles = _count(demo_project, "organisation-roles")
    assert roles > 0
    with sqlite3.connect(demo_project / ".migrate" / "target.db") as db:
        (key,) = db.execute("SELECT key FROM objects WHERE bucket = 'organisations'").fetchone()
        db.execute("DELETE FROM objects WHERE key = ?", (key,))
        db.execute("DELETE FROM index_entries WHERE key = ?", (key,))
    assert migrate_cli("reconcile", "ods").exit_code == 1

    repaired = migrate_cli("repair", "ods")

    # before: the re-check of organisation:00000 called every role extra (exit 1), and the next
    # repair deleted them all
    assert repaired.exit_code == 0, repaired.output
    assert "extra    role" not in repaired.output
    assert migrate_cli("repair", "ods").exit_code == 0
    assert _count(demo_project, "organisation-roles") == roles
    assert migrate_cli("reconcile", "ods", "--dry-run").exit_code == 0
