"""SIGKILL a real `migrate run` (the installed command, with its worker processes) mid-load, three
times, then let it finish: the target must hold exactly what a clean run writes."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

MIGRATE = Path(sys.executable).parent / "migrate"


def _migrate(project: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MIGRATE), "--config", str(project / "migrate.toml"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _loaded_chunks(project: Path) -> int:
    state = project / ".migrate" / "state.db"
    if not state.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=5) as db:
            (count,) = db.execute("SELECT count(*) FROM chunks WHERE state = 'loaded'").fetchone()
            return int(count)
    except sqlite3.OperationalError:
        return 0


def _kill_after_progress(project: Path, at_least: int) -> int:
    """Start a run in its own process group and SIGKILL the whole group once `at_least` more chunks
    are loaded (or the run ends by itself). Returns the run's exit status."""
    before = _loaded_chunks(project)
    process = subprocess.Popen(
        [str(MIGRATE), "--config", str(project / "migrate.toml"), "run", "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    while process.poll() is None and time.monotonic() < deadline:
        if _loaded_chunks(project) >= before + at_least:
            os.killpg(process.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    else:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    return process.wait(timeout=60)


@pytest.mark.slow
def test_a_run_killed_three_times_ends_exact(demo_project: Path, tmp_path: Path) -> None:
    assert MIGRATE.exists(), "the package must be installed (make venv)"
    clean = tmp_path / "clean"
    shutil.copytree(demo_project, clean)
    reference = _migrate(clean, "run", "--workers", "1")
    assert reference.returncode == 0, reference.stderr

    kills = 0
    for at_least in (2, 5, 9):
        status = _kill_after_progress(demo_project, at_least)
        if status == -signal.SIGKILL:
            kills += 1
    assert kills >= 2, "the run finished before it could be killed: make the demo bigger"

    final = _migrate(demo_project, "run")
    assert final.returncode == 0, final.stderr
    for service in ("ods", "pds", "scr", "eps"):
        got = _migrate(demo_project, "dump", service)
        want = _migrate(clean, "dump", service)
        assert got.returncode == 0 and want.returncode == 0
        assert got.stdout == want.stdout, f"{service}: the resumed run differs from a clean run"
        assert got.stdout.count("\n") > 0

    # every chunk of the final run is loaded exactly once in the ledger's latest run per service
    with sqlite3.connect(demo_project / ".migrate" / "state.db") as db:
        states = db.execute("SELECT DISTINCT state FROM chunks").fetchall()
    assert states == [("loaded",)]
