"""Worker processes: every pool of the toolkit starts its workers from one forkserver that has
already imported what they run, so a pool starts in milliseconds instead of each worker importing
Arrow, SQLAlchemy and the mapping compiler again (about half a second a pool).

The forkserver itself only imports: it runs no Arrow computation and opens no connection before
it forks, so its children inherit no threads or sockets.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import multiprocessing
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.context import BaseContext

# What the workers run: the transform (stage and build) and the reconcile's expected side, which
# between them import the mapping compiler, the source readers and the column-wise builder.
_PRELOAD = ["migrate.transform", "migrate.reconcile.expected"]
# How multiprocessing starts a forkserver: `python -c "<this>; main(...)"`.
_FORKSERVER_CODE = "from multiprocessing.forkserver import main"


# Cyclic garbage collection, made rare. A run allocates millions of containers (rows, documents,
# index tuples) that reference counting frees; with Python's default threshold (700) a collection
# runs every few hundred of them and walks every young object still alive, which cost a demo run
# about 10% of the main process's time and 6-8% of each worker's. A collection once per 100,000
# net allocations still frees reference cycles, at a bounded cost in memory.
QUIET_GC_THRESHOLD = (100_000, 20, 20)


def quiet_gc() -> None:
    """Freeze the objects that exist now (modules, plans: they live as long as the process, so no
    collection needs to walk them again) and make collections rare. For a process that runs the
    pipeline: the CLI once its imports are done, and each worker as it starts."""
    gc.freeze()
    gc.set_threshold(*QUIET_GC_THRESHOLD)


def started_as_forkserver(argv: list[str]) -> bool:
    """Whether a process of this command line (`sys.orig_argv`) is a multiprocessing forkserver."""
    return any(arg.startswith(_FORKSERVER_CODE) for arg in argv[1:])


def _end_without_teardown() -> None:
    """The forkserver's exit: end the process at once. It holds the imports of every worker
    (Arrow, SQLAlchemy, the mapping compiler), and freeing them one by one took about 0.1 s
    after each command, with the command's output pipes still open, so a caller reading them
    waited that long. Nothing is lost: the server only forks; it has no output or state of its
    own, and the exit handlers this skips (multiprocessing's, logging's) have nothing to do."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


# The forkserver exits (SystemExit) once the process it serves has gone; it imports this module
# with the workers' modules before it forks any. The workers never run exit handlers: the
# forkserver ends each with os._exit.
if started_as_forkserver(sys.orig_argv):
    atexit.register(_end_without_teardown)


def worker_context() -> BaseContext:
    """The multiprocessing context for the toolkit's process pools (forkserver, preloaded)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_PRELOAD)  # takes effect when the server starts, once
    return context


def start_worker(command: int) -> None:
    """Each worker's start: `quiet_gc`, and an end with the command it works for (process id
    `command`). A worker is the forkserver's child, not the command's, and multiprocessing keeps
    the forkserver alive while workers are: so a command killed, or ended by a signal that only it
    received, would leave its workers finishing their chunks with the source held open for
    minutes. A thread here waits for the command to end and ends the worker at once. Ctrl-C and
    SIGTERM sent to the whole process group are left to the command, which stops its workers
    itself."""
    quiet_gc()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Thread(target=_end_with, args=(command,), name="migrate-watch", daemon=True).start()


def _end_with(command: int) -> None:
    """End this process once process `command` has ended (a pidfd where the kernel has them: no
    mistaking a new process that took its number; else a poll once a second)."""
    try:
        handle = os.pidfd_open(command)
    except (AttributeError, OSError):
        handle = None
    if handle is not None:
        select.select([handle], [], [])
        os._exit(1)
    while True:
        try:
            os.kill(command, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:
            pass
        time.sleep(1)


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of `workers` processes from the preloaded forkserver, each started by
    `start_worker`."""
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=worker_context(),
        initializer=start_worker,
        initargs=(os.getpid(),),
    )


@contextlib.contextmanager
def stopped_on_interrupt(pool: ProcessPoolExecutor) -> Iterator[ProcessPoolExecutor]:
    """Shut `pool` down when the block ends: waiting for the chunks under way after a failure
    (their results are needed to end cleanly), not after an interrupt (Ctrl-C, SIGTERM), when
    the command ends at once and its workers end with it (see `start_worker`). Workers are never
    killed from here: a worker killed while it sends its result leaves the pool's reader waiting
    for the rest of the message for ever."""
    interrupted = False
    try:
        yield pool
    except Exception:
        raise
    except BaseException:
        interrupted = True
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        if not interrupted:
            pool.shutdown(wait=True, cancel_futures=True)


def warm_up() -> None:
    """Start the forkserver now (it imports in the background), so the first pool's workers
    start without waiting for the imports."""
    worker_context()
    from multiprocessing import forkserver

    forkserver.ensure_running()
