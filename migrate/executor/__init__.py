"""Where a run's chunks are built and loaded: worker processes of this machine, or the workers
of a Dask distributed cluster (`[run] executor`).

The pipeline hands each chunk to its executor as a `ChunkJob` and gets back a future of what came
of it, and handles both outcomes the same way whichever executor it has:

- the chunk built (`TransformOutput`): the local executor's workers are this process's children,
  so the documents come back here and this process's one loader thread records and writes them,
  in chunk order (one writer keeps a SQLite ledger and the embedded target simple and fast);
- the chunk loaded (`ChunkLoaded`): a distributed executor's workers may be on other hosts; each
  opens its own source, ledger and target connections from the run's settings (secrets from its
  own environment, never from the task) and loads what it builds, so no single loader carries
  the cluster's writes, and chunks finish in any order (`migrate.loading`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from migrate.config import Config
from migrate.ledger import ChunkRecord
from migrate.loading import ChunkLoaded, LoadContext
from migrate.source.shared import SharedView
from migrate.transform import TransformOutput, TransformTask

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class ChunkJob:
    """One chunk to build (and, where the executor's workers load, to record and load). Holds
    no secret: what travels to a worker is this, pickled."""

    task: TransformTask  # what to build; rows this host read travel in it (`Extracted`)
    chunk: ChunkRecord  # the chunk's record as the run found it
    snapshot: str | None  # the marker of the snapshot its rows are read under (None: staged)
    context: LoadContext
    config: Config  # the run's settings: where the ledger and the target are
    holder: str  # the run's lease: a worker records nothing once another command holds it


Outcome = TransformOutput | ChunkLoaded


class Executor(Protocol):
    """Runs chunks, and pure functions (a reconciliation's builds), somewhere."""

    @property
    def name(self) -> str:
        """How messages name it: "local", or the scheduler's `dask://host:port`."""
        ...

    @property
    def slots(self) -> int:
        """How many chunks to keep in flight: enough to keep every worker busy."""
        ...

    @property
    def reads_ahead(self) -> bool:
        """Whether chunks can be built before their run starts (built, not loaded, by the
        workers): the next service then reads ahead while the one before drains its loads."""
        ...

    @property
    def remote(self) -> bool:
        """Whether the workers are not this process's own: they may be on other hosts, open
        their own connections, and load the chunks they build."""
        ...

    def shares(self, view: SharedView) -> bool:
        """Whether the workers can read chunks under `view` themselves (else this process reads
        them and sends their rows)."""
        ...

    def chunk(self, job: ChunkJob) -> Future[Outcome]:
        """Build the job's chunk, and load it where the workers load."""
        ...

    def submit(self, fn: Callable[..., _T], /, *args: Any) -> Future[_T]:
        """Run `fn(*args)` (picklable, pure) on a worker."""
        ...


def is_remote(config: Config) -> bool:
    return config.run.scheduler is not None


@contextlib.contextmanager
def open_executor(config: Config, *, workers: int | None = None) -> Iterator[Executor]:
    """The executor `[run] executor` names, for the length of the block. `workers` (the
    command's --workers, else [run] workers, else one per core) sizes the local one; a Dask
    cluster's size is its own."""
    scheduler = config.run.scheduler
    if scheduler is not None:
        from migrate.executor.cluster import DaskExecutor

        with DaskExecutor.open(scheduler, config.run.executor) as remote:
            yield remote
        return
    from migrate.executor.local import LocalExecutor

    count = workers or config.run.workers or os.cpu_count() or 1
    with LocalExecutor.open(count) as local:
        yield local


__all__ = ["ChunkJob", "ChunkLoaded", "Executor", "Outcome", "is_remote", "open_executor"]
