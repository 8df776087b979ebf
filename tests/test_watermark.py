"""Watermark capture: changes are found by comparing rows, so a change committed late with an
older last-modified value and a deleted child are caught (every kind of change under both modes:
test_delta.py), an idle delta rebuilds nothing, and a capture that cannot work is refused."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from support import (
    VISIBLE,
    Invoke,
    assert_matches_reference,
    load_under_capture,
    use_watermark,
    visible_patients,
)


@pytest.fixture
def loaded(demo_project: Path, migrate_cli: Invoke) -> Path:
    """The demo's pds under watermark capture, bulk-loaded."""
    return load_under_capture(demo_project, migrate_cli, "watermark")


def _delta(migrate_cli: Invoke) -> dict[str, object]:
    result = migrate_cli("delta", "pds", "--format", "json")
    assert result.exit_code == 0, result.output
    (report,) = json.loads(result.stdout)
    assert isinstance(report, dict)
    return report


def test_a_change_committed_late_with_an_older_time_is_not_lost(
    loaded: Path, migrate_cli: Invoke
) -> None:
    """What a watermark by time alone misses: a row whose last-modified value is older than the
    newest the last delta saw (a transaction that took its time early and committed late)."""
    with sqlite3.connect(loaded / "legacy.db") as db:
        first, late = visible_patients(db, 2, 40)
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


def test_switch_finds_a_late_change_that_the_position_cannot_see(
    loaded: Path, migrate_cli: Invoke
) -> None:
    for step in ("freeze", "sync", "verify"):
        result = migrate_cli("cutover", "pds", step)
        assert result.exit_code == 0, (step, result.output)
    with sqlite3.connect(loaded / "legacy.db") as db:
        (key,) = visible_patients(db, 1, 7)
        db.execute(  # a writer that was not stopped, with an old time: no count or time moves
            "UPDATE PATIENTS SET GIVEN_NAME = 'After Verify', UPDATED_AT = '2019-01-01 00:00:00'"
            " WHERE NHS_NUMBER = ?",
            (key,),
        )
    status = json.loads(migrate_cli("capture", "status", "pds", "--format", "json").stdout)
    assert status["pending"] == 0
    refused = migrate_cli("cutover", "pds", "switch", "--out-of-order")
    assert refused.exit_code == 1, refused.output
    assert "1 change(s) reached the source after the verification" in refused.output
    board = json.loads(migrate_cli("status", "--format", "json").stdout)
    assert next(s for s in board if s["service"] == "pds")["cutover_phase"] == "frozen"
