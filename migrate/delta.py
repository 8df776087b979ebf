"""Delta: bring a loaded service's documents up to date with the source's logged changes.

A change to any row a mapping reads marks the roots whose documents it touches (set-based,
through the mapping's join chain: `Snapshot.dirty_roots`); those documents are rebuilt whole
from the source under one snapshot, with the same compiled plan as the bulk run, and written; a
root gone from the source (or now left out by the mapping's `where`) loses its document; a root
whose key changed loses the document under its old key. The ledger's register of the run's
documents is kept exact root by root (collisions included), and each touched chunk's record is
recounted from it, so later verifications hold.

Resumable and idempotent like a bulk run: the roots to rebuild are recorded, in batches of one
chunk, before any is applied; each batch is applied inside one ledger transaction that commits
only after the target acknowledged its writes and deletes; the change-log position advances
only when every batch is done. Killed at any moment, `migrate delta` finishes the batches left,
and rebuilding a document twice writes the same bytes.

Batches are applied one after another, in order (a collision or a key released by one changes
what a later one must do), but reading and building the next ones overlaps applying this one:
worker processes read them under the delta's snapshot, shared with them as a bulk run shares
its own, and build them (`rebuild_roots`), since a batch's registering and
writing take about as much CPU as its reading and building and one process has one core's
worth; where the source cannot share the snapshot, or with one worker, a thread of this process
reads and builds on the snapshot itself. A batch built by a worker and found to collide with
another chunk's row is read again here to be built told of it. Both ways give the same
documents, register and chunk records (tests/test_delta.py holds them side by side).

A delta runs on the host that runs the command, with this host's `[run] workers`, whatever
`[run] executor` says (a Dask cluster's workers build and load a run's chunks, and a
reconciliation's): its batches are one ordered stream, each registered, written and recorded in
one ledger transaction before the next, read under the one snapshot this host holds; and it
carries the changes made since the run, not the estate, so its reading and building fit one
host (see `make bench`'s delta figures). The command says so when a distributed executor is
configured.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import pyarrow as pa

from migrate.capture import require as require_capture
from migrate.config import ServiceConfig
from migrate.document import Document, Reject
from migrate.errors import ConfigError, VerificationError
from migrate.events import EventSink, Note, ignore
from migrate.files import private_writer
from migrate.ledger import ChunkRecord, RunStatus
from migrate.ledger.claims import Registered
from migrate.ledger.cutover import DeltaBatch, DeltaRecord
from migrate.mapping import DocPlan
from migrate.project import Project, actor
from migrate.reconcile.expected import BuildTask, build_chunk
from migrate.register import Known, describe, key_texts, recount, rejected_rows
from migrate.source import ChunkRange, Snapshot
from migrate.source.capture import CaptureEngine, Change, WatermarkCapture
from migrate.source.chunks import _decode_bound, _encode_bound
from migrate.source.shared import ChunkRead, SharedView, settle, share_view
from migrate.transform import Built, finish_build, transformers
from migrate.watermark import Digests, decode, encode, narrowed

Key = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class DeltaReport:
    service: str
    delta_id: str | None  # None: nothing to do
    resumed: bool
    changes: int
    roots: int
    written: int
    deleted: int
    rejects: int
    position: str
    seconds: float

    def as_json(self) -> dict[str, object]:
        return {
            "service": self.service,
            "delta_id": self.delta_id,
            "resumed": self.resumed,
            "changes": self.changes,
            "roots": self.roots,
            "written": self.written,
            "deleted": self.deleted,
            "rejects": self.rejects,
            "position": self.position,
            "seconds": round(self.seconds, 3),
        }


def delta_services(
    project: Project,
    names: Sequence[str] = (),
    *,
    command: str = "migrate delta",
    on_event: EventSink = ignore,
) -> list[DeltaReport]:
    """Apply the logged changes of the named services (all with capture, when none are named),
    holding their leases."""
    if names:
        services = project.config.select(list(names))
    else:
        services = [s for s in project.config.select([]) if s.capture is not None]
    with project.hold([s.name for s in services], command):
        if project.config.run.scheduler is not None:
            for service in services:
                on_event(Note(service.name, ON_THIS_HOST.format(project.config.run.executor)))
        return [DeltaRun(project, s, on_event=on_event).execute() for s in services]


ON_THIS_HOST = (
    "the delta runs on this host, not on {}: its batches are applied one after another, in "
    "order, under this host's snapshot (reconcile and run use the cluster)"
)


def delta_service(
    project: Project, service: ServiceConfig, *, on_event: EventSink = ignore
) -> DeltaReport:
    """One service's delta, for a caller that already holds its lease (the cutover's sync)."""
    return DeltaRun(project, service, on_event=on_event).execute()


def unapplied_changes(project: Project, service: ServiceConfig) -> int:
    """Watermark capture: how many documents differ now from the rows they were built from, by
    the same comparison a delta makes, writing nothing (0 for a service captured otherwise, whose
    log position is exact). What the cutover's switch gate asks, once."""
    run = project.ledger.latest_run(service.name)
    if service.capture != "watermark" or run is None:
        return 0
    capture = require_capture(project, service)
    assert isinstance(capture, WatermarkCapture)
    delta = DeltaRun(project, service)
    delta.run_id = run.run_id
    delta.chunks = {(c.doc_type, c.index): c for c in project.ledger.chunks(run.run_id)}
    with project.source.snapshot() as snapshot:
        found = delta._compare(snapshot, capture)
    return 0 if found is None else found[1]


class DeltaRun:
    def __init__(
        self, project: Project, service: ServiceConfig, *, on_event: EventSink = ignore
    ) -> None:
        self.project = project
        self.service = service
        self.emit = on_event
        self.ledger = project.ledger
        self.plan = project.plan(service)
        self.plans = {d.name: d for d in self.plan.doc_types}
        self.max_bytes = project.config.run.max_document_bytes
        self.workers = project.config.run.workers or os.cpu_count() or 1

    def execute(self) -> DeltaReport:
        started = time.monotonic()
        name = self.service.name
        if self.service.capture is None:
            raise ConfigError(
                f"{name} has no change capture configured, so no delta can catch it up",
                where=str(self.project.config.path),
                hint=f'set capture = "triggers" under [services.{name}], then `migrate capture '
                f"install {name}` and `migrate run {name} --fresh`",
            )
        run = self.ledger.latest_run(name)
        if run is None or run.status is not RunStatus.COMPLETE:
            raise VerificationError(
                f"{name} has no complete run to catch up",
                hint=f"`migrate run {name}` first: delta applies the changes made since it",
            )
        capture = require_capture(self.project, self.service)
        position = self.ledger.position(name)
        if position is None or position.run_id != run.run_id:
            raise VerificationError(
                f"{name}'s last run ({run.run_id}) did not record where its change log starts "
                "(capture was installed after it)",
                hint=f"`migrate run {name} --fresh`: a new bulk run under capture",
            )
        self.run_id = run.run_id
        self.chunks = {(c.doc_type, c.index): c for c in self.ledger.chunks(run.run_id)}
        stale = [
            c.chunk_id
            for c in self.chunks.values()
            if c.doc_type not in self.plans
            or c.transform_fingerprint
            != f"{self.plans[c.doc_type].fingerprint}/max={self.max_bytes}"
        ]
        if stale:
            raise VerificationError(
                f"{name}'s mapping (or max_document_bytes) changed since its run loaded "
                f"{len(stale)} chunk(s): a delta would mix two mappings in the target",
                hint=f"`migrate run {name}` first (it builds those chunks again from staging), "
                "then `migrate delta`",
            )
        pending = self.ledger.open_delta(name)
        with self.project.source.snapshot() as snapshot:
            if pending is None and isinstance(capture, WatermarkCapture):
                to = snapshot.capture_position(capture)
                found = self._compare(snapshot, capture)
                if found is None:
                    self.ledger.set_position(name, run_id=run.run_id, position=to)
                    return DeltaReport(
                        name, None, False, 0, 0, 0, 0, 0, to, time.monotonic() - started
                    )
                batches, roots, bodies = found
                delta = self.ledger.start_delta(
                    name,
                    run_id=run.run_id,
                    from_position=position.position,
                    to_position=to,
                    changes=roots,
                    batches=batches,
                    roots=roots,
                    actor=actor(),
                    digests=bodies,
                )
                resumed = False
            elif pending is None:
                to = snapshot.capture_position(capture)
                changes = (
                    [] if to == position.position else snapshot.changes(capture, position.position)
                )
                if not changes:
                    if to != position.position:
                        self.ledger.set_position(name, run_id=run.run_id, position=to)
                    return DeltaReport(
                        name, None, False, 0, 0, 0, 0, 0, to, time.monotonic() - started
                    )
                batches, roots = self._batches(snapshot, capture, changes)
                delta = self.ledger.start_delta(
                    name,
                    run_id=run.run_id,
                    from_position=position.position,
                    to_position=to,
                    changes=len(changes),
                    batches=batches,
                    roots=roots,
                    actor=actor(),
                )
                resumed = False
            else:
                delta, resumed = pending, True
                self.emit(Note(name, f"resuming delta {delta.delta_id}"))
            self._apply_all(snapshot, delta)
        done = self.ledger.delta(delta.delta_id)
        with self.ledger.together():
            self.ledger.finish_delta(done, RunStatus.COMPLETE)
            self.ledger.record_audit(
                actor=actor(),
                service=name,
                action="delta",
                detail={
                    "delta_id": done.delta_id,
                    "run_id": done.run_id,
                    "from": done.from_position,
                    "to": done.to_position,
                    "changes": done.changes,
                    "roots": done.roots,
                    "written": done.written,
                    "deleted": done.deleted,
                    "rejects": done.rejects,
                    "resumed": resumed,
                },
            )
        return DeltaReport(
            name,
            done.delta_id,
            resumed,
            done.changes,
            done.roots,
            done.written,
            done.deleted,
            done.rejects,
            done.to_position,
            time.monotonic() - started,
        )

    # -- which roots ---------------------------------------------------------------------------

    def _batches(
        self, snapshot: Snapshot, capture: CaptureEngine, changes: Sequence[Change]
    ) -> tuple[list[tuple[str, int, str]], int]:
        """The roots the changes touch, by document type and chunk, as delta batches."""
        batches: list[tuple[str, int, str]] = []
        total = 0
        for doc in self.plan.doc_types:
            keys, raw = self._dirty(snapshot, capture, doc, changes)
            if not keys and not raw:
                continue
            ranges = [self._range(c) for c in self._doc_chunks(doc)]
            located = snapshot.locate(doc.extract, ranges, sorted(keys, key=repr))
            gone = sorted(raw, key=repr)  # logged roots no longer in the source
            by_chunk: dict[int, tuple[list[Key], list[str]]] = {}
            for key, index in located.items():
                by_chunk.setdefault(index, ([], []))[0].append(key)
            if gone:
                texts = key_texts(doc, gone)
                for row in self.ledger.roots(self.run_id, doc.name, texts):
                    index = self._index_of(row.chunk_id)
                    by_chunk.setdefault(index, ([], []))[1].append(row.source_key)
            for index in sorted(by_chunk):
                present, removed = by_chunk[index]
                for start in range(0, max(len(present), 1), _BATCH):
                    part = present[start : start + _BATCH]
                    batches.append(
                        (doc.name, index, _batch_json(part, removed if not start else []))
                    )
                total += len(present) + len(removed)
        return batches, total

    def _compare(
        self, snapshot: Snapshot, capture: WatermarkCapture
    ) -> tuple[list[tuple[str, int, str]], int, dict[str, bytes]] | None:
        """Watermark capture: every chunk's roots held against their recorded digests
        (`migrate.watermark`), as delta batches, with the digests to record once the delta is
        done; None when nothing changed."""
        specs = narrowed(self.plan.doc_types, capture.plan, self.project.source.tables)
        digests = Digests(snapshot, self.ledger, self.run_id, self.plans, specs)
        recorded = self.ledger.digests(self.run_id)
        batches: list[tuple[str, int, str]] = []
        bodies: dict[str, bytes] = {}
        total = 0
        for doc in self.plan.doc_types:
            for chunk in self._doc_chunks(doc):
                body = recorded.get(chunk.chunk_id)
                found = digests.compare(chunk, decode(body) if body is not None else None)
                if not found.changed:
                    continue
                if found.digests is not None:
                    bodies[chunk.chunk_id] = encode(found.digests)
                for start in range(0, max(len(found.present), 1), _BATCH):
                    part = found.present[start : start + _BATCH]
                    gone = found.gone if not start else []
                    batches.append((doc.name, chunk.index, _batch_json(part, gone)))
                total += found.changed
        return (batches, total, bodies) if batches else None

    def _dirty(
        self, snapshot: Snapshot, capture: CaptureEngine, doc: DocPlan, changes: Sequence[Change]
    ) -> tuple[set[Key], set[Key]]:
        """Roots the changes touch: keys the database gave (reached through links), and root
        keys as logged (which may be gone)."""
        spec = doc.extract
        found: set[Key] = set()
        raw: set[Key] = set()
        for node in spec.nodes:
            logged = capture.plan.table(node.table)
            rows = [c for c in changes if c.table.casefold() == node.table.casefold()]
            if logged is None or not rows:
                continue
            columns = [c.casefold() for c in logged.columns]
            if node.parent_id is None:
                at = [columns.index(k.casefold()) for k in spec.primary_key]
            else:
                at = [columns.index(child.casefold()) for child, _ in node.link]
            values: set[Key] = set()
            for change in rows:
                for side in (change.old, change.new):
                    if side is not None:
                        value = tuple(side[i] for i in at)
                        if None not in value:
                            values.add(value)
            if node.parent_id is None:
                raw |= values
            elif values:
                found |= snapshot.dirty_roots(spec, node, sorted(values, key=repr))
        if raw:  # logged root keys: those the database still holds, as it gives them
            existing = self._existing(snapshot, spec, raw)
            found |= set(existing)
            kept = set(key_texts(doc, existing))
            ordered = sorted(raw, key=repr)
            texts = key_texts(doc, ordered)
            raw = {key for key, text in zip(ordered, texts, strict=True) if text not in kept}
        return found, raw

    def _existing(self, snapshot: Snapshot, spec: Any, keys: set[Key]) -> list[Key]:
        ordered = sorted(keys, key=repr)
        found: list[Key] = []
        for start in range(0, len(ordered), _BATCH):
            batch = tuple(ordered[start : start + _BATCH])
            found += snapshot.existing_roots(spec, ChunkRange(-1, None, None, keys=batch))
        return found

    # -- applying ------------------------------------------------------------------------------

    def _apply_all(self, snapshot: Snapshot, delta: DeltaRecord) -> None:
        """Apply the delta's batches in order, the next ones read and built while one is
        registered and written: by worker processes under the snapshot shared with them, else
        by one thread of this process on the snapshot itself. (A batch's writes and ledger
        transaction take about as much CPU as its reading and building; in worker processes
        the two halves of a batch run on two cores instead of sharing this process's one.)"""
        while True:
            left = [b for b in self.ledger.delta_batches(delta.delta_id) if not b.done]
            if not left:
                return
            view = None
            if len(left) > 1 and self.workers > 1:  # a pool's start costs more than one batch
                specs = [d.extract for d in self.plan.doc_types]
                view = share_view(self.project.source, snapshot, specs)
            if view is None:
                self._apply_threaded(snapshot, delta, left)
            else:
                self._apply_pooled(snapshot, delta, left, view)

    def _apply_threaded(
        self, snapshot: Snapshot, delta: DeltaRecord, left: Sequence[DeltaBatch]
    ) -> None:
        """One thread reads and builds the next batch from the source while this one registers
        and writes the last (the snapshot is only ever used by that thread meanwhile; the
        database, Arrow and the target's writes release the GIL)."""
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="migrate-delta-read") as reader:
            ahead = reader.submit(self._rebuild, snapshot, left[0])
            for number, batch in enumerate(left):
                built = ahead.result()
                if number + 1 < len(left):
                    ahead = reader.submit(self._rebuild, snapshot, left[number + 1])
                self._apply(delta, batch, built, snapshot=None)

    def _apply_pooled(
        self,
        snapshot: Snapshot,
        delta: DeltaRecord,
        left: Sequence[DeltaBatch],
        view: SharedView,
    ) -> None:
        """Worker processes read and build batches under the shared view, a few ahead; this
        thread applies them in order. A batch no worker could read (a SQLite writer waiting
        to commit keeps new readers out) is read and built here, on the snapshot itself."""
        prepare = self.project.target.preparer()
        window = max(2, self.workers * 2)
        with transformers(self.workers) as pool:
            assert pool is not None  # more than one worker
            pending: deque[tuple[DeltaBatch, _Rebuilt | Future[Built]]] = deque()
            batches = iter(left)
            for batch in batches:
                pending.append((batch, self._submit(pool, batch, view, prepare)))
                if len(pending) >= window:
                    break
            while pending:
                batch, outcome = pending.popleft()
                following = next(batches, None)
                if following is not None:
                    pending.append((following, self._submit(pool, following, view, prepare)))
                if not isinstance(outcome, _Rebuilt):
                    here = partial(self._build_here, snapshot, batch)
                    outcome = _Rebuilt(self._roots(batch), None, settle(outcome, here))
                self._apply(delta, batch, outcome, snapshot=snapshot)

    def _submit(
        self,
        pool: ProcessPoolExecutor,
        batch: DeltaBatch,
        view: SharedView,
        prepare: Callable[[Sequence[Document]], Sequence[Document]] | None,
    ) -> _Rebuilt | Future[Built]:
        """The batch's read and build, handed to a worker (a batch whose roots are all gone
        needs neither)."""
        present, gone = _read_batch(batch.keys)
        if not present:
            return _Rebuilt(gone, None, None)
        chunk = self.chunks[(batch.doc_type, batch.chunk_index)]
        read = ChunkRead(view, chunk.index, chunk.lo, chunk.hi, keys=tuple(present))
        return pool.submit(rebuild_roots, self._task(batch, read=read), chunk.index, prepare)

    def _roots(self, batch: DeltaBatch) -> list[str]:
        """The register's names of a batch's roots: present, then gone."""
        present, gone = _read_batch(batch.keys)
        return [*key_texts(self.plans[batch.doc_type], present), *gone]

    def _rebuild(self, snapshot: Snapshot, batch: DeltaBatch) -> _Rebuilt:
        """The batch's roots read from the source and built (nothing recorded or written)."""
        present, gone = _read_batch(batch.keys)
        if not present:
            return _Rebuilt(gone, None, None)
        tables = self._read_here(snapshot, batch)
        return _Rebuilt(self._roots(batch), tables, self._built(batch, tables))

    def _build_here(self, snapshot: Snapshot, batch: DeltaBatch) -> Built:
        """What a worker builds for the batch, read and built on `snapshot` instead."""
        return self._built(batch, self._read_here(snapshot, batch))

    def _read_here(self, snapshot: Snapshot, batch: DeltaBatch) -> dict[str, pa.Table]:
        chunk = self.chunks[(batch.doc_type, batch.chunk_index)]
        present, _gone = _read_batch(batch.keys)
        wanted = replace(self._range(chunk), keys=tuple(present))
        return snapshot.extract(self.plans[batch.doc_type].extract, wanted)

    def _built(
        self, batch: DeltaBatch, tables: dict[str, pa.Table], known: Known | None = None
    ) -> Built:
        """The batch's rows built here, as a worker builds them (`rebuild_roots`)."""
        task = self._task(batch, tables=tables, known=known)
        return finish_build(build_chunk(task, self.plan), batch.chunk_index, None)

    def _task(
        self,
        batch: DeltaBatch,
        *,
        tables: dict[str, pa.Table] | None = None,
        read: ChunkRead | None = None,
        known: Known | None = None,
    ) -> BuildTask:
        """A build of the batch's roots by the run's mapping (the build a reconciliation makes
        of a chunk): of rows read here, or to read under the shared view."""
        return BuildTask(
            str(self.service.mapping),
            self.project.config.target.bucket_type,
            self.plan.fingerprint,
            self.project.schema(),
            batch.doc_type,
            tables,
            self.max_bytes,
            read=read,
            collided=known,
        )

    def _apply(
        self,
        delta: DeltaRecord,
        batch: DeltaBatch,
        rebuilt: _Rebuilt,
        *,
        snapshot: Snapshot | None,
    ) -> None:
        """Register one batch's rebuilt roots, write and delete on the target, all inside one
        ledger transaction that commits once the target has acknowledged. A batch whose keys
        rows of other chunks render too is built again, told of them: from the rows read with
        it, else read again on `snapshot` (which no other thread then uses)."""
        doc = self.plans[batch.doc_type]
        chunk = self.chunks[(batch.doc_type, batch.chunk_index)]
        roots, built = rebuilt.roots, rebuilt.built
        fingerprint = chunk.transform_fingerprint or ""
        target = self.project.target
        with self.ledger.together():
            found = self.ledger.replace_roots(
                self.run_id,
                chunk.chunk_id,
                doc.name,
                bucket_type=doc.bucket_type,
                bucket=doc.bucket,
                roots=roots,
                claims=built.claims if built else [],
                fingerprint=fingerprint,
                collided=set(built.collided) if built else set(),
                rejected=rejected_rows(built.rejects) if built else [],
            )
            if built is not None and found.others:
                tables = rebuilt.tables
                if tables is None:
                    assert snapshot is not None
                    tables = self._read_here(snapshot, batch)
                built = self._built(batch, tables, describe(found.others, self.plans))
            documents: Sequence[Document] = []
            rejects: list[Reject] = []
            if built is not None:
                documents = built.documents
                rejects = built.rejects
            touched = {chunk.chunk_id} | {r.chunk_id for r in found.newly_collided}
            for chunk_id in sorted(touched):
                recount(self.ledger, self.run_id, chunk_id, f"delta {delta.delta_id}")
            if found.released:
                self.ledger.add_batches(delta.delta_id, self._released(found.released))
            deletions = set(found.vanished)
            deletions |= {
                (o.bucket_type, o.bucket, o.key) for r in found.others.values() for o in r
            }
            deleted = sum(int(target.delete(*identity)) for identity in sorted(deletions))
            meta = {
                "migrate-run": self.run_id,
                "migrate-chunk": chunk.chunk_id,
                "migrate-delta": delta.delta_id,
            }
            stats = target.write(documents, meta=meta)
            self._write_rejects(delta, rejects)
            self.ledger.finish_batch(
                delta.delta_id,
                batch.batch,
                written=stats.written,
                deleted=deleted,
                rejects=len(rejects),
            )

    def _released(self, rows: Sequence[Registered]) -> list[tuple[str, int, str]]:
        """Batches rebuilding rows left alone on a key by this delta (no longer a collision).
        Their keys are known by their text forms, which the database reads back by its own
        casts (a number's text for a number)."""
        batches = []
        for row in rows:
            values = [None if v is None else v for v in json.loads(row.source_key)]
            batches.append(
                (row.doc_type, self._index_of(row.chunk_id), _batch_json([tuple(values)], []))
            )
        return batches

    def _write_rejects(self, delta: DeltaRecord, rejects: Sequence[Reject]) -> None:
        if not rejects:
            return
        folder = self.project.config.work_dir / self.service.name / "deltas" / delta.delta_id
        path = folder / "rejects.jsonl"
        before = path.read_bytes() if path.is_file() else b""
        with private_writer(path) as handle:
            handle.write(before)
            for reject in rejects:
                record = {
                    "service": self.service.name,
                    "delta_id": delta.delta_id,
                    "doc_type": reject.doc_type,
                    "source_key": reject.source_key,
                    "key": reject.key,
                    "field": reject.field,
                    "reason": reject.reason,
                }
                handle.write(json.dumps(record, ensure_ascii=False).encode() + b"\n")

    # -- helpers -------------------------------------------------------------------------------

    def _doc_chunks(self, doc: DocPlan) -> list[ChunkRecord]:
        return sorted(
            (c for c in self.chunks.values() if c.doc_type == doc.name), key=lambda c: c.index
        )

    @staticmethod
    def _range(chunk: ChunkRecord) -> ChunkRange:
        return ChunkRange.from_bounds_json(chunk.index, chunk.lo, chunk.hi)

    @staticmethod
    def _index_of(chunk_id: str) -> int:
        """A chunk's index from its id (`DOC_TYPE:00005`, as the ledger plans them)."""
        return int(chunk_id.rsplit(":", 1)[1])


def rebuild_roots(
    task: BuildTask,
    chunk_index: int,
    prepare: Callable[[Sequence[Document]], Sequence[Document]] | None,
) -> Built:
    """In a worker process: read a batch's roots under the delta's shared snapshot and build
    their documents (with their chunk index, laid out by the target's preparer), as
    `DeltaRun._built` does here. Nothing is written."""
    return finish_build(build_chunk(task), chunk_index, prepare)


_BATCH = 500  # roots per batch: one chunk's, at most this many


@dataclass(frozen=True, slots=True)
class _Rebuilt:
    """A batch read and built: the register's names of its roots (present, then gone), the
    rows read (None when a worker read them) and what they built (None when every root of the
    batch is gone)."""

    roots: list[str]
    tables: dict[str, pa.Table] | None
    built: Built | None


def _batch_json(present: Sequence[Key], gone: Sequence[str]) -> str:
    return json.dumps({"keys": [_encode_bound(k) for k in present], "gone": list(gone)})


def _read_batch(text: str) -> tuple[list[Key], list[str]]:
    data = json.loads(text)
    keys = [_decode_bound(k) for k in data["keys"]]
    return [k for k in keys if k is not None], list(data["gone"])
