"""The CPU a command costs, every process of it counted: its workers, and the forkserver they are
forked from, which outlives the command by a moment and is nobody's child by then.

`counted(command)` runs `python benchmarks/cpu.py COMMAND...` in a process of its own that makes
itself a child subreaper (Linux `PR_SET_CHILD_SUBREAPER`): whatever the command leaves behind is
re-parented to it, it reaps every descendant, and the kernel adds each reaped process's CPU to its
own children's (`RUSAGE_CHILDREN`), which it then reports with the command's exit code and wall
time.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
MARK = "migrate-bench-cpu:"


@dataclass(frozen=True, slots=True)
class Counted:
    """A command's exit code, output, wall seconds (until the command itself exited) and CPU
    seconds (user + system, every process it started included)."""

    returncode: int
    stdout: str
    stderr: str
    wall: float
    cpu: float


def counted(
    command: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 900,
) -> Counted:
    """Run `command` under the counting process; its figures."""
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *command],
        cwd=cwd,
        env=dict(env) if env is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    lines = done.stdout.splitlines()
    report = next((line for line in reversed(lines) if line.startswith(MARK)), None)
    if report is None:
        raise RuntimeError(f"the CPU counter gave no report: {done.stderr.strip()[-300:]}")
    figures = json.loads(report[len(MARK) :])
    stdout = "\n".join(line for line in lines if not line.startswith(MARK))
    return Counted(figures["returncode"], stdout, done.stderr, figures["wall"], figures["cpu"])


def _become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def main(argv: Sequence[str]) -> int:
    _become_subreaper()
    started = time.perf_counter()
    child = subprocess.Popen(list(argv))
    returncode = child.wait()
    wall = time.perf_counter() - started
    while True:  # every descendant, re-parented here, until none is left
        try:
            os.wait()
        except ChildProcessError:
            break
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    figures = {"returncode": returncode, "wall": wall, "cpu": usage.ru_utime + usage.ru_stime}
    sys.stdout.flush()
    print(MARK + json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
