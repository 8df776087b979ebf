"""Worker processes: each pool's workers start with cyclic collection made rare, and so does the
console script once its imports are done."""

from __future__ import annotations

import gc
import subprocess
import sys

from migrate.processes import QUIET_GC_THRESHOLD, started_as_forkserver, worker_pool


def _gc_state() -> tuple[tuple[int, int, int], int]:
    return gc.get_threshold(), gc.get_freeze_count()


def test_a_pools_workers_start_with_quiet_collection() -> None:
    with worker_pool(2) as pool:
        states = [pool.submit(_gc_state).result() for _ in range(4)]
    for threshold, frozen in states:
        assert threshold == QUIET_GC_THRESHOLD
        assert frozen > 0  # the preloaded modules no collection walks again


def test_the_console_script_freezes_its_imports_before_the_command() -> None:
    code = (
        "import gc, sys, migrate.cli.main as cli\n"
        "cli.main = lambda: print(gc.get_threshold(), gc.get_freeze_count() > 1000)\n"
        "sys.argv = ['migrate', 'status']\n"
        "from migrate.cli.entry import main\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == f"{QUIET_GC_THRESHOLD} True"


def _command_line() -> list[str]:
    return sys.orig_argv


def test_a_forkserver_is_told_from_its_command_line() -> None:
    """Workers are forked from the forkserver: their command line is the one multiprocessing
    started it with."""
    with worker_pool(1) as pool:
        forkserver = pool.submit(_command_line).result()
    assert started_as_forkserver(forkserver)
    assert not started_as_forkserver(sys.orig_argv)
    assert not started_as_forkserver(["python", "-c", "import multiprocessing.forkserver"])


def _exit_of(code: str) -> tuple[int, list[str]]:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return done.returncode, done.stdout.split()


def test_the_forkserver_ends_at_once_and_other_processes_as_usual() -> None:
    """In the forkserver, importing the module ends the process at its exit handler, skipping
    the teardown (and what was registered before it); anywhere else it changes nothing."""
    body = (
        "import atexit, sys; atexit.register(print, 'before'); import migrate.processes; "
        "atexit.register(print, 'after'); sys.exit(3)"
    )
    assert _exit_of(f"from multiprocessing.forkserver import main; {body}") == (0, ["after"])
    assert _exit_of(body) == (3, ["after", "before"])
