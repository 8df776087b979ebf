"""Checking one document type: each chunk's expected side (built) against its actual side (read
through the chunk index), aggregates first and keys only where they differ.

Three things overlap: index reads in threads (`Prefetcher`), builds in worker processes
(`Builders`), and the comparison in the calling thread; body reads (probes, --deep) run in
threads too.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pyarrow as pa

from migrate.config import ServiceConfig
from migrate.document import BuildResult
from migrate.events import ChunkFinished, EventSink, ignore
from migrate.mapping import DocPlan, ServicePlan
from migrate.project import Project
from migrate.reconcile.actual import (
    ActualChunk,
    Prefetcher,
    leftovers,
    read_chunk,
    stored_checksum,
    stored_value,
)
from migrate.reconcile.collisions import KeyTracker
from migrate.reconcile.compare import diff_keys, same_aggregate
from migrate.reconcile.expected import (
    Builders,
    BuildTask,
    ChunkRef,
    ExpectedChunk,
    build_chunk,
    build_in_order,
    expect_chunk,
    source_tables,
    staged_tables,
)
from migrate.reconcile.model import (
    ChunkOutcome,
    Difference,
    DocTypeResult,
    Kind,
    Options,
    Rejected,
)
from migrate.reconcile.sample import in_sample
from migrate.register import Known
from migrate.source import Snapshot
from migrate.source.shared import ChunkRead, SharedView

_PROBE_THREADS = 16
_READ_THREADS = 4


class DocCheck:
    """One document type's chunks: build expected, read actual, compare."""

    def __init__(
        self,
        project: Project,
        service: ServiceConfig,
        plan: ServicePlan,
        doc: DocPlan,
        *,
        snapshot: Snapshot | None,
        options: Options,
        view: SharedView | None = None,
        tracker: KeyTracker | None = None,
        known: Callable[[str], Known | None] | None = None,
        on_event: EventSink = ignore,
    ) -> None:
        self.project = project
        self.on_event = on_event
        self.service = service
        self.plan = plan
        self.doc = doc
        self.snapshot = snapshot
        self.options = options
        self.target = project.target
        self.schema = project.schema()
        self.use_aggregates = options.sample is None and not options.deep
        self.actual: dict[str, ActualChunk] = {}
        self._reader: Prefetcher | None = None
        self.view = view  # the snapshot shared with the build workers, which then read chunks
        self._workers_read = False
        self.tracker = tracker  # notes every chunk's keys, to find collisions across chunks
        self.known = known  # a chunk's keys that others render, as the ledger's register says
        self.refs: list[ChunkRef] = []
        self.outcomes: list[ChunkOutcome] = []

    def run(self, refs: list[ChunkRef], builders: Builders) -> DocTypeResult:
        self.refs = refs
        indexes = [r.index for r in refs]
        last = max(indexes, default=-1)
        # Only this document type's chunks of a restricted check (repair's): another type's
        # chunk ids say nothing of this one's leftovers.
        chunk_ids = self.options.chunk_ids
        mine = None
        if chunk_ids is not None:
            mine = {c for c in chunk_ids if c.rsplit(":", 1)[0] == self.doc.name}
        beyond: dict[int, list[str]] = {}
        if mine is None or any(int(c.rsplit(":", 1)[1]) > last for c in mine):
            beyond = self._beyond(last)
            if mine is not None:
                beyond = {i: k for i, k in beyond.items() if f"{self.doc.name}:{i:05d}" in mine}
        unplanned = {key for keys in beyond.values() for key in keys}
        outcomes: list[ChunkOutcome] = []
        # Each worker reads its own chunks when the snapshot is shared and there is a pool
        # (a lone chunk is built inline, from rows read here).
        self._workers_read = self.view is not None and builders.workers > 1 and len(refs) > 1
        in_flight = max(2, 2 * builders.workers)
        reader = Prefetcher(
            self.target,
            self.doc.bucket_type,
            self.doc.bucket,
            indexes,
            sample=self.options.sample,
            threads=_READ_THREADS,
            ahead=in_flight + _READ_THREADS,
        )
        with reader, ThreadPoolExecutor(_PROBE_THREADS) as probes:
            self._reader = reader
            fallback = self._expect_here if self._workers_read else None
            for position, (ref, expected) in enumerate(
                build_in_order(
                    refs, self._task, builders, self.plan, in_flight=in_flight, fallback=fallback
                )
            ):
                outcome, keys = self._compare(ref, expected, probes)
                if unplanned:
                    unplanned.difference_update(keys)
                outcomes.append(outcome)
                if self.tracker is not None and expected is not None:
                    self.tracker.note(
                        self.doc.name,
                        (self.doc.bucket_type, self.doc.bucket),
                        position,
                        live=expected.checksums.keys(),
                        withdrawn=expected.collided,
                    )
                self.on_event(
                    ChunkFinished(self.service.name, ref.chunk_id, outcome.expected, 0, 0, 0)
                )
        for index, keys in sorted(beyond.items()):
            chunk_id = f"{self.doc.name}:{index:05d}"
            extra = tuple(
                Difference(k, Kind.EXTRA, chunk_id) for k in sorted(keys) if k in unplanned
            )
            if extra:
                outcomes.append(ChunkOutcome(chunk_id, index, 0, len(extra), False, extra))
        self.outcomes = outcomes
        return self.result()

    def result(self) -> DocTypeResult:
        return DocTypeResult(
            self.doc.name, self.doc.bucket_type, self.doc.bucket, tuple(self.outcomes)
        )

    def build_here(self, position: int, known: Known | None = None) -> BuildResult:
        """The chunk at `position` built here from the source (a collision's second look)."""
        task = self._task(self.refs[position], here=True, collided=known)
        assert task is not None  # against the source, every chunk is built
        return build_chunk(task, self.plan)

    def recheck(self, position: int, known: Known) -> None:
        """Check the chunk at `position` again, its build knowing `known` (its keys that rows of
        other chunks render), and take that outcome instead."""
        ref = self.refs[position]
        task = self._task(ref, here=True, collided=known)
        assert task is not None
        expected = expect_chunk(task, self.plan)
        actual = read_chunk(
            self.target, self.doc.bucket_type, self.doc.bucket, ref.index, self.options.sample
        )
        with ThreadPoolExecutor(_PROBE_THREADS) as probes:
            outcome, _ = self._compare(ref, expected, probes, actual=actual)
        self.outcomes = [outcome if o.chunk_id == ref.chunk_id else o for o in self.outcomes]

    def _expect_here(self, ref: ChunkRef) -> ExpectedChunk:
        """The chunk's expected side read on the snapshot's connection and built here."""
        task = self._task(ref, here=True)
        assert task is not None  # against the source, every chunk is built
        return expect_chunk(task, self.plan)

    def _task(
        self, ref: ChunkRef, *, here: bool = False, collided: Known | None = None
    ) -> BuildTask | None:
        """The build task of the chunk's expected side, or None when the ledger's aggregate
        already proves it (verification against staging, which reads the actual side first).
        Against the source, a worker reads the chunk unless `here` (or it cannot)."""
        read = None
        tables: dict[str, pa.Table] | None
        if self.snapshot is not None:  # the actual side is read meanwhile, taken to compare
            if self._workers_read and self.view is not None and not here:
                tables, read = None, ChunkRead(self.view, ref.index, ref.lo, ref.hi)
            else:
                tables = source_tables(self.snapshot, self.plan, ref)
        else:
            actual = self.actual[ref.chunk_id] = self._take(ref)
            record = ref.record
            if (
                self.use_aggregates
                and record is not None
                and not record.rejects  # rejected rows are named, so built
                and same_aggregate(
                    record.documents or 0,
                    record.doc_checksum,
                    len(actual.checksums),
                    actual.digest,
                )
            ):
                return None
            tables = staged_tables(self.service.name, ref)
            if collided is None and self.known is not None:
                collided = self.known(ref.chunk_id)
        return BuildTask(
            str(self.service.mapping),
            self.project.config.target.bucket_type,
            self.plan.fingerprint,
            self.schema,
            self.doc.name,
            tables,
            self.project.config.run.max_document_bytes,
            sample=self.options.sample,
            with_values=self.options.show_values,
            read=read,
            collided=collided,
        )

    def _compare(
        self,
        ref: ChunkRef,
        expected: ExpectedChunk | None,
        probes: ThreadPoolExecutor,
        *,
        actual: ActualChunk | None = None,
    ) -> tuple[ChunkOutcome, Iterable[str]]:
        """The chunk's outcome, and the keys it expects (so leftovers do not count them)."""
        if actual is None:
            actual = self.actual.pop(ref.chunk_id, None)
        if actual is None:
            actual = self._take(ref)
        found = actual.checksums
        if expected is None:  # proven equal by the ledger's aggregate
            outcome = ChunkOutcome(
                ref.chunk_id, ref.index, len(found), len(found), True, (), ref.lo, ref.hi
            )
            return outcome, found.keys()
        want = expected.checksums
        rejected = tuple(
            Rejected(ref.chunk_id, r.key, r.source_key, r.field, r.reason) for r in expected.rejects
        )
        bodies = self._probe(probes, sorted(found)) if self.options.deep else None
        if self.use_aggregates and same_aggregate(
            len(want), expected.digest, len(found), actual.digest
        ):
            outcome = ChunkOutcome(
                ref.chunk_id, ref.index, len(want), len(found), True, (), ref.lo, ref.hi, rejected
            )
            return outcome, want.keys()
        differences = diff_keys(
            ref.chunk_id, want, found, lambda ks: self._probe(probes, ks), bodies=bodies
        )
        if self.options.show_values:
            differences = [self._with_values(d, expected) for d in differences]
        outcome = ChunkOutcome(
            ref.chunk_id,
            ref.index,
            len(want),
            len(found),
            False,
            tuple(differences),
            ref.lo,
            ref.hi,
            rejected,
        )
        return outcome, want.keys()

    def _take(self, ref: ChunkRef) -> ActualChunk:
        assert self._reader is not None
        return self._reader.take(ref.index)

    def _probe(self, probes: ThreadPoolExecutor, keys: Collection[str]) -> dict[str, str | None]:
        """The checksums of the bodies the target holds for `keys`, read in parallel."""
        bt, bucket = self.doc.bucket_type, self.doc.bucket
        found = probes.map(lambda k: stored_checksum(self.target, bt, bucket, k), keys)
        return dict(zip(keys, found, strict=True))

    def _with_values(self, difference: Difference, expected: ExpectedChunk) -> Difference:
        if difference.kind is not Kind.CHANGED or expected.values is None:
            return difference
        value = expected.values[difference.key]
        stored = stored_value(self.target, self.doc.bucket_type, self.doc.bucket, difference.key)
        return replace(difference, expected_value=value.decode("utf-8"), actual_value=stored)

    def _beyond(self, last: int) -> dict[int, list[str]]:
        """Keys indexed under chunks beyond the plan (an older, longer plan), by chunk: extra,
        unless a planned chunk expects the key (that chunk's check reports it). Read before the
        chunks, so only these keys, not every expected one, are remembered meanwhile."""
        found: dict[int, list[str]] = {}
        for index, key, _ in leftovers(self.target, self.doc.bucket_type, self.doc.bucket, last):
            if in_sample(key, self.options.sample):
                found.setdefault(index, []).append(key)
        return found
