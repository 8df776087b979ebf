"""Watermark capture: every kind of change to any table a mapping reads reaches exactly the
documents that read it, found by comparing rows, so a change committed late with an older
last-modified value, a deleted child and a deleted root are all caught."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from support import Invoke, assert_matches_reference, use_watermark

VISIBLE = "COALESCE(SENSITIVE_FLAG, 'N') <> 'S'"
CHILDREN = ("PATIENT_ADDRESSES", "PATIENT_NAMES", "PATIENT_TELECOMS", "PATIENT_PHARMACIES")


@pytest.fixture
def loaded(demo_project: Path, migrate_cli: Invoke) -> Path:
    """The demo's pds under watermark capture, bulk-loaded."""
    use_watermark(demo_project)
    installed = migrate_cli("capture", "install", "pds")
    assert installed.exit_code == 0, installed.output
    result = migrate_cli("run", "pds")
    assert result.exit_code == 0, result.output
    return demo_project


def _patients(db: sqlite3.Connection, count: int, offset: int = 0) -> list[str]:
    rows = db.execute(
        f"SELECT NHS_NUMBER FROM PATIENTS WHERE {VISIBLE} ORDER BY NHS_NUMBER LIMIT ? OFFSET ?",
        (count, offset),
    )
    return [r[0] for r in rows]


def _delta(migrate_cli: Invoke) -> dict[str, object]:
    result = migrate_cli("delta", "pds", "--format", "json")
    assert result.exit_code == 0, result.output
    (report,) = json.loads(result.stdout)
    assert isinstance(report, dict)
    return report


def test_every_kind_of_change_reaches_exactly_its_documents(
    loaded: Path, migrate_cli: Invoke
) -> None:
    with sqlite3.connect(loaded / "legacy.db") as db:
        a, c, d = _patients(db, 3, 100)
        db.execute("UPDATE PATIENTS SET FAMILY_NAME = 'Root Changed' WHERE NHS_NUMBER = ?", (a,))
        (address,) = db.execute(
            f"SELECT min(ADDRESS_ID) FROM PATIENT_ADDRESSES WHERE NHS_NUMBER IN (SELECT"
            f" NHS_NUMBER FROM PATIENTS WHERE {VISIBLE} AND NHS_NUMBER NOT IN (?, ?, ?))",
            (a, c, d),
        ).fetchone()
        db.execute(  # a child moved to another parent: both documents change
            "UPDATE PATIENT_ADDRESSES SET NHS_NUMBER = ?, POSTCODE = 'ZZ9 9ZZ'"
            " WHERE ADDRESS_ID = ?",
            (c, address),
        )
        (gp,) = db.execute(
            f"SELECT GP_PRACTICE_CODE FROM PATIENTS WHERE {VISIBLE} AND GP_PRACTICE_CODE IN "
            "(SELECT ODS_CODE FROM ORGANISATIONS) GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
        ).fetchone()
        db.execute("UPDATE ORGANISATIONS SET NAME = 'Renamed Surgery' WHERE ODS_CODE = ?", (gp,))
        for table in CHILDREN:  # a root deleted with its children: no row is "newer"
            db.execute(f"DELETE FROM {table} WHERE NHS_NUMBER = ?", (d,))
        db.execute("DELETE FROM PATIENTS WHERE NHS_NUMBER = ?", (d,))
        (hidden,) = _patients(db, 1, 300)  # now left out by the mapping's `where`
        db.execute("UPDATE PATIENTS SET SENSITIVE_FLAG = 'S' WHERE NHS_NUMBER = ?", (hidden,))
    report = _delta(migrate_cli)
    assert report["deleted"] == 2 and report["roots"] > 5
    assert_matches_reference(migrate_cli, loaded, "pds")
    assert _delta(migrate_cli)["delta_id"] is None  # nothing left: the digests moved on
    reconciled = migrate_cli("reconcile", "pds", "--dry-run")
    assert reconciled.exit_code == 0, reconciled.output


def test_a_change_committed_late_with_an_older_time_is_not_lost(
    loaded: Path, migrate_cli: Invoke
) -> None:
    """What a watermark by time alone misses: a row whose last-modified value is older than the
    newest the last delta saw (a transaction that took its time early and committed late)."""
    with sqlite3.connect(loaded / "legacy.db") as db:
        first, late = _patients(db, 2, 40)
        db.execute("UPDATE PATIENTS SET GIVEN_NAME = 'Early' WHERE NHS_NUMBER = ?", (first,))
    assert _delta(migrate_cli)["roots"] == 1
    with sqlite3.connect(loaded / "legacy.db") as db:
        db.execute(
            "UPDATE PATIENTS SET GIVEN_NAME = 'Late', UPDATED_AT = '2021-06-01 00:00:00.000'"
            " WHERE NHS_NUMBER = ?",
            (late,),
        )
    status = json.loads(migrate_cli("capture", "status", "pds", "--format", "json").stdout)
    assert status["pending"] == 0  # the position cannot see it ...
    assert _delta(migrate_cli)["roots"] == 1  # ... the delta does
    assert_matches_reference(migrate_cli, loaded, "pds")


def test_a_child_deleted_alone_rebuilds_its_parent(loaded: Path, migrate_cli: Invoke) -> None:
    with sqlite3.connect(loaded / "legacy.db") as db:
        (key,) = db.execute(
            f"SELECT NHS_NUMBER FROM PATIENTS WHERE {VISIBLE} AND NHS_NUMBER IN (SELECT"
            " NHS_NUMBER FROM PATIENT_TELECOMS) ORDER BY NHS_NUMBER LIMIT 1"
        ).fetchone()
        db.execute("DELETE FROM PATIENT_TELECOMS WHERE NHS_NUMBER = ?", (key,))
    status = json.loads(migrate_cli("capture", "status", "pds", "--format", "json").stdout)
    assert status["pending"] > 0  # the counts show the deletion
    report = _delta(migrate_cli)
    assert report["roots"] == 1 and report["written"] == 1
    assert_matches_reference(migrate_cli, loaded, "pds")


def test_an_idle_delta_rebuilds_nothing_and_moves_the_position(
    loaded: Path, migrate_cli: Invoke
) -> None:
    report = _delta(migrate_cli)
    assert report["delta_id"] is None and report["roots"] == 0
    assert str(report["position"]).startswith("wm:")
    audit = json.loads(migrate_cli("audit", "pds", "--format", "json").stdout)
    assert "delta" not in [row["action"] for row in audit]


def test_watermark_needs_a_column_for_every_table(demo_project: Path, migrate_cli: Invoke) -> None:
    use_watermark(demo_project)
    config = demo_project / "migrate.toml"
    config.write_text(
        config.read_text().replace(
            'watermark = "UPDATED_AT"', 'watermark = { PATIENTS = "UPDATED_AT" }'
        )
    )
    refused = migrate_cli("capture", "install", "pds")
    assert refused.exit_code == 2
    assert "names no last-modified column for" in refused.output
    assert "PATIENT_ADDRESSES" in refused.output and "Traceback" not in refused.output
    config.write_text(config.read_text().replace('{ PATIENTS = "UPDATED_AT" }', '"NO_SUCH_COLUMN"'))
    missing = migrate_cli("capture", "install", "pds")
    assert missing.exit_code == 2 and "has no column NO_SUCH_COLUMN" in missing.output


def test_check_refuses_a_watermark_capture_it_could_not_install(
    demo_project: Path, migrate_cli: Invoke
) -> None:
    use_watermark(demo_project)
    assert migrate_cli("check").exit_code == 0
    config = demo_project / "migrate.toml"
    config.write_text(config.read_text().replace('"UPDATED_AT"', '"GENDER"'))
    refused = migrate_cli("check")
    assert refused.exit_code == 2, refused.output
    assert "[services.pds] capture" in refused.output and "GENDER" in refused.output
