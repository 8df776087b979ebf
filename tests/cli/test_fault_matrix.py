"""The fault matrix (issue 15): every command that writes, SIGKILLed at 20 seeded random moments.

Each command is the real installed `migrate` in its own process group, and the whole group
(its worker processes too) is killed with SIGKILL, with no chance to clean up, then the command
runs again. When it ends by itself it must end exact: every document equal to what an
uninterrupted execution of the same command writes (the dump of every service, byte for byte),
a dry-run reconciliation against the source finding nothing (exit 0), and the ledger never
showing a phase without its evidence (checked after every kill as well).

Kill moments: the command's "moment zero" is when it holds its service lease (imports, config
and connections done: it is about to change things); from there it is killed once the ledger
has `ahead` more checkpoints than when it started (a seeded choice, spreading the kills over
the remaining work) and a seeded random delay later. When the command ends by itself before its
kill, that round is checked, and the next round starts on a fresh copy.

A command joins the matrix with one line in MATRIX: a name, its arguments, and how to bring a
fresh project to where that command has work to do.
"""

from __future__ import annotations

import io
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from support import ledger_evidence_problems, set_run_option, use_capture
from test_resume_kill import MIGRATE, _migrate
from test_signals import _group_alive

from migrate.cli.main import cli
from migrate.dump import dump_service
from migrate.project import Project

KILLS = 20  # kills that land (the command still running) per command
SEED = 15
PATIENTS = 300
CHUNK_SIZE = 25
SERVICES = ("ods", "pds", "scr", "eps")


def _nothing(_project: Path) -> None:
    """`run` has work to do in a fresh demo project."""


def _source_changed(project: Path) -> None:
    """The demo migrated, then its source changed under pds: patients renamed, deleted (their
    documents now extra) and added (missing)."""
    done = _migrate(project, "run", "--workers", "2")
    assert done.returncode == 0, done.stderr
    _change_source(project)


def _captured_then_changed(project: Path) -> None:
    """pds under change capture, migrated, then its source changed (as `_source_changed`)."""
    use_capture(project)
    installed = _migrate(project, "capture", "install", "pds")
    assert installed.returncode == 0, installed.stderr
    done = _migrate(project, "run", "--workers", "2")
    assert done.returncode == 0, done.stderr
    _change_source(project)


def _change_source(project: Path) -> None:
    with sqlite3.connect(project / "legacy.db") as db:
        db.executescript(
            """
            UPDATE PATIENTS SET FAMILY_NAME = FAMILY_NAME || '-CHANGED' WHERE rowid % 5 = 0;
            DELETE FROM PATIENTS WHERE rowid % 23 = 0;
            INSERT OR IGNORE INTO PATIENTS
                SELECT printf('%010d', CAST(NHS_NUMBER AS INTEGER) + 1), GIVEN_NAME,
                       FAMILY_NAME || '-NEW', DATE_OF_BIRTH, GENDER, GP_PRACTICE_CODE,
                       SENSITIVE_FLAG, DATE_OF_DEATH, RECORD_UID, CREATED_AT, SERIAL_CHANGE
                FROM PATIENTS WHERE rowid % 11 = 0;
            """
        )


def _reconciled_after_source_changed(project: Path) -> None:
    """The differences recorded by a reconciliation: what `repair` works from."""
    _source_changed(project)
    found = _migrate(project, "reconcile", "pds", "--workers", "1")
    assert found.returncode == 1, found.stdout + found.stderr
    assert "missing" in found.stdout and "extra" in found.stdout and "changed" in found.stdout


@dataclass(frozen=True)
class Command:
    name: str
    args: tuple[str, ...]
    prepare: Callable[[Path], None]  # a fresh demo project -> one where the command has work


MATRIX = (
    Command("run", ("run", "--workers", "2"), _nothing),
    Command("repair", ("repair", "pds"), _reconciled_after_source_changed),
    Command("delta", ("delta", "pds"), _captured_then_changed),
)


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from migrate.demo import create_demo

    directory = tmp_path_factory.mktemp("matrix") / "demo"
    create_demo(directory, patients=PATIENTS, seed=SEED)
    set_run_option(directory, "chunk_size", CHUNK_SIZE)
    return directory


def _state(project: Path) -> sqlite3.Connection | None:
    path = project / ".migrate" / "state.db"
    if not path.exists():
        return None
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)


def _count(project: Path, sql: str) -> int:
    db = _state(project)
    if db is None:
        return 0
    try:
        (count,) = db.execute(sql).fetchone()
        return int(count)
    except sqlite3.OperationalError:  # not created yet, or locked past the timeout
        return 0
    finally:
        db.close()


def _checkpoints(project: Path) -> int:
    return _count(project, "SELECT count(*) FROM checkpoints")


def _holds_lease(project: Path, pid: int) -> bool:
    return _count(project, f"SELECT count(*) FROM leases WHERE pid = {pid}") > 0


@dataclass
class Attempt:
    status: int
    stderr: str
    killed: bool
    held: float  # seconds from the moment it held its lease to its end


def _attempt(project: Path, command: Command, ahead: int, delay: float) -> Attempt:
    """Run the command; once it holds its lease and the ledger has `ahead` more checkpoints,
    wait `delay` seconds and SIGKILL its whole process group (unless it ended by itself)."""
    start = _checkpoints(project)
    process = subprocess.Popen(
        [str(MIGRATE), "--config", str(project / "migrate.toml"), *command.args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while process.poll() is None and not _holds_lease(project, process.pid):
            assert time.monotonic() < deadline, "the command never took its lease"
            time.sleep(0.005)
        leased = time.monotonic()
        while process.poll() is None and _checkpoints(project) < start + ahead:
            assert time.monotonic() < deadline, "the command made no progress"
            time.sleep(0.005)
        until = time.monotonic() + delay
        while process.poll() is None and time.monotonic() < until:
            time.sleep(0.005)
        killed = process.poll() is None
        if killed:
            os.killpg(process.pid, signal.SIGKILL)
        _, stderr = process.communicate(timeout=300)
        held = time.monotonic() - leased
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    if killed:
        deadline = time.monotonic() + 10
        while _group_alive(process.pid):  # workers reparented, not yet reaped
            assert time.monotonic() < deadline, f"survived SIGKILL: {_group_alive(process.pid)}"
            time.sleep(0.05)
    landed = killed and process.returncode == -signal.SIGKILL
    return Attempt(process.returncode, stderr, landed, held)


def _dumps(project: Path) -> dict[str, bytes]:
    loaded = Project.load(project / "migrate.toml", read_only=True)
    try:
        found = {}
        for service in SERVICES:
            out = io.BytesIO()
            dump_service(loaded, loaded.config.service(service), out)
            found[service] = out.getvalue()
        return found
    finally:
        loaded.close()


def _assert_exact(project: Path, reference: dict[str, bytes], what: str) -> None:
    got = _dumps(project)
    for service in SERVICES:
        assert got[service] == reference[service], f"{what}: {service} differs from a clean run"
    result = CliRunner().invoke(
        cli,
        ["--config", str(project / "migrate.toml"), "reconcile", "--dry-run", "--workers", "1"],
    )
    assert result.exit_code == 0, f"{what}: the dry-run reconciliation differs\n{result.output}"
    assert ledger_evidence_problems(f"sqlite:///{project / '.migrate' / 'state.db'}") == []


class _Rounds:
    """Fresh copies of the prepared project, one per round of kills. (A copy's ledger still
    names the prepared project's staged files and differences file: the commands here only read
    them, so every round starts from the same state.)"""

    def __init__(self, prepared: Path, root: Path) -> None:
        self.prepared = prepared
        self.root = root
        self.count = 0

    def __iter__(self) -> Iterator[Path]:
        while True:
            self.count += 1
            project = self.root / f"round-{self.count}"
            shutil.copytree(self.prepared, project)
            yield project


@pytest.mark.slow
@pytest.mark.parametrize("command", MATRIX, ids=[c.name for c in MATRIX])
def test_killed_at_random_moments_and_resumed_ends_exact(
    command: Command, small_demo: Path, tmp_path: Path
) -> None:
    assert MIGRATE.exists(), "the package must be installed (make venv)"
    prepared = tmp_path / "prepared"
    shutil.copytree(small_demo, prepared)
    command.prepare(prepared)

    # What an uninterrupted execution writes, how much ledger work and how long it takes.
    clean = tmp_path / "clean"
    shutil.copytree(prepared, clean)
    before = _checkpoints(clean)
    done = _attempt(clean, command, 0, float("inf"))
    assert done.status == 0, done.stderr
    work = _checkpoints(clean) - before
    reference = _dumps(clean)

    rng = random.Random(f"{SEED}-{command.name}")
    landed = attempts = 0
    rounds = _Rounds(prepared, tmp_path)
    projects = iter(rounds)
    project = next(projects)
    progress = 0  # checkpoints this round's executions added
    while landed < KILLS:
        attempts += 1
        assert attempts <= 4 * KILLS, f"only {landed} of {KILLS} kills landed in {attempts} tries"
        # Spread the kills left over the ledger work left; a command with little ledger work
        # (repair) is killed by delay alone, over the time a clean execution holds its lease.
        if work > 20:
            ahead = rng.randint(0, 2 * max(0, work - progress) // (KILLS - landed + 1))
            delay = rng.uniform(0, 0.15)
        else:
            ahead, delay = 0, rng.uniform(0, done.held)
        before = _checkpoints(project)
        attempt = _attempt(project, command, ahead, delay)
        progress += _checkpoints(project) - before
        problems = ledger_evidence_problems(f"sqlite:///{project / '.migrate' / 'state.db'}")
        assert problems == [], f"after a kill: {problems}"
        if attempt.killed:
            landed += 1
            continue
        assert attempt.status == 0, attempt.stderr
        _assert_exact(project, reference, f"round {rounds.count}")
        project, progress = next(projects), 0
    final = _migrate(project, *command.args)
    assert final.returncode == 0, final.stderr
    _assert_exact(project, reference, f"round {rounds.count}")
    assert landed == KILLS
