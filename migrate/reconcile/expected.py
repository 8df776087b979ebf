"""The expected side: each chunk's documents rebuilt with the same compiled mapping and canonical
bytes as the load, from the source as it is now or from the chunk's staged files.

Building is the CPU-heavy part, so with more than one worker it runs in a process pool (Arrow
tables pickle), or, with `[run] executor = "dask://..."`, as tasks on the Dask cluster's workers
(the executor a run uses, `migrate.executor`); each worker compiles the mapping once per
fingerprint and sends back only what the comparison needs (keys, checksums and their aggregate),
not the documents. Against the source, where the snapshot can be shared (`migrate.source.shared`)
with the workers, each worker also reads its chunk's rows itself, under the same snapshot, so
extraction runs on every core (every host) too; otherwise this process reads each chunk and the
task carries its rows. The actual side (the target's chunk index) is read, and compared, here.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pyarrow as pa

from migrate.config import Config
from migrate.document import BuildResult, Reject
from migrate.errors import StagingError
from migrate.executor import Executor, is_remote, open_executor
from migrate.ledger import ChunkRecord
from migrate.mapping import ServicePlan, cached_plan
from migrate.mapping.canonical import aggregate
from migrate.processes import worker_pool
from migrate.reconcile.sample import in_sample
from migrate.schema import SchemaInfo
from migrate.source import ChunkRange, Snapshot, StagedChunk, read_staged
from migrate.source.shared import ChunkRead, SharedView, read_chunk, settle


@dataclass(frozen=True, slots=True)
class ChunkRef:
    """One chunk to verify: from the latest run's ledger plan, or planned now (never ran)."""

    chunk_id: str
    doc_type: str
    index: int
    lo: str
    hi: str
    record: ChunkRecord | None = None


@dataclass(frozen=True, slots=True)
class BuildTask:
    mapping_path: str
    default_bucket_type: str
    fingerprint: str
    schema: SchemaInfo
    doc_type: str
    tables: dict[str, pa.Table] | None  # None: the worker reads them (`read`)
    max_bytes: int
    sample: float | None = None  # only keys in this sample (see `sample`)
    with_values: bool = False  # keep the documents' values (--show-values)
    read: ChunkRead | None = None  # the chunk to read under the reconcile's shared snapshot
    # Keys of this chunk that rows elsewhere render too, those rows described (as in the load).
    collided: dict[str, list[str]] | None = None


@dataclass(frozen=True, slots=True)
class ExpectedChunk:
    """What a chunk should hold: {key: checksum}, their aggregate, and the values when asked;
    the rows it rejects (in the sample), and the keys it withdrew for a collision (so a
    collision with another chunk can be found)."""

    checksums: dict[str, str]
    digest: str
    values: dict[str, bytes] | None = None
    rejects: tuple[Reject, ...] = ()
    collided: tuple[str, ...] = ()


def build_chunk(task: BuildTask, plan: ServicePlan | None = None) -> BuildResult:
    """One chunk's documents and rejects, as the load builds them. Pure. A worker process
    compiles the task's mapping once; the calling process passes the plan it compiled."""
    if plan is None:
        plan = cached_plan(
            task.mapping_path,
            default_bucket_type=task.default_bucket_type,
            fingerprint=task.fingerprint,
            schema=task.schema,
        )
    doc = plan.doc_type(task.doc_type)
    tables = task.tables
    if tables is None:
        if task.read is None:
            raise ValueError("a build task needs its tables or a chunk to read")
        tables = read_chunk(task.read, doc.extract)
    return doc.build(tables, max_bytes=task.max_bytes, collided=task.collided)


def expect_chunk(task: BuildTask, plan: ServicePlan | None = None) -> ExpectedChunk:
    """One chunk's expected side, in the task's sample. Pure."""
    result = build_chunk(task, plan)
    documents = result.documents
    rejects = result.rejects
    collided = [claim.key for claim in result.collided]
    if task.sample is not None:
        sample = task.sample
        documents = [d for d in documents if in_sample(d.key, sample)]
        rejects = [r for r in rejects if r.key is None or in_sample(r.key, sample)]
        collided = [key for key in collided if in_sample(key, sample)]
    checksums = {d.key: d.checksum for d in documents}
    values = {d.key: d.value for d in documents} if task.with_values else None
    return ExpectedChunk(
        checksums, aggregate(checksums.values()), values, tuple(rejects), tuple(collided)
    )


class Builders:
    """Where expected sides are built: on a distributed executor's workers (`executor`), else
    inline with one worker, else in a process pool of this machine started on the first build
    (a verification the ledger's aggregates prove starts none)."""

    def __init__(self, workers: int, *, executor: Executor | None = None) -> None:
        self.executor = executor
        # A cluster's builds in flight: as many as it runs chunks (`Executor.slots`, two per
        # worker thread), so `workers` is half that.
        self.workers = max(1, workers) if executor is None else max(2, executor.slots // 2)
        self._pool: ProcessPoolExecutor | None = None

    def shares(self, view: SharedView) -> bool:
        """Whether the builders can read chunks under `view` themselves."""
        return self.executor is None or self.executor.shares(view)

    def start(
        self, task: BuildTask, plan: ServicePlan, *, inline: bool = False
    ) -> Future[ExpectedChunk] | ExpectedChunk:
        """Build `task` on a worker, or now with `plan` when `inline` (a lone chunk gains
        nothing from a worker) or with one local worker."""
        if inline or (self.executor is None and self.workers == 1):
            return expect_chunk(task, plan)
        if self.executor is not None:
            return self.executor.submit(expect_chunk, task)
        if self._pool is None:
            self._pool = worker_pool(self.workers)
        return self._pool.submit(expect_chunk, task)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> Builders:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        if kind is not None and not issubclass(kind, Exception) and self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)  # interrupted: see processes
            self._pool = None
        self.close()


@contextlib.contextmanager
def open_builders(config: Config, workers: int) -> Iterator[Builders]:
    """The builders of the executor `[run] executor` names: the Dask cluster's workers, or
    `workers` processes of this machine (started on the first build)."""
    if is_remote(config):
        with open_executor(config) as executor, Builders(1, executor=executor) as builders:
            yield builders
        return
    with Builders(workers) as builders:
        yield builders


def build_in_order(
    refs: Sequence[ChunkRef],
    make_task: Callable[[ChunkRef], BuildTask | None],
    builders: Builders,
    plan: ServicePlan,
    *,
    in_flight: int,
    fallback: Callable[[ChunkRef], ExpectedChunk] | None = None,
) -> Iterator[tuple[ChunkRef, ExpectedChunk | None]]:
    """Each chunk with its expected side, in order, with at most `in_flight` builds queued.
    `make_task` returns None for a chunk that needs no build (it yields None). A chunk a worker
    could not read (`ViewBusy`) is built by `fallback` here."""
    inline = len(refs) < 2
    queue: deque[tuple[ChunkRef, Future[ExpectedChunk] | ExpectedChunk | None]] = deque()
    pending = iter(refs)
    while True:
        while len(queue) < in_flight:
            ref = next(pending, None)
            if ref is None:
                break
            task = make_task(ref)
            queue.append((ref, None if task is None else builders.start(task, plan, inline=inline)))
        if not queue:
            return
        ref, outcome = queue.popleft()
        if isinstance(outcome, Future):
            here = None if fallback is None else partial(fallback, ref)
            outcome = settle(outcome, here)
        yield ref, outcome


def source_tables(snapshot: Snapshot, plan: ServicePlan, ref: ChunkRef) -> dict[str, pa.Table]:
    """The chunk's rows as the source holds them now (under the reconcile's one snapshot)."""
    doc = plan.doc_type(ref.doc_type)
    return snapshot.extract(doc.extract, ChunkRange.from_bounds_json(ref.index, ref.lo, ref.hi))


def staged_tables(service: str, ref: ChunkRef) -> dict[str, pa.Table]:
    """The chunk's rows as the run staged them (what it loaded)."""
    record = ref.record
    if record is None or not record.staged_path or record.staged_checksum is None:
        raise StagingError(
            f"{service}: chunk {ref.chunk_id} has no staged files to verify against",
            hint=f"verify against the source instead: migrate reconcile {service}",
        )
    staged = StagedChunk(record.staged_path, dict(record.rows), record.staged_checksum)
    return read_staged(Path(record.staged_path), staged)
