"""The distributed executor: chunks as tasks on the workers of a Dask cluster
(`[run] executor = "dask://host:port"`, the scheduler's address; `pip install 'migrate[dask]'`).

Each chunk is one task, `migrate.executor.worker.load_chunk`, which builds, records and loads it
on the worker that runs it. Rows this host had to read itself (a source whose snapshot another
host cannot join) are staged here, in the shared [run] work_dir, and the task names the staged
chunk: the scheduler never carries rows, and a task run again after its worker died finds them
there. Dask's futures are bridged to `concurrent.futures` ones, which the pipeline waits on.

Failures, each a clear message and exit 3, never a traceback:
- the scheduler cannot be reached, or has no worker: at the start, before anything is recorded;
- a worker dies mid-chunk: Dask runs the task again on another worker, and the ledger's claim
  on the chunk makes that attempt wait for the first (should it still be at work) and go on
  from what it recorded; after `distributed.scheduler.allowed-failures` deaths (3 by default)
  Dask gives the chunk up, and so does the run;
- the scheduler is lost: every chunk in flight fails at once; tasks already running finish
  their chunk (recorded in the ledger), queued ones never start or stop at the lease check, and
  `migrate run` again resumes.
Dask's own log lines in this process are silenced while the executor is open (the scheduler's
and the workers' logs keep theirs); what went wrong is said once, by the command.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, InvalidStateError
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from migrate.errors import ConfigError, ExecutorError, MigrateError, mask_secrets
from migrate.executor import ChunkJob, Outcome
from migrate.source import write_staged
from migrate.source.shared import SharedView
from migrate.transform import Extracted

_T = TypeVar("_T")

CONNECT_SECONDS = 10.0  # to reach the scheduler
WORKERS_SECONDS = 60.0  # for the scheduler to have a worker
CLOSE_SECONDS = 5.0
_LOGGERS = ("distributed", "tornado", "bokeh")
NEEDS = (
    "every worker needs migrate installed (pip install 'migrate[dask]'), the mapping files at "
    "the paths migrate.toml gives, [run] work_dir on a folder shared at the same path, and the "
    "environment variables that hold the passwords"
)


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    """No log line of Dask's (or of Tornado, which it runs on) reaches this process's output
    while the block runs: Dask gives several of its loggers a handler of their own (with
    levels of their own), so every one of them is emptied, and restored afterwards."""
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    loggers += [
        logger
        for name, logger in logging.root.manager.loggerDict.items()
        if isinstance(logger, logging.Logger) and name.startswith(tuple(f"{n}." for n in _LOGGERS))
    ]
    saved = [(logger.handlers, logger.propagate) for logger in loggers]
    for logger in loggers:  # a handler that drops records (with none, Python's last resort
        logger.handlers = [logging.NullHandler()]  # would print warnings and errors)
        logger.propagate = False
    try:
        yield
    finally:
        for logger, (handlers, propagate) in zip(loggers, saved, strict=True):
            logger.handlers = handlers
            logger.propagate = propagate


class DaskExecutor:
    remote = True
    reads_ahead = False  # its workers load what they build: nothing is built before its run

    def __init__(self, client: Any, name: str) -> None:
        self.client = client
        self.name = name

    @classmethod
    @contextlib.contextmanager
    def open(cls, address: str, name: str) -> Iterator[DaskExecutor]:
        try:
            import distributed
        except ImportError as exc:
            raise ConfigError(
                f"[run] executor = {name!r} needs Dask distributed, which is not installed here",
                hint="pip install 'migrate[dask]' on this host and on every worker, or set "
                'executor = "local"',
            ) from exc
        with _quiet_logs():
            try:
                connect: Any = distributed.Client  # untyped
                client: Any = connect(address, timeout=CONNECT_SECONDS, set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise ExecutorError(
                    f"cannot reach the Dask scheduler at {name} (no answer within "
                    f"{CONNECT_SECONDS:g} s)",
                    hint="start it (`dask scheduler --port PORT`) and its workers (`dask worker "
                    "SCHEDULER --nthreads 1`), or check [run] executor in migrate.toml; nothing "
                    "was recorded",
                ) from exc
            try:
                executor = cls(client, name)
                executor._wait_for_workers()
                yield executor
            finally:
                # The scheduler may be gone (that may be why the block ended): closing the
                # client must not hide the command's own outcome.
                with contextlib.suppress(Exception):
                    client.close(timeout=CLOSE_SECONDS)

    def _wait_for_workers(self) -> None:
        try:
            self.client.wait_for_workers(1, timeout=WORKERS_SECONDS)
        except Exception as exc:
            raise ExecutorError(
                f"the Dask scheduler at {self.name} has no worker (waited {WORKERS_SECONDS:g} s)",
                hint=f"start workers: `dask worker tcp://{self.name.removeprefix('dask://')} "
                f"--nthreads 1` on each host; {NEEDS}",
            ) from exc

    @property
    def slots(self) -> int:
        try:
            threads = sum(self.client.nthreads().values())
        except Exception as exc:
            raise self._lost(exc) from exc
        return max(2, 2 * int(threads))

    def shares(self, view: SharedView) -> bool:
        return view.travels

    def chunk(self, job: ChunkJob) -> Future[Outcome]:
        from migrate.executor.worker import load_chunk

        source = job.task.source
        if isinstance(source, Extracted):  # read here: staged where every worker finds it
            staged = write_staged(Path(source.directory), source.tables)
            job = replace(job, task=replace(job.task, source=staged))
        try:
            remote = self.client.submit(
                load_chunk,
                job,
                pure=False,
                key=f"migrate-{job.context.service}-{job.chunk.chunk_id}-{uuid.uuid4().hex[:8]}",
            )
        except Exception as exc:
            raise self._lost(exc) from exc
        return self._bridge(remote, f"chunk {job.chunk.chunk_id} of {job.context.service}")

    def submit(self, fn: Callable[..., _T], /, *args: Any) -> Future[_T]:
        try:
            remote = self.client.submit(fn, *args, pure=False)
        except Exception as exc:
            raise self._lost(exc) from exc
        return self._bridge(remote, getattr(fn, "__name__", "a task"))

    # -- Dask's futures as concurrent.futures ones -------------------------------------------------

    def _bridge(self, remote: Any, what: str) -> Future[Any]:
        local: _Linked[Any] = _Linked(remote)

        def settle(done: Any) -> None:
            if local.cancelled():
                return
            try:
                result = done.result()
            except BaseException as exc:
                error: BaseException = self._translate(exc, what)
                with contextlib.suppress(InvalidStateError):
                    local.set_exception(error)
            else:
                with contextlib.suppress(InvalidStateError):
                    local.set_result(result)

        remote.add_done_callback(settle)
        return local

    def _translate(self, exc: BaseException, what: str) -> BaseException:
        from distributed import KilledWorker
        from distributed.client import FutureCancelledError

        if isinstance(exc, MigrateError):
            return exc
        if isinstance(exc, KilledWorker):
            error = ExecutorError(
                f"{what}: Dask gave it up after its worker died while running it, time after "
                "time (`distributed.scheduler.allowed-failures`)",
                hint="see the workers' logs (memory limits, the OOM killer); what the ledger "
                "records as loaded stays loaded, and `migrate run` again resumes",
            )
        elif isinstance(exc, FutureCancelledError) and "connection-lost" in exc.reason:
            error = self._lost(exc)
        elif isinstance(exc, FutureCancelledError):
            error = ExecutorError(
                f"{what}: the Dask scheduler at {self.name} cancelled it ({exc.reason})",
                hint="`migrate run` again resumes",
            )
        else:
            line = (str(exc).strip().splitlines() or [""])[0][:300]
            error = ExecutorError(
                f"{what} failed on a Dask worker: {type(exc).__name__}: {mask_secrets(line)}",
                hint=NEEDS,
            )
        error.__cause__ = exc
        return error

    def _lost(self, exc: BaseException) -> ExecutorError:
        return ExecutorError(
            f"lost the Dask scheduler at {self.name} ({type(exc).__name__})",
            hint="what the ledger records as loaded stays loaded; once the scheduler serves "
            "again (with its workers), `migrate run` again resumes",
        )


class _Linked(Future[_T]):
    """A concurrent.futures Future settled by a Dask future, which cancelling it cancels too."""

    def __init__(self, remote: Any) -> None:
        super().__init__()
        self._remote = remote

    def cancel(self) -> bool:
        # Best effort: with the scheduler gone the task is gone too; this side is cancelled
        # all the same.
        with contextlib.suppress(Exception):
            self._remote.cancel()
        return super().cancel()
