"""The cutover's gates: every refusal exits 1, says which condition failed and what to run, is
audited, and changes nothing else."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from support import Invoke, use_capture

from migrate.cutover import STEPS, Phase, next_step


@pytest.fixture
def loaded(demo_project: Path, migrate_cli: Invoke) -> Path:
    use_capture(demo_project)
    config = demo_project / "migrate.toml"
    config.write_text(
        config.read_text().replace('order = ["ods", "pds", "scr", "eps"]', 'order = ["pds"]')
    )
    assert migrate_cli("capture", "install", "pds").exit_code == 0
    assert migrate_cli("run", "pds").exit_code == 0
    return demo_project


def _refused(migrate_cli: Invoke, *args: str, says: str) -> None:
    result = migrate_cli(*args)
    assert result.exit_code == 1, result.output
    assert says in result.output, result.output
    assert "hint:" in result.output


def _phase(migrate_cli: Invoke) -> str:
    status = json.loads(migrate_cli("status", "--format", "json").stdout)
    return next(s["cutover_phase"] for s in status if s["service"] == "pds")


def _touch(project: Path) -> None:
    with sqlite3.connect(project / "legacy.db") as db:
        db.execute("UPDATE PATIENTS SET GIVEN_NAME = GIVEN_NAME || '!' WHERE rowid = 3")


def test_every_gate_refuses_out_of_turn(loaded: Path, migrate_cli: Invoke) -> None:
    assert _phase(migrate_cli) == "loaded"
    _refused(migrate_cli, "cutover", "pds", "sync", says="sync needs pds to be")
    _refused(migrate_cli, "cutover", "pds", "verify", says="verify needs pds to be synced")
    _refused(migrate_cli, "cutover", "pds", "switch", says="switch needs pds to be verified")
    _refused(migrate_cli, "cutover", "pds", "rollback", says="rollback needs pds to be")
    assert migrate_cli("cutover", "pds", "freeze").exit_code == 0
    _refused(migrate_cli, "delta", "pds", says="delta refused in phase frozen")
    _refused(migrate_cli, "cutover", "pds", "freeze", says="freeze needs pds to be")
    assert migrate_cli("cutover", "pds", "sync").exit_code == 0
    _touch(loaded)  # a writer that did not stop: verify is refused until synced again
    _refused(migrate_cli, "cutover", "pds", "verify", says="reached the source since the sync")
    assert migrate_cli("cutover", "pds", "sync").exit_code == 0
    assert migrate_cli("cutover", "pds", "verify").exit_code == 0
    _touch(loaded)  # a change after verify sends the operator back to sync
    _refused(migrate_cli, "cutover", "pds", "switch", says="after the verification")
    assert _phase(migrate_cli) == "frozen"
    for step in ("sync", "verify", "switch"):
        result = migrate_cli("cutover", "pds", step)
        assert result.exit_code == 0, (step, result.output)
    _refused(migrate_cli, "cutover", "pds", "rollback", says="system of record")
    _refused(migrate_cli, "delta", "pds", says="delta refused in phase switched")
    audit = json.loads(migrate_cli("audit", "pds", "--format", "json").stdout)
    refusals = [row for row in audit if row["action"].endswith(".refused")]
    assert len(refusals) == 10
    assert all(row["detail"].get("reason") for row in refusals)


def test_a_failing_verification_keeps_the_service_synced(loaded: Path, migrate_cli: Invoke) -> None:
    assert migrate_cli("cutover", "pds", "freeze").exit_code == 0
    assert migrate_cli("cutover", "pds", "sync").exit_code == 0
    from migrate.project import Project

    project = Project.load(loaded / "migrate.toml")
    try:
        target = project.target
        (key,) = [o.key for o in list(target.iter_bucket("default", "patients"))[:1]]
        assert target.delete("default", "patients", key)
    finally:
        project.close()
    _refused(migrate_cli, "cutover", "pds", "verify", says="1 missing")
    assert _phase(migrate_cli) == "synced"
    assert migrate_cli("repair", "pds").exit_code == 0
    assert migrate_cli("cutover", "pds", "verify").exit_code == 0


def test_rollback_before_switch_returns_to_syncing(loaded: Path, migrate_cli: Invoke) -> None:
    assert migrate_cli("cutover", "pds", "freeze").exit_code == 0
    assert migrate_cli("cutover", "pds", "rollback", "--operator", "lead").exit_code == 0
    assert _phase(migrate_cli) == "rolled-back"
    _touch(loaded)
    assert migrate_cli("delta", "pds").exit_code == 0  # writers resumed; delta catches up
    assert _phase(migrate_cli) == "syncing"
    audit = json.loads(migrate_cli("audit", "pds", "--format", "json").stdout)
    rollback = next(row for row in audit if row["action"] == "cutover.rollback")
    assert rollback["actor"] == "lead" and rollback["detail"]["from"] == "frozen"


def test_the_transition_table_is_closed() -> None:
    """Every phase a step leads to is one some step starts from (or the end), and every phase
    has a next step to suggest."""
    starts = {phase for allowed, _ in STEPS.values() for phase in allowed}
    ends = {after for _, after in STEPS.values()}
    assert ends - starts == {Phase.SWITCHED}
    for phase in (None, *Phase):
        assert next_step(phase, "pds")
