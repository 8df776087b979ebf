"""Leases: one writer per service; a second refuses at once naming the holder; a killed holder is
taken over; a reconciliation during a write says so."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import Invoke

from migrate.ledger import Ledger
from migrate.ledger.leases import LeaseHeld
from migrate.project import Project


def test_a_second_holder_is_refused_naming_the_first(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'state.db'}")
    record = ledger.acquire_lease(
        "pds", holder="a", command="migrate run pds", actor="ann@h1", host="h1", pid=1, seconds=30
    )
    assert ledger.lease("pds") == record
    with pytest.raises(LeaseHeld) as refused:
        ledger.acquire_lease(
            "pds", holder="b", command="migrate delta", actor="bob@h2", host="h2", pid=2, seconds=30
        )
    assert refused.value.exit_code == 1
    text = str(refused.value)
    assert "`migrate run pds` by ann@h1 on h1 (pid 1)" in text and "hint:" in text
    assert ledger.renew_lease("pds", holder="a", seconds=30)
    assert not ledger.renew_lease("pds", holder="b", seconds=30)
    ledger.release_lease("pds", holder="b")  # not the holder: nothing happens
    assert ledger.lease("pds") is not None
    ledger.release_lease("pds", holder="a")
    assert ledger.lease("pds") is None
    ledger.close()


def test_an_expired_lease_is_taken_over(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'state.db'}")
    ledger.acquire_lease("pds", holder="a", command="x", actor="a", host="h", pid=1, seconds=0.2)
    time.sleep(0.3)
    assert ledger.lease("pds") is None
    taken = ledger.acquire_lease(
        "pds", holder="b", command="y", actor="b", host="h", pid=2, seconds=5
    )
    assert taken.holder == "b"
    assert not ledger.renew_lease("pds", holder="a", seconds=5)  # the first learns it lost it
    ledger.close()


def _hold_in_a_process(project: Path, seconds: float) -> subprocess.Popen[bytes]:
    """A real process that takes pds's lease, says so, and sleeps."""
    code = (
        "import sys, time\n"
        "from migrate.project import Project\n"
        f"project = Project.load(__import__('pathlib').Path({str(project / 'migrate.toml')!r}))\n"
        "with project.hold(['pds'], 'migrate run pds'):\n"
        "    print('held', flush=True)\n"
        f"    time.sleep({seconds})\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert process.stdout is not None and process.stdout.readline() == b"held\n"
    return process


def test_two_commands_on_one_service_never_run_together(
    demo_project: Path, migrate_cli: Invoke
) -> None:
    holder = _hold_in_a_process(demo_project, 60)
    try:
        started = time.monotonic()
        refused = migrate_cli("run", "pds")
        assert refused.exit_code == 1
        assert "pds is being changed by `migrate run pds`" in refused.output
        assert f"(pid {holder.pid})" in refused.output
        assert time.monotonic() - started < 20  # at once, not after a wait
        other = migrate_cli("run", "ods")  # another service is free
        assert other.exit_code == 0, other.output
        checked = migrate_cli("reconcile", "pds", "--dry-run")
        assert checked.exit_code == 1 and "documents in flight" in checked.output
        assert migrate_cli("repair", "pds").exit_code == 1
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    # killed on this host: its lease is taken over at once, not after it expires
    again = migrate_cli("run", "pds")
    assert again.exit_code == 0, again.output
    project = Project.load(demo_project / "migrate.toml")
    try:
        assert project.ledger.lease("pds") is None  # released at the end
    finally:
        project.close()


def test_a_holder_killed_elsewhere_is_taken_over_after_its_lease_expires(
    demo_project: Path, migrate_cli: Invoke
) -> None:
    config = demo_project / "migrate.toml"
    config.write_text(config.read_text().replace("[state]\n", "[state]\nlease_seconds = 2\n"))
    ledger = Ledger(f"sqlite:///{demo_project / '.migrate' / 'state.db'}")
    ledger.acquire_lease(
        "pds", holder="z", command="migrate run pds", actor="zoe@far", host="far-away", pid=7,
        seconds=2,
    )  # fmt: skip
    ledger.close()
    assert migrate_cli("run", "pds").exit_code == 1
    time.sleep(2.5)
    result = migrate_cli("run", "pds")
    assert result.exit_code == 0, result.output


@pytest.mark.postgres
def test_a_shared_postgresql_ledger_keeps_two_processes_off_one_service(
    demo_project: Path, migrate_cli: Invoke, pg_url: str
) -> None:
    """Two operators sharing a PostgreSQL ledger: a second `run` of a service is refused while a
    real process holds it, another service runs meanwhile, and the ledger stays whole."""
    config = demo_project / "migrate.toml"
    config.write_text(config.read_text().replace('"sqlite:///.migrate/state.db"', f'"{pg_url}"'))
    assert migrate_cli("run", "ods").exit_code == 0
    holder = _hold_in_a_process(demo_project, 60)
    try:
        refused = migrate_cli("run", "pds")
        assert refused.exit_code == 1 and f"(pid {holder.pid})" in refused.output
        other = migrate_cli("run", "scr")
        assert other.exit_code == 0, other.output
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    done = migrate_cli("run", "pds")
    assert done.exit_code == 0, done.output
    status = migrate_cli("status", "--format", "json")
    assert status.exit_code == 0 and '"loaded"' in status.stdout
