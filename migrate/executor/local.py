"""The local executor: this machine's worker processes (`migrate.processes`), or this process
alone with one worker. Chunks come back built; the pipeline's loader thread loads them."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, TypeVar

from migrate.executor import ChunkJob, Outcome
from migrate.processes import warm_up
from migrate.source.shared import SharedView
from migrate.transform import transform_chunk, transformers

_T = TypeVar("_T")


class LocalExecutor:
    name = "local"
    remote = False

    def __init__(self, pool: ProcessPoolExecutor | None, workers: int) -> None:
        self.pool = pool  # None: build in this process
        self.workers = workers

    @classmethod
    @contextlib.contextmanager
    def open(cls, workers: int) -> Iterator[LocalExecutor]:
        if workers > 1:
            warm_up()  # the workers' imports overlap reflection and planning
        with transformers(workers) as pool:
            yield cls(pool, workers)

    @property
    def slots(self) -> int:
        return max(2, self.workers * 2)

    @property
    def reads_ahead(self) -> bool:
        return self.pool is not None

    def shares(self, view: SharedView) -> bool:
        return self.pool is not None  # with no pool, this process reads every chunk anyway

    def chunk(self, job: ChunkJob) -> Future[Outcome]:
        """The chunk built: only its transform task goes to the worker."""
        return self.submit(transform_chunk, job.task)

    def submit(self, fn: Callable[..., _T], /, *args: Any) -> Future[_T]:
        """In the pool, or at once here (its error raised here) with no pool."""
        if self.pool is not None:
            return self.pool.submit(fn, *args)
        done: Future[_T] = Future()
        done.set_result(fn(*args))
        return done
