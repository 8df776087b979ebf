"""The transform phase, run in worker processes: stage a chunk's rows when they were just
extracted, then build its documents. Pure apart from the staged files: rows in, documents out.
`finish_build` gives a build the form the loading thread takes (a delta's rebuilds too).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from migrate.document import BuildResult, Claim, Document, Reject
from migrate.mapping import cached_plan
from migrate.mapping.canonical import aggregate
from migrate.mapping.collisions import claims
from migrate.processes import stopped_on_interrupt, worker_pool
from migrate.schema import SchemaInfo
from migrate.source import StagedChunk, read_staged, write_staged
from migrate.source.shared import ChunkRead, read_chunk
from migrate.target.chunks import with_chunk_index


@dataclass(frozen=True, slots=True)
class Extracted:
    """A chunk's rows as just read from the source, to be staged into `directory`."""

    directory: str
    tables: dict[str, pa.Table]


@dataclass(frozen=True, slots=True)
class ToRead:
    """A chunk the worker reads itself under the run's shared snapshot, to stage into
    `directory`."""

    directory: str
    read: ChunkRead


@dataclass(frozen=True, slots=True)
class TransformTask:
    mapping_path: str
    default_bucket_type: str
    fingerprint: str
    schema: SchemaInfo
    doc_type: str
    chunk_index: int
    max_bytes: int
    source: StagedChunk | Extracted | ToRead  # rows staged already, or rows to stage first
    # The target's per-document step (`Target.preparer`), done here rather than in the loader.
    prepare: Callable[[Sequence[Document]], Sequence[Document]] | None = None
    # Keys of this chunk that rows of other chunks render too (from the ledger's register), with
    # those rows described: their documents are withdrawn and rejected.
    collided: dict[str, list[str]] | None = None


@dataclass(frozen=True, slots=True)
class TransformOutput:
    # Each with its chunk index entry; laid out by the target's preparer where it has one.
    documents: Sequence[Document]
    rejects: list[Reject]
    checksum: str
    staged: StagedChunk
    # Every key the chunk rendered for a row, for the ledger's register (withdrawn ones too),
    # and the keys withdrawn because other rows render them.
    claims: list[Claim] = field(default_factory=list)
    collided: frozenset[str] = frozenset()

    def __reduce__(self) -> tuple[Any, ...]:
        """Documents leave the worker as plain tuples: pickle saves those a third faster than
        it saves the Structs through their own reduce, and they are made again as cheaply.
        Prepared documents go as their preparer laid them out. Claims go as tuples too."""
        payload, made = _as_rows(self.documents, self.claims)
        return (
            _transform_output,
            (payload, self.rejects, self.checksum, self.staged, made, self.collided),
        )


def _transform_output(  # noqa: PLR0917 (pickle passes the fields by position)
    documents: Sequence[Any],
    rejects: list[Reject],
    checksum: str,
    staged: StagedChunk,
    claims: list[tuple[str, str, str]],
    collided: frozenset[str],
) -> TransformOutput:
    objects, claimed = _from_rows(documents, claims)
    return TransformOutput(objects, rejects, checksum, staged, claimed, collided)


_ClaimRow = tuple[str, str, str]


def _as_rows(
    documents: Sequence[Document], claims: Sequence[Claim]
) -> tuple[Sequence[Any], list[_ClaimRow]]:
    """Documents (a list of them; prepared ones stay as their preparer laid them out) and
    claims as plain tuples, for pickle."""
    payload: Sequence[Any] = documents
    if isinstance(payload, list):
        payload = [
            (d.bucket_type, d.bucket, d.key, d.value, d.indexes, d.checksum) for d in payload
        ]
    return payload, [(c.key, c.source_key, c.checksum) for c in claims]


def _from_rows(
    payload: Sequence[Any], claims: list[_ClaimRow]
) -> tuple[Sequence[Document], list[Claim]]:
    """The inverse of `_as_rows`."""
    documents = [Document(*row) for row in payload] if isinstance(payload, list) else payload
    return documents, [Claim(*claim) for claim in claims]


def transform_chunk(task: TransformTask) -> TransformOutput:
    """Stage a chunk's rows when they were just extracted (or read its staged rows back), then
    build its documents. Only the staged files are written: the caller records them.

    Rows just extracted are built as they are (the staged Parquet files read back the same Arrow
    tables, schema included), which spares reading back what was just written.
    """
    plan = cached_plan(
        task.mapping_path,
        default_bucket_type=task.default_bucket_type,
        fingerprint=task.fingerprint,
        schema=task.schema,
    )
    doc_plan = plan.doc_type(task.doc_type)
    source = task.source
    if isinstance(source, StagedChunk):
        staged = source
        tables = read_staged(Path(staged.path), staged)
    else:
        if isinstance(source, ToRead):  # the worker reads the chunk under the shared snapshot
            tables = read_chunk(source.read, doc_plan.extract)
        else:
            tables = source.tables
        staged = write_staged(Path(source.directory), tables)
    result = doc_plan.build(tables, max_bytes=task.max_bytes, collided=task.collided)
    checksum = aggregate(doc.checksum for doc in result.documents)
    done = finish_build(result, task.chunk_index, task.prepare)
    return TransformOutput(
        done.documents, done.rejects, checksum, staged, done.claims, done.collided
    )


@dataclass(frozen=True, slots=True)
class Built:
    """A build as the loading thread takes it: documents with their chunk index entry (laid out
    by the target's preparer where it has one), rejects, every key the build claimed for a row
    (for the ledger's register, withdrawn ones too), and the keys withdrawn for a collision."""

    documents: Sequence[Document]
    rejects: list[Reject]
    claims: list[Claim]
    collided: frozenset[str]

    def __reduce__(self) -> tuple[Any, ...]:
        """As `TransformOutput`'s: documents and claims leave the worker as plain tuples."""
        payload, made = _as_rows(self.documents, self.claims)
        return (_built, (payload, self.rejects, made, self.collided))


def _built(
    documents: Sequence[Any],
    rejects: list[Reject],
    made: list[_ClaimRow],
    collided: frozenset[str],
) -> Built:
    objects, claimed = _from_rows(documents, made)
    return Built(objects, rejects, claimed, collided)


def finish_build(
    result: BuildResult,
    chunk_index: int,
    prepare: Callable[[Sequence[Document]], Sequence[Document]] | None,
) -> Built:
    """A build's documents given their chunk index and the target's layout, with its claims."""
    documents: Sequence[Document] = [with_chunk_index(doc, chunk_index) for doc in result.documents]
    if prepare is not None:
        documents = prepare(documents)
    collided = frozenset(claim.key for claim in result.collided)
    return Built(documents, result.rejects, claims(result), collided)


@contextlib.contextmanager
def transformers(workers: int) -> Iterator[ProcessPoolExecutor | None]:
    """A process pool for transform, or None to transform inline (one worker)."""
    if workers <= 1:
        yield None
        return
    pool = worker_pool(workers)
    with stopped_on_interrupt(pool):
        yield pool
