"""Runs a service's chunks through extract -> stage -> transform -> load, durably and resumably.

Every phase of every chunk is a ledger transition written only after its work is durable (the
staged files renamed into place, the target's write committed), so a process killed at any moment
leaves at worst a phase to redo, and every phase is idempotent. A re-run first finishes what the
last run left pending; it starts a new run (a new snapshot) only when asked (`fresh`) or when the
mapping now reads different data than the staged chunks hold.

The stages overlap: this process's main thread plans the chunks (one source snapshot); worker
processes extract, stage and transform them, the CPU-heavy part, reading under that same snapshot
where the source can share it (`migrate.source.shared`; otherwise the main thread extracts and
hands them the rows); one loader thread records each chunk in the ledger and writes it to the
target (one writer, in chunk order). Both hand-offs are bounded, so a slow target applies
back-pressure to the extract instead of filling memory.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import (
    FIRST_COMPLETED,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from migrate.config import ServiceConfig
from migrate.document import Reject
from migrate.errors import MigrateError, RejectLimitError, StagingError
from migrate.events import ChunkFinished, EventSink, Note, ServiceFinished, ServiceStarted, ignore
from migrate.files import private_writer
from migrate.ledger import ChunkRecord, ChunkState, Ledger, RunRecord, RunStatus
from migrate.mapping import DocPlan
from migrate.mapping.canonical import aggregate
from migrate.processes import warm_up
from migrate.project import Project, actor
from migrate.source import ChunkRange, Snapshot, StagedChunk
from migrate.source.shared import ChunkRead, SharedView, settle, share_view
from migrate.target.base import WriteStats
from migrate.transform import (
    Extracted,
    ToRead,
    TransformOutput,
    TransformTask,
    transform_chunk,
    transformers,
)

if TYPE_CHECKING:
    from migrate.reconcile import ServiceResult

LOAD_QUEUE = 2  # chunks handed to the loader at once: one being written, the next one ready


@dataclass(frozen=True, slots=True)
class ServiceReport:
    service: str
    run_id: str
    status: RunStatus
    chunks: int
    documents: int
    written: int
    unchanged: int
    rejects: int
    rejects_file: Path | None
    seconds: float
    verification: ServiceResult | None = None  # the check of what the run loaded


def run_services(
    project: Project,
    names: Sequence[str] = (),
    *,
    workers: int | None = None,
    fresh: bool = False,
    on_event: EventSink = ignore,
) -> list[ServiceReport]:
    """Migrate the named services (all, in cutover order, when none are named)."""
    services = project.config.select(list(names))
    count = workers or project.config.run.workers or os.cpu_count() or 1
    if count > 1:
        warm_up()  # the workers' imports overlap reflection and planning
    reports = []
    with transformers(count) as pool:
        for service in services:
            report = _ServiceRun(
                project, service, pool, workers=count, fresh=fresh, on_event=on_event
            ).execute()
            reports.append(_verified(project, service, report))
    return reports


def _verified(project: Project, service: ServiceConfig, report: ServiceReport) -> ServiceReport:
    """The report with a recorded reconciliation of what the run loaded (ledger aggregates against
    the target's chunk index; chunks are rebuilt from staging only where they differ)."""
    from dataclasses import replace

    from migrate.reconcile import Against, Options, reconcile_service

    check = reconcile_service(project, service, Options(against=Against.STAGING))
    return replace(report, verification=check)


@dataclass(frozen=True, slots=True)
class _Transforming:
    """A chunk in a worker; `snapshot` is set when the worker stages it (the extract is then
    recorded when the worker is done)."""

    chunk: ChunkRecord
    snapshot: str | None
    outcome: Future[TransformOutput] | TransformOutput
    # For a chunk the worker reads itself: the same work done here, should it not get in.
    fallback: Callable[[], TransformOutput] | None = None

    def done(self) -> bool:
        return not isinstance(self.outcome, Future) or self.outcome.done()


@dataclass(frozen=True, slots=True)
class _Loading:
    """A transformed chunk handed to the loader thread."""

    chunk: ChunkRecord
    output: TransformOutput
    future: Future[WriteStats]


# -- one service ---------------------------------------------------------------------------------


class _ServiceRun:
    def __init__(
        self,
        project: Project,
        service: ServiceConfig,
        pool: ProcessPoolExecutor | None,
        *,
        workers: int,
        fresh: bool,
        on_event: EventSink,
    ) -> None:
        self.project = project
        self.service = service
        self.pool = pool
        self.in_flight_limit = max(2, workers * 2)
        self.fresh = fresh
        self.emit = on_event
        self.ledger: Ledger = project.ledger
        self.schema = project.schema()
        self.plan = project.plan(service)
        self.doc_plans = {d.name: d for d in self.plan.doc_types}
        self.max_rejects = project.config.run.max_rejects
        self.documents = self.written = self.unchanged = self.rejects = 0
        self.view: SharedView | None = None  # the snapshot the workers read chunks under

    def execute(self) -> ServiceReport:
        started = time.monotonic()
        run, resumed = self._open_run()
        run_dir = self.project.config.work_dir / self.service.name / run.run_id
        self.run_dir = run_dir
        try:
            with self._snapshot_if_needed(run) as snapshot:
                chunks = self._plan(run, snapshot)
                todo = [c for c in chunks if not self._done(c)]
                self.emit(
                    ServiceStarted(
                        self.service.name, run.run_id, resumed, len(chunks), len(chunks) - len(todo)
                    )
                )
                rejects_before = sum(c.rejects or 0 for c in chunks if self._done(c))
                self._process(run, todo, snapshot, rejects_before)
        except BaseException as exc:
            self.ledger.finish_run(run.run_id, RunStatus.FAILED)
            self.ledger.record_audit(
                actor=actor(),
                service=self.service.name,
                action="run.failed",
                detail={"run_id": run.run_id, "error": type(exc).__name__, "message": str(exc)},
            )
            self._write_rejects_file(run)
            raise
        chunks = self.ledger.chunks(run.run_id)
        total_rejects = sum(c.rejects or 0 for c in chunks)
        rejects_file = self._write_rejects_file(run)
        self.ledger.finish_run(run.run_id, RunStatus.COMPLETE)
        documents = sum(c.documents or 0 for c in chunks)
        checksum = aggregate(c.doc_checksum or "0" * 32 for c in chunks)
        self.ledger.record_audit(
            actor=actor(),
            service=self.service.name,
            action="run.complete",
            detail={
                "run_id": run.run_id,
                "chunks": len(chunks),
                "documents": documents,
                "rejects": total_rejects,
                "checksum": checksum,
                "mapping_fingerprint": self.plan.fingerprint,
            },
        )
        seconds = time.monotonic() - started
        self.emit(ServiceFinished(self.service.name, run.run_id, documents, total_rejects, seconds))
        return ServiceReport(
            service=self.service.name,
            run_id=run.run_id,
            status=RunStatus.COMPLETE,
            chunks=len(chunks),
            documents=documents,
            written=self.written,
            unchanged=self.unchanged,
            rejects=total_rejects,
            rejects_file=rejects_file,
            seconds=seconds,
        )

    # -- which run, which chunks --------------------------------------------------------------

    def _open_run(self) -> tuple[RunRecord, bool]:
        name = self.service.name
        run = self.ledger.latest_run(name)
        if run is not None and not self.fresh:
            changed = self._extract_changed(run)
            if changed is None:
                if run.mapping_fingerprint != self.plan.fingerprint:
                    self.ledger.update_run(run.run_id, mapping_fingerprint=self.plan.fingerprint)
                    self.emit(
                        Note(
                            name, "the mapping changed: re-transforming and re-loading from staging"
                        )
                    )
                elif run.status is not RunStatus.COMPLETE:
                    self.emit(Note(name, f"resuming run {run.run_id}"))
                return run, True
            self.emit(
                Note(name, f"document type {changed} now reads different data: starting a new run")
            )
        run = self.ledger.start_run(
            name, snapshot="", mapping_fingerprint=self.plan.fingerprint, actor=actor()
        )
        self.ledger.record_audit(
            actor=actor(), service=name, action="run.start", detail={"run_id": run.run_id}
        )
        return run, False

    def _extract_changed(self, run: RunRecord) -> str | None:
        """The first document type whose planned chunks were extracted for a different read."""
        planned = {c.doc_type: c.extract_fingerprint for c in self.ledger.chunks(run.run_id)}
        for doc_type, fingerprint in planned.items():
            doc = self.doc_plans.get(doc_type)
            if doc is None or doc.extract.fingerprint() != fingerprint:
                return doc_type
        return None

    def _needs_extract(self, chunk: ChunkRecord) -> bool:
        return chunk.state is ChunkState.PLANNED or not (
            chunk.staged_path and Path(chunk.staged_path).is_dir()
        )

    def _done(self, chunk: ChunkRecord) -> bool:
        return (
            chunk.state is ChunkState.LOADED
            and chunk.transform_fingerprint == self.doc_plans[chunk.doc_type].fingerprint
        )

    @contextlib.contextmanager
    def _snapshot_if_needed(self, run: RunRecord) -> Iterator[Snapshot | None]:
        chunks = self.ledger.chunks(run.run_id)
        planned = {c.doc_type for c in chunks}
        needed = any(d not in planned for d in self.doc_plans) or any(
            self._needs_extract(c) for c in chunks if not self._done(c)
        )
        if not needed:
            yield None
            return
        source = self.project.source
        with source.snapshot() as snapshot:
            if not run.snapshot:
                self.ledger.update_run(run.run_id, snapshot=snapshot.marker)
            if self.pool is not None:
                specs = [d.extract for d in self.plan.doc_types]
                self.view = share_view(source, snapshot, specs)
            try:
                yield snapshot
            finally:
                self.view = None

    def _plan(self, run: RunRecord, snapshot: Snapshot | None) -> list[ChunkRecord]:
        chunks: list[ChunkRecord] = []
        existing = {c.doc_type for c in self.ledger.chunks(run.run_id)}
        for doc in self.plan.doc_types:
            if doc.name not in existing:
                assert snapshot is not None  # _snapshot_if_needed opened one for this
                ranges = snapshot.plan_chunks(doc.extract, self.project.config.run.chunk_size)
                rows = [(r.index, *r.bounds_json()) for r in ranges]
                self.ledger.plan_chunks(run.run_id, doc.name, doc.extract.fingerprint(), rows)
            chunks.extend(self.ledger.chunks(run.run_id, doc.name))
        return chunks

    # -- the chunk loop -----------------------------------------------------------------------
    #
    # This thread extracts chunks; worker processes stage and transform them; one loader thread
    # records them in the ledger and writes them to the target, in chunk order. Chunks in
    # transform and chunks handed to the loader are both bounded, so a slow target holds up the
    # extract (back-pressure) instead of filling memory.

    def _process(
        self,
        run: RunRecord,
        todo: list[ChunkRecord],
        snapshot: Snapshot | None,
        rejects_before: int,
    ) -> None:
        self.rejects = rejects_before
        self.target = self.project.target  # opened here, not first in the loader thread
        pending = iter(todo)
        transforming: deque[_Transforming] = deque()
        loading: deque[_Loading] = deque()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="migrate-load") as loader:
            try:
                while True:
                    while loading and loading[0].future.done():
                        self._finish_load(loading.popleft())
                    while transforming and transforming[0].done() and len(loading) < LOAD_QUEUE:
                        handed = self._start_load(run, transforming.popleft(), loader)
                        loading.append(handed)
                        if self.rejects > self.max_rejects:
                            while loading:  # chunks handed to the loader stay loaded
                                self._finish_load(loading.popleft())
                            raise self._too_many_rejects(handed.chunk)
                    if len(transforming) < self.in_flight_limit:
                        chunk = next(pending, None)
                        if chunk is not None:
                            transforming.append(self._submit(run, chunk, snapshot))
                            continue
                    if not transforming and not loading:
                        return
                    # Sleep until the oldest load or the oldest transform (when it is what the
                    # loop waits for) ends: there is room for neither another chunk nor a load.
                    heads: list[Future[Any]] = [loading[0].future] if loading else []
                    oldest = transforming[0].outcome if transforming else None
                    if isinstance(oldest, Future) and not oldest.done():
                        heads.append(oldest)
                    wait(heads, return_when=FIRST_COMPLETED)
            finally:
                for item in transforming:
                    if isinstance(item.outcome, Future):
                        item.outcome.cancel()
                for handed in loading:
                    handed.future.cancel()  # a write under way ends; the loader then stops

    def _submit(
        self, run: RunRecord, chunk: ChunkRecord, snapshot: Snapshot | None
    ) -> _Transforming:
        """Extract the chunk when it has no staged files, and send it to be (staged and)
        transformed."""
        source: StagedChunk | Extracted | ToRead
        if self._needs_extract(chunk):
            if snapshot is None:
                raise StagingError(
                    f"chunk {chunk.chunk_id} has no staged files and no snapshot is open"
                )
            if self.view is not None:  # the worker reads it, under this snapshot
                read = ChunkRead(self.view, chunk.index, chunk.lo, chunk.hi)
                source = ToRead(self._staging_dir(chunk), read)
            else:
                source = self._extract_here(chunk, snapshot)
        else:
            assert chunk.staged_path is not None and chunk.staged_checksum is not None
            source = StagedChunk(chunk.staged_path, dict(chunk.rows), chunk.staged_checksum)
        task = self._task(chunk, source)
        marker = snapshot.marker if not isinstance(source, StagedChunk) and snapshot else None
        if self.pool is None:
            return _Transforming(chunk, marker, transform_chunk(task))
        fallback = None
        if isinstance(source, ToRead) and snapshot is not None:
            fallback = partial(self._transform_here, chunk, snapshot)
        return _Transforming(chunk, marker, self.pool.submit(transform_chunk, task), fallback)

    def _transform_here(self, chunk: ChunkRecord, snapshot: Snapshot) -> TransformOutput:
        return transform_chunk(self._task(chunk, self._extract_here(chunk, snapshot)))

    def _staging_dir(self, chunk: ChunkRecord) -> str:
        return str(self.run_dir / "staged" / chunk.doc_type / f"{chunk.index:05d}")

    def _extract_here(self, chunk: ChunkRecord, snapshot: Snapshot) -> Extracted:
        """The chunk's rows read on the snapshot's own connection, to be staged."""
        doc = self.doc_plans[chunk.doc_type]
        index = ChunkRange.from_bounds_json(chunk.index, chunk.lo, chunk.hi)
        return Extracted(self._staging_dir(chunk), snapshot.extract(doc.extract, index))

    def _task(self, chunk: ChunkRecord, source: StagedChunk | Extracted | ToRead) -> TransformTask:
        return TransformTask(
            str(self.service.mapping),
            self.project.config.target.bucket_type,
            self.plan.fingerprint,
            self.schema,
            chunk.doc_type,
            chunk.index,
            self.project.config.run.max_document_bytes,
            source,
        )

    @staticmethod
    def _output(item: _Transforming) -> TransformOutput:
        """The worker's output; a chunk the worker could not read (`ViewBusy`) is read on the
        snapshot's connection and transformed here."""
        if isinstance(item.outcome, TransformOutput):
            return item.outcome
        return settle(item.outcome, item.fallback)

    def _start_load(
        self, run: RunRecord, item: _Transforming, loader: ThreadPoolExecutor
    ) -> _Loading:
        """Hand a transformed chunk to the loader thread (which also records it, so the ledger's
        commits never hold up the extract)."""
        output = self._output(item)
        self.rejects += len(output.rejects)
        future = loader.submit(self._record_and_load, run, item.chunk, item.snapshot, output)
        return _Loading(item.chunk, output, future)

    def _record_and_load(
        self, run: RunRecord, chunk: ChunkRecord, snapshot: str | None, output: TransformOutput
    ) -> WriteStats:
        """In the loader thread, in chunk order: record the extract (when the worker just staged
        the chunk) and the transform, write the documents, then record the load once the target
        has acknowledged every one of them."""
        if snapshot is not None:
            self.ledger.mark_extracted(
                run.run_id,
                chunk.chunk_id,
                rows=output.staged.rows,
                staged_path=output.staged.path,
                staged_checksum=output.staged.checksum,
                snapshot=snapshot,
            )
        doc: DocPlan = self.doc_plans[chunk.doc_type]
        if (
            chunk.state is ChunkState.TRANSFORMED
            and chunk.transform_fingerprint == doc.fingerprint
            and chunk.doc_checksum != output.checksum
        ):
            raise MigrateError(
                f"{self.service.name}: chunk {chunk.chunk_id} rebuilt to checksum "
                f"{output.checksum}, but the ledger recorded {chunk.doc_checksum} for the same "
                "mapping and staged rows",
                hint="the staged files or the builder changed under the run; "
                "start over with `migrate run --fresh`",
            )
        self._write_chunk_rejects(run, chunk, output.rejects)
        self.ledger.mark_transformed(
            run.run_id,
            chunk.chunk_id,
            transform_fingerprint=doc.fingerprint,
            documents=len(output.documents),
            rejects=len(output.rejects),
            doc_checksum=output.checksum,
        )
        meta = {"migrate-run": run.run_id, "migrate-chunk": chunk.chunk_id}
        stats = self.target.write(output.documents, meta=meta)
        self.ledger.mark_loaded(
            run.run_id,
            chunk.chunk_id,
            documents=len(output.documents),
            written=stats.written,
            unchanged=stats.unchanged,
            doc_checksum=output.checksum,
        )
        return stats

    def _finish_load(self, handed: _Loading) -> None:
        stats = handed.future.result()
        output = handed.output
        self.documents += len(output.documents)
        self.written += stats.written
        self.unchanged += stats.unchanged
        self.emit(
            ChunkFinished(
                self.service.name,
                handed.chunk.chunk_id,
                len(output.documents),
                stats.written,
                stats.unchanged,
                len(output.rejects),
            )
        )

    def _too_many_rejects(self, chunk: ChunkRecord) -> RejectLimitError:
        return RejectLimitError(
            f"{self.service.name}: {self.rejects} rows rejected, more than [run] max_rejects "
            f"= {self.max_rejects}; stopped after chunk {chunk.chunk_id}",
            hint=f"read {self.run_dir / 'rejects.jsonl'}, fix the mapping or the data, "
            "or raise max_rejects in migrate.toml; loaded chunks stay loaded",
        )

    # -- reject files ---------------------------------------------------------------------------

    def _chunk_rejects_path(self, chunk: ChunkRecord) -> Path:
        return self.run_dir / "rejects" / f"{chunk.doc_type}-{chunk.index:05d}.jsonl"

    def _write_chunk_rejects(
        self, run: RunRecord, chunk: ChunkRecord, rejects: list[Reject]
    ) -> None:
        path = self._chunk_rejects_path(chunk)
        if not rejects:
            path.unlink(missing_ok=True)
            return
        with private_writer(path) as handle:
            for reject in rejects:
                record = {
                    "service": self.service.name,
                    "run_id": run.run_id,
                    "chunk_id": chunk.chunk_id,
                    "doc_type": reject.doc_type,
                    "source_key": reject.source_key,
                    "key": reject.key,
                    "field": reject.field,
                    "reason": reject.reason,
                }
                handle.write(msgspec.json.encode(record) + b"\n")

    def _write_rejects_file(self, run: RunRecord) -> Path | None:
        """Gather the chunks' reject files into the run's one reject file (owner-only)."""
        folder = self.run_dir / "rejects"
        parts = sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
        target = self.run_dir / "rejects.jsonl"
        if not parts:
            target.unlink(missing_ok=True)
            return None
        with private_writer(target) as handle:
            for part in parts:
                handle.write(part.read_bytes())
        return target
