"""SIGTERM, as a service manager sends it: the run says so, stops its workers and exits 143; sent
to the main process only, no worker outlives it; the next run resumes exactly."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from test_resume_kill import MIGRATE, _loaded_chunks, _migrate


def _group_alive(pgid: int) -> list[int]:
    """Processes of this process group still running (zombies excluded)."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, group = fields[0], int(fields[2])
        if group == pgid and state != "Z":
            alive.append(int(entry.name))
    return alive


@pytest.mark.slow
def test_sigterm_to_the_main_process_stops_everything_and_the_rerun_is_exact(
    demo_project: Path, tmp_path: Path
) -> None:
    clean = tmp_path / "clean"
    shutil.copytree(demo_project, clean)
    assert _migrate(clean, "run", "--workers", "1").returncode == 0
    process = subprocess.Popen(
        [str(MIGRATE), "--config", str(demo_project / "migrate.toml"), "run", "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while _loaded_chunks(demo_project) < 2 and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    if process.poll() is not None:
        pytest.skip("the run ended before it could be signalled")
    process.send_signal(signal.SIGTERM)  # the main process only, as `kill PID` does
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert "terminated (SIGTERM): re-run the same command to resume" in stderr
    assert "Traceback" not in stderr
    deadline = time.monotonic() + 10
    while _group_alive(process.pid):
        assert time.monotonic() < deadline, f"workers outlived the run: {_group_alive(process.pid)}"
        time.sleep(0.1)
    resumed = _migrate(demo_project, "run")
    assert resumed.returncode == 0, resumed.stderr
    for service in ("ods", "pds", "scr", "eps"):
        assert (
            _migrate(demo_project, "dump", service).stdout
            == _migrate(clean, "dump", service).stdout
        )


@pytest.mark.slow
def test_workers_end_within_seconds_of_losing_their_command(demo_project: Path) -> None:
    process = subprocess.Popen(
        [str(MIGRATE), "--config", str(demo_project / "migrate.toml"), "run", "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while _loaded_chunks(demo_project) < 1 and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    if process.poll() is not None:
        pytest.skip("the run ended before it could be killed")
    os.kill(process.pid, signal.SIGKILL)  # the main process alone, no cleanup at all
    process.wait(timeout=30)
    deadline = time.monotonic() + 10
    while _group_alive(process.pid):
        assert time.monotonic() < deadline, f"workers outlived the run: {_group_alive(process.pid)}"
        time.sleep(0.1)
