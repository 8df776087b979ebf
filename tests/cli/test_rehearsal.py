"""A whole cutover rehearsal through the CLI: capture, bulk run, a writer changing roots, children
and lookups while delta runs again and again, freeze, sync, verify, switch; then the target holds
exactly what a plain build of the frozen source gives. And delta killed mid-apply, resumed."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import Invoke, assert_matches_reference, use_mode
from test_resume_kill import MIGRATE, _migrate

WRITER = r"""
import random, sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], timeout=60, isolation_level=None)
rng = random.Random(int(sys.argv[2]))
visible = "COALESCE(SENSITIVE_FLAG, 'N') <> 'S'"
for step in range(int(sys.argv[3])):
    db.execute("BEGIN IMMEDIATE")
    keys = [r[0] for r in db.execute(f"SELECT NHS_NUMBER FROM PATIENTS WHERE {visible}")]
    key, other = rng.sample(keys, 2)
    kind = rng.randrange(6)
    if kind == 0:
        db.execute("UPDATE PATIENTS SET FAMILY_NAME = ? WHERE NHS_NUMBER = ?", (f"W{step}", key))
    elif kind == 1:
        db.execute("UPDATE PATIENT_ADDRESSES SET NHS_NUMBER = ?, LINE1 = ? WHERE ADDRESS_ID ="
                   " (SELECT min(ADDRESS_ID) FROM PATIENT_ADDRESSES WHERE NHS_NUMBER = ?)",
                   (other, f"Moved {step}", key))
    elif kind == 2:
        db.execute("UPDATE ORGANISATIONS SET NAME = ? WHERE ODS_CODE = (SELECT GP_PRACTICE_CODE"
                   " FROM PATIENTS WHERE NHS_NUMBER = ?)", (f"Renamed {step}", key))
    elif kind == 3:
        for table in ("PATIENT_ADDRESSES", "PATIENT_NAMES", "PATIENT_TELECOMS",
                      "PATIENT_PHARMACIES", "PATIENTS"):
            db.execute(f"DELETE FROM {table} WHERE NHS_NUMBER = ?", (key,))
    elif kind == 4:
        db.execute("INSERT INTO PATIENTS (NHS_NUMBER, GIVEN_NAME, FAMILY_NAME, DATE_OF_BIRTH,"
                   " GENDER, GP_PRACTICE_CODE, SENSITIVE_FLAG, RECORD_UID, CREATED_AT,"
                   " SERIAL_CHANGE) SELECT ?, GIVEN_NAME, 'Inserted', DATE_OF_BIRTH, GENDER,"
                   " GP_PRACTICE_CODE, 'N', RECORD_UID, CREATED_AT, 1 FROM PATIENTS"
                   " WHERE NHS_NUMBER = ?", (f"{8000000000 + step}", key))
    else:
        db.execute("DELETE FROM PATIENT_TELECOMS WHERE NHS_NUMBER = ?", (key,))
    db.execute("COMMIT")
    time.sleep(rng.random() / 50)
"""


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["triggers", "watermark"])
def test_a_whole_cutover_rehearsal(demo_project: Path, migrate_cli: Invoke, mode: str) -> None:
    use_mode(demo_project, mode)
    assert migrate_cli("capture", "install", "pds", "--operator", "ann").exit_code == 0
    loaded = migrate_cli("run", "pds")
    assert loaded.exit_code == 0, loaded.output
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(demo_project / "legacy.db"), "7", "150"]
    )
    deltas = 0
    try:
        while writer.poll() is None:
            result = migrate_cli("delta", "pds", "--operator", "ann")
            assert result.exit_code == 0, result.output
            deltas += 1
    finally:
        writer.wait(timeout=120)
    assert writer.returncode == 0 and deltas >= 2
    for step in ("freeze", "sync", "verify"):
        result = migrate_cli("cutover", "pds", step, "--operator", "bob")
        assert result.exit_code == 0, (step, result.output)
    refused = migrate_cli("cutover", "pds", "switch", "--operator", "bob")
    assert refused.exit_code == 1 and "not switched: ods" in refused.output
    switched = migrate_cli("cutover", "pds", "switch", "--out-of-order", "--operator", "bob")
    assert switched.exit_code == 0, switched.output
    assert_matches_reference(migrate_cli, demo_project, "pds")  # the source frozen since
    status = json.loads(migrate_cli("status", "--format", "json").stdout)
    (pds,) = [s for s in status if s["service"] == "pds"]
    assert pds["cutover_phase"] == "switched" and pds["lag"]["pending"] == 0
    audit = json.loads(migrate_cli("audit", "pds", "--format", "json").stdout)
    actions = [row["action"] for row in audit]
    wanted = ["capture.install", "run.complete", "delta", "cutover.freeze", "cutover.sync"]
    wanted += ["cutover.verify", "cutover.switch.refused", "cutover.switch"]
    assert set(wanted) <= set(actions), set(wanted) - set(actions)
    switch = next(row for row in audit if row["action"] == "cutover.switch")
    assert switch["actor"] == "bob" and switch["detail"]["evidence"]["out_of_order"] is True
    assert "--out-of-order" in switch["detail"]["command"]
    verify = next(row for row in audit if row["action"] == "cutover.verify")
    assert len(verify["detail"]["evidence"]["report_sha256"]) == 64
    book = json.loads(migrate_cli("runbook", "pds", "--format", "json").stdout)
    assert all(step["done"] for step in book["steps"])
    assert all(step["seconds"] is not None for step in book["steps"][1:])
    assert book["next"].startswith("done")


def _done_batches(project: Path) -> int:
    state = project / ".migrate" / "state.db"
    try:
        with sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=5) as db:
            (count,) = db.execute("SELECT count(*) FROM delta_batches WHERE done").fetchone()
            return int(count)
    except sqlite3.OperationalError:
        return 0


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["triggers", "watermark"])
def test_a_delta_killed_three_times_mid_apply_then_resumed_is_exact(
    demo_project: Path, migrate_cli: Invoke, mode: str
) -> None:
    use_mode(demo_project, mode)
    assert migrate_cli("capture", "install", "pds").exit_code == 0
    assert migrate_cli("run", "pds").exit_code == 0
    with sqlite3.connect(demo_project / "legacy.db") as db:
        db.execute("UPDATE PATIENTS SET GIVEN_NAME = GIVEN_NAME || '-d'")
        db.execute("UPDATE ORGANISATIONS SET NAME = NAME || ' (new)'")
    kills = 0
    for at_least in (1, 3, 5):
        before = _done_batches(demo_project)
        process = subprocess.Popen(
            [str(MIGRATE), "--config", str(demo_project / "migrate.toml"), "delta", "pds"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while process.poll() is None and time.monotonic() < deadline:
            if _done_batches(demo_project) >= max(before + 1, at_least):
                os.killpg(process.pid, signal.SIGKILL)
                break
            time.sleep(0.005)
        if process.wait(timeout=60) == -signal.SIGKILL:
            kills += 1
    assert kills >= 2, "the delta finished before it could be killed: make it bigger"
    final = _migrate(demo_project, "delta", "pds")
    assert final.returncode == 0, final.stderr
    assert "resumed" in final.stderr or "nothing to apply" in final.stderr
    assert_matches_reference(migrate_cli, demo_project, "pds")
    assert migrate_cli("reconcile", "pds", "--dry-run").exit_code == 0
    idle = _migrate(demo_project, "delta", "pds")  # the resumed delta moved the position on
    assert idle.returncode == 0 and "nothing to apply" in idle.stderr, idle.stderr
