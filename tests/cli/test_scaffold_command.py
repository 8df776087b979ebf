"""`migrate scaffold` on the demo estate: each table that is a root there, scaffolded as a new
service, passes `migrate check`, migrates, and reconciles equal with the source."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from support import Invoke

ROOTS = {  # the demo's root tables (mappings/*.yaml), each as a scaffolded service
    "s-organisations": "ORGANISATIONS",
    "s-roles": "ORG_ROLES",
    "s-patients": "PATIENTS",
    "s-records": "SCR_RECORDS",
    "s-prescriptions": "PRESCRIPTIONS",
}


def test_every_demo_root_scaffolds_checks_and_migrates(
    migrate_cli: Invoke, demo_project: Path
) -> None:
    for service, table in ROOTS.items():
        result = migrate_cli("scaffold", service, "--root", table)
        assert result.exit_code == 0, result.output
        assert f"{service}: wrote {demo_project / 'mappings' / service}.yaml" in result.output
        assert "next: review the mapping's comments, then `migrate check`" in result.output

    check = migrate_cli("check")
    assert check.exit_code == 0, check.output
    for service in ROOTS:
        assert f"{service}: {demo_project / 'mappings' / service}.yaml ... ok" in check.output

    run = migrate_cli("run", *ROOTS, "--workers", "2")
    assert run.exit_code == 0, run.output
    reconcile = migrate_cli("reconcile", *ROOTS, "--dry-run", "--format", "json")
    assert reconcile.exit_code == 0, reconcile.output
    report = json.loads(reconcile.stdout)
    with sqlite3.connect(demo_project / "legacy.db") as db:
        for entry in report["services"]:
            (doc,) = entry["document_types"]
            table = ROOTS[entry["service"]]
            (rows,) = db.execute(f"SELECT count(*) FROM {table}").fetchone()
            assert doc["counts"]["expected"] == doc["counts"]["equal"] == rows, entry["service"]


def test_scaffold_refuses_with_exit_2_and_writes_nothing(
    migrate_cli: Invoke, demo_project: Path
) -> None:
    config = (demo_project / "migrate.toml").read_text()
    taken = migrate_cli("scaffold", "pds", "--root", "PATIENTS")
    assert taken.exit_code == 2
    assert "service pds is already in" in taken.output
    existing = migrate_cli("scaffold", "new", "--root", "PATIENTS", "--output", "mappings/pds.yaml")
    assert existing.exit_code == 2
    assert "scaffold never overwrites a file" in existing.output
    missing = migrate_cli("scaffold", "new", "--root", "PATIENT")
    assert missing.exit_code == 2
    assert "did you mean `PATIENTS`?" in missing.output
    assert (demo_project / "migrate.toml").read_text() == config
    assert not (demo_project / "mappings" / "new.yaml").exists()
