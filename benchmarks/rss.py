"""`python -m benchmarks.rss TIMEOUT COMMAND...`: run COMMAND, print its peak RSS in KiB.

A process's peak RSS counts the pages it shared with its parent between fork and exec, so a
command started straight from a benchmark process that has grown (after the reconcile case, say)
reports the benchmark's size, not its own. This small process starts the command instead and
reports the kernel's figure for it (and every descendant it waited for), then exits with the
command's exit code.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    timeout, command = float(argv[0]), argv[1:]
    started = time.monotonic()
    with subprocess.Popen(command, stdout=subprocess.DEVNULL) as child:
        while True:  # reaped here with wait4, not by Popen, so that its rusage is ours to read
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - started > timeout:
                child.kill()
            time.sleep(0.05)
        child.returncode = os.waitstatus_to_exitcode(status)
    print(usage.ru_maxrss)
    return child.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
