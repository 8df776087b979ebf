"""Worker processes: each pool's workers start with cyclic collection made rare, and so does the
console script once its imports are done."""

from __future__ import annotations

import gc
import subprocess
import sys

from migrate.processes import QUIET_GC_THRESHOLD, worker_pool


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
