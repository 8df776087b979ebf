"""The expected side: each chunk's documents rebuilt with the same compiled mapping and canonical
bytes as the load, from the source as it is now or from the chunk's staged files.

Building is the CPU-heavy part, so with more than one worker it runs in a process pool (Arrow
tables pickle); each worker compiles the mapping once per fingerprint.
"""

from __future__ import annotations

import contextlib
import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from migrate.document import Document
from migrate.errors import StagingError
from migrate.ledger import ChunkRecord
from migrate.mapping import ServicePlan, cached_plan
from migrate.schema import SchemaInfo
from migrate.source import ChunkRange, Snapshot, StagedChunk, read_staged


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
    tables: dict[str, pa.Table]
    max_bytes: int


def build_chunk(task: BuildTask) -> list[Document]:
    """One chunk's documents (rejected rows make none, as in the load). Pure."""
    plan = cached_plan(
        task.mapping_path,
        default_bucket_type=task.default_bucket_type,
        fingerprint=task.fingerprint,
        schema=task.schema,
    )
    return plan.doc_type(task.doc_type).build(task.tables, max_bytes=task.max_bytes).documents


@contextlib.contextmanager
def builders(workers: int) -> Iterator[ProcessPoolExecutor | None]:
    """A process pool for building, or None to build inline (one worker)."""
    if workers <= 1:
        yield None
        return
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("forkserver")
    )
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def build_in_order(
    refs: Iterable[ChunkRef],
    make_task: Callable[[ChunkRef], BuildTask | None],
    pool: ProcessPoolExecutor | None,
    *,
    in_flight: int,
) -> Iterator[tuple[ChunkRef, list[Document] | None]]:
    """Each chunk with its documents, in order, with at most `in_flight` builds queued.
    `make_task` returns None for a chunk that needs no build (it yields None documents)."""
    queue: deque[tuple[ChunkRef, Future[list[Document]] | list[Document] | None]] = deque()
    pending = iter(refs)
    while True:
        while len(queue) < in_flight:
            ref = next(pending, None)
            if ref is None:
                break
            task = make_task(ref)
            if task is None:
                queue.append((ref, None))
            elif pool is None:
                queue.append((ref, build_chunk(task)))
            else:
                queue.append((ref, pool.submit(build_chunk, task)))
        if not queue:
            return
        ref, outcome = queue.popleft()
        yield ref, outcome.result() if isinstance(outcome, Future) else outcome


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
