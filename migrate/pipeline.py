"""Runs a service's chunks through extract -> stage -> transform -> load, durably and resumably.

Every phase of every chunk is a ledger transition written only after its work is durable (the
staged files renamed into place, the target's write committed), so a process killed at any moment
leaves at worst a phase to redo, and every phase is idempotent. A re-run first finishes what the
last run left pending; it starts a new run (a new snapshot) only when asked (`fresh`) or when the
mapping now reads different data than the staged chunks hold.

The stages overlap: this process's main thread plans the chunks (one source snapshot); the
executor's workers (`migrate.executor`) extract, stage and transform them, the CPU-heavy part,
reading under that same snapshot where the source can share it with them
(`migrate.source.shared`; otherwise the main thread extracts and hands them the rows). A chunk
comes back built, and one loader thread here records it in the ledger and writes it to the
target (one writer, in chunk order: the local executor), or loaded by the worker that built it
(a distributed executor: chunks finish in any order, each counted as it comes). Both hand-offs
are bounded, so a slow target applies back-pressure to the extract instead of filling memory.

Services run one after the other, but the workers do not wait for a service's last loads: once a
service has handed out its last chunk, the next service that starts a new run plans its chunks on
a snapshot of its own and hands its first ones to the workers (`_ReadAhead`). Nothing of that is
in the ledger or the target until the service's own turn, which adopts those chunks; should the
service before it fail, they are discarded and their staged files removed.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from migrate.capture import require as require_capture
from migrate.config import ServiceConfig
from migrate.errors import RejectLimitError, StagingError
from migrate.events import ChunkFinished, EventSink, Note, ServiceFinished, ServiceStarted, ignore
from migrate.executor import ChunkJob, Executor, Outcome, open_executor
from migrate.files import private_writer
from migrate.lease import Lease
from migrate.ledger import ChunkRecord, ChunkState, Ledger, RunRecord, RunStatus, new_run_id
from migrate.loading import ChunkLoaded, ChunkLoader, LoadContext, is_done
from migrate.mapping.canonical import aggregate
from migrate.project import Project, actor
from migrate.source import ChunkRange, Snapshot, StagedChunk
from migrate.source.capture import WatermarkCapture
from migrate.source.shared import ChunkRead, SharedView, settle, share_view
from migrate.transform import (
    Extracted,
    ToRead,
    TransformOutput,
    TransformTask,
    transform_chunk,
)
from migrate.watermark import Digests, narrowed

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
    command: str = "migrate run",
) -> list[ServiceReport]:
    """Migrate the named services (all, in cutover order, when none are named), holding their
    leases (`command` names this command to anyone refused meanwhile)."""
    services = project.config.select(list(names))
    with (
        project.hold([s.name for s in services], command) as lease,
        open_executor(project.config, workers=workers) as executor,
    ):
        make = partial(
            _ServiceRun, project, executor=executor, fresh=fresh, on_event=on_event, lease=lease
        )
        return _Lineup(project, services, make, executor=executor).run()


class _Lineup:
    """The services of one call, in order: while one drains its last loads, the next one reads
    ahead (`_ServiceRun.read_ahead`)."""

    def __init__(
        self,
        project: Project,
        services: Sequence[ServiceConfig],
        make: Callable[[ServiceConfig], _ServiceRun],
        *,
        executor: Executor,
    ) -> None:
        self.project = project
        self.services = services
        self.make = make
        self.executor = executor  # also builds what the verification after each service builds
        self.reads_ahead = executor.reads_ahead  # only workers can read ahead
        self.upcoming: _ServiceRun | None = None  # the next service, when it reads ahead

    def run(self) -> list[ServiceReport]:
        reports = []
        try:
            for position, service in enumerate(self.services):
                current = self.upcoming or self.make(service)
                self.upcoming = None
                if self.reads_ahead and position + 1 < len(self.services):
                    current.on_drain = partial(self._read_ahead, self.services[position + 1])
                report = current.execute()
                reports.append(_verified(self.project, service, report, self.executor))
        except BaseException:
            if self.upcoming is not None:  # its chunks were read for a turn that never comes
                self.upcoming.close_read_ahead()
            raise
        return reports

    def _read_ahead(self, service: ServiceConfig) -> None:
        try:
            upcoming = self.make(service)
        except Exception:  # e.g. its mapping does not compile: its own turn reports that
            return
        self.upcoming = upcoming
        upcoming.read_ahead()


def _verified(
    project: Project, service: ServiceConfig, report: ServiceReport, executor: Executor
) -> ServiceReport:
    """The report with a recorded reconciliation of what the run loaded (ledger aggregates against
    the target's chunk index; chunks are rebuilt from staging only where they differ, on the
    run's distributed executor when it has one, else in processes of this machine)."""
    from dataclasses import replace

    from migrate.reconcile import Against, Options, reconcile_service
    from migrate.reconcile.expected import Builders
    from migrate.reconcile.service import changed_by_deltas

    # The rejected rows the run let through under [run] max_rejects are accepted by that setting.
    # Once deltas changed the run's documents, its staged rows no longer say what it holds.
    run = project.ledger.get_run(report.run_id)
    against = Against.SOURCE if changed_by_deltas(project, run) else Against.STAGING
    options = Options(against=against, accept_rejects=True)
    builders = Builders(1, executor=executor) if executor.remote else None
    check = reconcile_service(project, service, options, builders=builders)
    return replace(report, verification=check)


@dataclass(frozen=True, slots=True)
class _Transforming:
    """A chunk in a worker; `snapshot` is set when the worker stages it (the extract is then
    recorded when the chunk is loaded). `task` builds it (again, should the register find a
    collision its build did not know)."""

    chunk: ChunkRecord
    snapshot: str | None
    task: TransformTask
    outcome: Future[Outcome]
    # For a chunk the worker reads itself: the same work done here, should it not get in.
    fallback: Callable[[], TransformOutput] | None = None

    def done(self) -> bool:
        return self.outcome.done()

    def loaded(self) -> bool:
        """Whether its worker loaded it (it is counted at once, whatever its place in line)."""
        outcome = self.outcome
        return (
            outcome.done()
            and not outcome.cancelled()
            and outcome.exception() is None
            and isinstance(outcome.result(), ChunkLoaded)
        )


@dataclass(slots=True)
class _ReadAhead:
    """A service's new run, planned and its first chunks handed to the workers before the
    service's turn. Nothing of it is recorded: the run starts under `run_id` at the service's
    turn (`adopted`), or never, and then its staged files are removed."""

    run_id: str
    stack: ExitStack  # holds the snapshot open
    snapshot: Snapshot
    view: SharedView
    ranges: dict[str, list[ChunkRange]]  # by document type, as planned on the snapshot
    # (document type, chunk index) -> the chunk's bounds, its task and its transform
    chunks: dict[
        tuple[str, int], tuple[tuple[str, str], TransformTask, Future[TransformOutput]]
    ] = field(default_factory=dict)
    adopted: bool = False


@dataclass(frozen=True, slots=True)
class _Loading:
    """A chunk handed to the loader thread (or loaded by its worker already), with the rejects
    its build reported, which the run counted when it was handed over."""

    chunk: ChunkRecord
    counted: int
    future: Future[ChunkLoaded]


class _LoadStopped(Exception):
    """A chunk queued for the loader behind one whose load failed: it is left unloaded, for the
    re-run to load in order."""


# -- one service ---------------------------------------------------------------------------------


class _ServiceRun:
    def __init__(
        self,
        project: Project,
        service: ServiceConfig,
        *,
        executor: Executor,
        fresh: bool,
        on_event: EventSink,
        lease: Lease,
    ) -> None:
        self.project = project
        self.lease = lease  # checked before each chunk is recorded
        self.service = service
        self.executor = executor
        self.in_flight_limit = executor.slots
        self.fresh = fresh
        self.emit = on_event
        self.ledger: Ledger = project.ledger
        self.schema = project.schema()
        self.plan = project.plan(service)
        self.doc_plans = {d.name: d for d in self.plan.doc_types}
        self.max_rejects = project.config.run.max_rejects
        self.documents = self.written = self.unchanged = self.rejects = 0
        self.view: SharedView | None = None  # the snapshot the workers read chunks under
        self.on_drain: Callable[[], None] | None = None  # once every chunk is handed out
        self._ahead: _ReadAhead | None = None
        self._load_failed = threading.Event()  # once set, the loader writes no further chunk
        self.loader: ChunkLoader | None = None  # records and loads built chunks, once it is open
        # The service's change capture, which must be installed before the run's snapshot: the
        # run records where in its log the snapshot stands, and the first delta starts there.
        self.capture = require_capture(project, service) if service.capture else None
        # What a chunk's recorded transform must match to count as done: the mapping and the
        # size limit (a raised limit takes the rejected documents again).
        self.max_bytes = project.config.run.max_document_bytes
        self._loaded_before = True  # whether an earlier run may have written (see _process)

    def execute(self) -> ServiceReport:
        try:
            return self._execute()
        finally:
            self.close_read_ahead()

    def _execute(self) -> ServiceReport:
        started = time.monotonic()
        run, resumed = self._open_run()
        if self._ahead is not None and not self._ahead.adopted:
            self.close_read_ahead()  # the ledger moved on meanwhile: a run resumes instead
        run_dir = self._run_dir(run.run_id)
        self.run_dir = run_dir
        try:
            with self._snapshot_if_needed(run) as snapshot:
                chunks = self._plan(run, snapshot)
                if snapshot is not None:
                    self._record_digests(run, snapshot, chunks)
                todo = [c for c in chunks if not self._done(c)]
                self.emit(
                    ServiceStarted(
                        self.service.name, run.run_id, resumed, len(chunks), len(chunks) - len(todo)
                    )
                )
                rejects_before = sum(c.rejects or 0 for c in chunks if self._done(c))
                self._process(run, todo, snapshot, rejects_before)
                if self.rejects > self.max_rejects:  # found by the last loads
                    raise self._too_many_rejects(None)
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
        moved = run is not None and not self.fresh and self._target_changed(run)
        if moved:
            self.emit(Note(name, f"the run loaded another target ({moved}): starting a new run"))
        if run is not None and not self.fresh and not moved:
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
            name,
            snapshot="",
            mapping_fingerprint=self.plan.fingerprint,
            actor=actor(),
            run_id=self._ahead.run_id if self._ahead is not None else None,
        )
        if self._ahead is not None:
            self._ahead.adopted = True
        self.ledger.record_audit(
            actor=actor(),
            service=name,
            action="run.start",
            detail={"run_id": run.run_id, "target": self.project.target.display_url},
        )
        return run, False

    def _target_changed(self, run: RunRecord) -> str | None:
        """The target the run loaded into, when it is not the one configured now (a rehearsal on
        the embedded target, then Riak: resuming would load nothing into Riak)."""
        for row in reversed(self.ledger.audit_log(self.service.name)):
            if row["action"] == "run.start" and row["detail"].get("run_id") == run.run_id:
                loaded = row["detail"].get("target")
                current = self.project.target.display_url
                return loaded if loaded is not None and loaded != current else None
        return None

    def _starts_afresh(self) -> bool:
        """Whether `_open_run` would start a new run now (it reads the ledger the same way)."""
        run = self.ledger.latest_run(self.service.name)
        if run is None or self.fresh or self._target_changed(run):
            return True
        return self._extract_changed(run) is not None

    def _extract_changed(self, run: RunRecord) -> str | None:
        """The first document type whose planned chunks were extracted for a different read."""
        planned = {c.doc_type: c.extract_fingerprint for c in self.ledger.chunks(run.run_id)}
        for doc_type, fingerprint in planned.items():
            doc = self.doc_plans.get(doc_type)
            if doc is None or doc.extract.fingerprint() != fingerprint:
                return doc_type
        return None

    def _earlier_run_wrote(self, run: RunRecord) -> bool:
        """Whether an earlier run of the service may have written documents: one of its chunks
        got to TRANSFORMED, which is recorded right before the chunk's write. A chunk of this run
        below TRANSFORMED when the run (or its resume) began has never been written, then: the
        target may load it without asking what it holds (`Target.write(first_load=...)`).
        A run recorded as loading only another target (the rehearsal's embedded one) wrote
        nothing here; a run with no target recorded may have."""
        elsewhere = self._runs_into_other_targets()
        return any(
            chunk.state.rank >= ChunkState.TRANSFORMED.rank
            for earlier in self.ledger.runs(self.service.name)
            if earlier.run_id != run.run_id and earlier.run_id not in elsewhere
            for chunk in self.ledger.chunks(earlier.run_id)
        )

    def _runs_into_other_targets(self) -> set[str]:
        """The service's runs whose every `run.start` audit row names another target than the
        configured one."""
        current = self.project.target.display_url
        targets: dict[str, set[str | None]] = {}
        for row in self.ledger.audit_log(self.service.name):
            if row["action"] == "run.start":
                seen = targets.setdefault(str(row["detail"].get("run_id")), set())
                seen.add(row["detail"].get("target"))
        return {run_id for run_id, seen in targets.items() if not seen & {current, None}}

    def _needs_extract(self, chunk: ChunkRecord) -> bool:
        return chunk.state is ChunkState.PLANNED or not (
            chunk.staged_path and Path(chunk.staged_path).is_dir()
        )

    def _done(self, chunk: ChunkRecord) -> bool:
        return is_done(chunk, self.doc_plans[chunk.doc_type], self.max_bytes)

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
        ahead = self._ahead  # adopted: the run reads on the snapshot its first chunks were read on
        opened: contextlib.AbstractContextManager[Snapshot] = (
            self.project.source.snapshot()
            if ahead is None
            else contextlib.nullcontext(ahead.snapshot)
        )
        with opened as snapshot:
            if not run.snapshot:
                with self.ledger.together():
                    self.ledger.update_run(run.run_id, snapshot=snapshot.marker)
                    if self.capture is not None:
                        position = snapshot.capture_position(self.capture)
                        self.ledger.set_position(
                            self.service.name, run_id=run.run_id, position=position
                        )
            else:
                self._say_if_mixed(run, chunks, snapshot.marker)
            self.view = ahead.view if ahead is not None else self._shared_view(snapshot)
            try:
                yield snapshot
            finally:
                self.view = None
                self.close_read_ahead()  # its snapshot with it

    def _record_digests(
        self, run: RunRecord, snapshot: Snapshot, chunks: list[ChunkRecord]
    ) -> None:
        """Watermark capture: the digests the first delta compares with, read under the run's
        snapshot before any chunk is (`migrate.watermark`); only for a run whose position the
        capture recorded (another is never caught up by delta)."""
        if not isinstance(self.capture, WatermarkCapture):
            return
        position = self.ledger.position(self.service.name)
        if position is None or position.run_id != run.run_id:
            return
        specs = narrowed(self.plan.doc_types, self.capture.plan, self.project.source.tables)
        digests = Digests(snapshot, self.ledger, run.run_id, self.doc_plans, specs)
        if digests.record_baseline(chunks):
            self.emit(Note(self.service.name, "recorded the watermark digests delta starts from"))

    def _say_if_mixed(self, run: RunRecord, chunks: list[ChunkRecord], marker: str) -> None:
        """A resumed run reads the chunks it still has to read under a new snapshot: say so (and
        record it) when it keeps chunks read under an earlier one, as it then holds rows read at
        more than one point in time."""
        earlier = Counter(
            c.snapshot
            for c in chunks
            if c.snapshot and c.snapshot != marker and (self._done(c) or not self._needs_extract(c))
        )
        if not earlier:
            return
        kept = sum(earlier.values())
        self.emit(
            Note(
                self.service.name,
                f"run {run.run_id} continues under a new snapshot of the source ({marker}); "
                f"{kept} chunk{'s' if kept != 1 else ''} keep the rows read under "
                f"{', '.join(sorted(earlier))} (`migrate status` shows the run's snapshots)",
            )
        )
        self.ledger.record_audit(
            actor=actor(),
            service=self.service.name,
            action="run.new_snapshot",
            detail={"run_id": run.run_id, "snapshot": marker, "earlier": dict(earlier)},
        )

    def _shared_view(self, snapshot: Snapshot) -> SharedView | None:
        """The snapshot as the executor's workers can read under it, or None: this process then
        reads every chunk and hands the workers its rows."""
        specs = [d.extract for d in self.plan.doc_types]
        view = share_view(self.project.source, snapshot, specs)
        if view is None or self.executor.shares(view):
            return view
        if self.executor.remote:
            self.emit(
                Note(
                    self.service.name,
                    f"the workers of {self.executor.name} cannot join this source's snapshot "
                    "from their hosts: this host reads every chunk and sends its rows to them",
                )
            )
        return None

    def _plan(self, run: RunRecord, snapshot: Snapshot | None) -> list[ChunkRecord]:
        chunks: list[ChunkRecord] = []
        existing = {c.doc_type for c in self.ledger.chunks(run.run_id)}
        for doc in self.plan.doc_types:
            if doc.name not in existing:
                assert snapshot is not None  # _snapshot_if_needed opened one for this
                if self._ahead is not None:
                    ranges = self._ahead.ranges[doc.name]
                else:
                    ranges = snapshot.plan_chunks(doc.extract, self.project.config.run.chunk_size)
                rows = [(r.index, *r.bounds_json()) for r in ranges]
                self.ledger.plan_chunks(run.run_id, doc.name, doc.extract.fingerprint(), rows)
            chunks.extend(self.ledger.chunks(run.run_id, doc.name))
        return chunks

    # -- reading ahead, while the service before this one drains ---------------------------------

    def read_ahead(self) -> None:
        """Plan this service's new run on a snapshot of its own and hand its first chunks to the
        workers, recording nothing. Only for a run that will start afresh and whose workers read
        their own chunks. A failure here is left to the service's own turn, which meets it again
        where it reports failures (and marks the run failed)."""
        if not self.executor.reads_ahead or self._ahead is not None or not self._starts_afresh():
            return
        stack = ExitStack()
        try:
            snapshot = stack.enter_context(self.project.source.snapshot())
            view = self._shared_view(snapshot)
            if view is None:  # the main thread would read the chunks: no help to the workers
                stack.close()
                return
            size = self.project.config.run.chunk_size
            ranges = {d.name: snapshot.plan_chunks(d.extract, size) for d in self.plan.doc_types}
            ahead = _ReadAhead(new_run_id(), stack, snapshot, view, ranges)
        except Exception:
            stack.close()
            return
        self._ahead = ahead
        run_dir = self._run_dir(ahead.run_id)
        listed = ((doc, r) for doc, found in ranges.items() for r in found)
        try:
            for doc_type, chunk in itertools.islice(listed, self.in_flight_limit):
                lo, hi = chunk.bounds_json()
                directory = self._staging_dir(doc_type, chunk.index, run_dir)
                read = ToRead(directory, ChunkRead(view, chunk.index, lo, hi))
                task = self._task(doc_type, chunk.index, read)
                outcome = self.executor.submit(transform_chunk, task)
                ahead.chunks[(doc_type, chunk.index)] = ((lo, hi), task, outcome)
        except Exception:  # a pool that broke: this service's own turn meets it too
            self.close_read_ahead()

    def _adopt(self, chunk: ChunkRecord) -> tuple[TransformTask, Future[TransformOutput]] | None:
        """The transform read ahead for this chunk of the run, if any."""
        if self._ahead is None or chunk.state is not ChunkState.PLANNED:
            return None
        found = self._ahead.chunks.pop((chunk.doc_type, chunk.index), None)
        if found is None:
            return None
        bounds, task, outcome = found
        if bounds != (chunk.lo, chunk.hi):  # planned otherwise (not expected): read it again,
            if not outcome.cancel():  # once the worker is done with its staging folder
                wait([outcome])
            return None
        return task, outcome

    def close_read_ahead(self) -> None:
        """Release what was read ahead: its snapshot, and (unless the run started) its chunks,
        waiting for those under way before removing their staged files."""
        ahead, self._ahead = self._ahead, None
        if ahead is None:
            return
        outcomes = [outcome for _bounds, _task, outcome in ahead.chunks.values()]
        wait([outcome for outcome in outcomes if not outcome.cancel()])
        ahead.stack.close()
        if not ahead.adopted:
            shutil.rmtree(self._run_dir(ahead.run_id), ignore_errors=True)

    # -- the chunk loop -----------------------------------------------------------------------
    #
    # This thread extracts chunks; the executor's workers stage and transform them (and load
    # them, where they load); one loader thread records the built ones in the ledger and writes
    # them to the target, in chunk order. Chunks in transform and chunks handed to the loader
    # are both bounded, so a slow target holds up the extract (back-pressure) instead of
    # filling memory.

    def _process(
        self,
        run: RunRecord,
        todo: list[ChunkRecord],
        snapshot: Snapshot | None,
        rejects_before: int,
    ) -> None:
        self.rejects = rejects_before
        self.target = self.project.target  # opened here, not first in the loader thread
        if self.rejects > self.max_rejects:  # stopped for them before: still stopped
            raise self._too_many_rejects(None)
        self._loaded_before = self._earlier_run_wrote(run)
        self.context = LoadContext(
            self.service.name,
            run.run_id,
            str(self.run_dir),
            self.max_bytes,
            loaded_before=self._loaded_before,
        )
        self.loader = ChunkLoader(
            self.ledger,
            self.target,
            self.context,
            self.doc_plans,
            shared=self.executor.remote,
        )
        pending = deque(todo)
        transforming: deque[_Transforming] = deque()
        loading: deque[_Loading] = deque()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="migrate-load") as loader:
            try:
                while True:
                    while loading and loading[0].future.done():
                        self._finish_load(loading.popleft())
                    for item in [item for item in transforming if item.loaded()]:
                        transforming.remove(item)  # loaded by its worker: counted as it comes
                        self._finish_load(self._start_load(run, item, loader))
                    while transforming and transforming[0].done() and len(loading) < LOAD_QUEUE:
                        handed = self._start_load(run, transforming.popleft(), loader)
                        loading.append(handed)
                        if self.rejects > self.max_rejects:
                            while loading:  # chunks handed to the loader stay loaded
                                self._finish_load(loading.popleft())
                            raise self._too_many_rejects(handed.chunk)
                    if pending and len(transforming) < self.in_flight_limit:
                        transforming.append(self._submit(run, pending.popleft(), snapshot))
                        continue
                    if not pending and self.on_drain is not None:
                        drained, self.on_drain = self.on_drain, None
                        drained()  # the next service may read ahead
                    if not transforming and not loading:
                        return
                    # Sleep until the oldest load or a transform under way ends: there is room
                    # for neither another chunk nor a load.
                    heads: list[Future[Any]] = [loading[0].future] if loading else []
                    heads += [item.outcome for item in transforming if not item.done()]
                    wait(heads, return_when=FIRST_COMPLETED)
            finally:
                for item in transforming:
                    item.outcome.cancel()
                for handed in loading:
                    handed.future.cancel()  # a write under way ends; the loader then stops

    def _submit(
        self, run: RunRecord, chunk: ChunkRecord, snapshot: Snapshot | None
    ) -> _Transforming:
        """Extract the chunk when it has no staged files, and send it to be (staged and)
        transformed (and loaded, where the executor's workers load)."""
        source: StagedChunk | Extracted | ToRead
        adopted = self._adopt(chunk)
        if adopted is not None and snapshot is not None:  # read ahead, under this snapshot
            here = partial(self._transform_here, chunk, snapshot)
            task, built = adopted
            outcome = cast(Future[Outcome], built)  # built, never loaded: it was read ahead
            return _Transforming(chunk, snapshot.marker, task, outcome, here)
        if self._needs_extract(chunk):
            if snapshot is None:
                raise StagingError(
                    f"chunk {chunk.chunk_id} has no staged files and no snapshot is open"
                )
            if self.view is not None:  # the worker reads it, under this snapshot
                read = ChunkRead(self.view, chunk.index, chunk.lo, chunk.hi)
                source = ToRead(self._staging_dir(chunk.doc_type, chunk.index), read)
            else:
                source = self._extract_here(chunk, snapshot)
        else:
            assert chunk.staged_path is not None and chunk.staged_checksum is not None
            source = StagedChunk(chunk.staged_path, dict(chunk.rows), chunk.staged_checksum)
        task = self._task(chunk.doc_type, chunk.index, source)
        marker = snapshot.marker if not isinstance(source, StagedChunk) and snapshot else None
        job = ChunkJob(task, chunk, marker, self.context, self.project.config, self.lease.holder)
        fallback = None
        if isinstance(source, ToRead) and snapshot is not None:
            fallback = partial(self._transform_here, chunk, snapshot)
        return _Transforming(chunk, marker, task, self.executor.chunk(job), fallback)

    def _transform_here(self, chunk: ChunkRecord, snapshot: Snapshot) -> TransformOutput:
        return transform_chunk(
            self._task(chunk.doc_type, chunk.index, self._extract_here(chunk, snapshot))
        )

    def _run_dir(self, run_id: str) -> Path:
        return self.project.config.work_dir / self.service.name / run_id

    def _staging_dir(self, doc_type: str, index: int, run_dir: Path | None = None) -> str:
        folder = self.run_dir if run_dir is None else run_dir
        return str(folder / "staged" / doc_type / f"{index:05d}")

    def _extract_here(self, chunk: ChunkRecord, snapshot: Snapshot) -> Extracted:
        """The chunk's rows read on the snapshot's own connection, to be staged."""
        doc = self.doc_plans[chunk.doc_type]
        index = ChunkRange.from_bounds_json(chunk.index, chunk.lo, chunk.hi)
        return Extracted(
            self._staging_dir(chunk.doc_type, chunk.index), snapshot.extract(doc.extract, index)
        )

    def _task(
        self, doc_type: str, index: int, source: StagedChunk | Extracted | ToRead
    ) -> TransformTask:
        collided = None
        if self.loader is not None:
            collided = self.loader.register.known(f"{doc_type}:{index:05d}")
        return TransformTask(
            str(self.service.mapping),
            self.project.config.target.bucket_type,
            self.plan.fingerprint,
            self.schema,
            doc_type,
            index,
            self.project.config.run.max_document_bytes,
            source,
            prepare=self.project.target.preparer(),
            collided=collided,
        )

    @staticmethod
    def _output(item: _Transforming) -> Outcome:
        """The worker's outcome; a chunk the worker could not read (`ViewBusy`) is read on the
        snapshot's connection and transformed here."""
        return settle(item.outcome, item.fallback)

    def _start_load(
        self, run: RunRecord, item: _Transforming, loader: ThreadPoolExecutor
    ) -> _Loading:
        """Hand a transformed chunk to the loader thread (which also records it, so the ledger's
        commits never hold up the extract); a chunk its worker loaded is handed over done."""
        outcome = self._output(item)
        if isinstance(outcome, ChunkLoaded):
            done: Future[ChunkLoaded] = Future()
            done.set_result(outcome)
            return _Loading(item.chunk, 0, done)
        self.rejects += len(outcome.rejects)
        future = loader.submit(self._record_and_load, item, outcome)
        return _Loading(item.chunk, len(outcome.rejects), future)

    def _record_and_load(self, item: _Transforming, output: TransformOutput) -> ChunkLoaded:
        """In the loader thread, in chunk order (see `ChunkLoader.load`).

        Once a chunk's load has failed, the chunks queued behind it are not loaded: the loader
        thread would otherwise start the next one before the main thread sees the failure."""
        if self._load_failed.is_set():
            raise _LoadStopped(item.chunk.chunk_id)
        try:
            self.lease.check()
            assert self.loader is not None
            loaded, _output = self.loader.load(item.chunk, item.snapshot, output, item.task)
            return loaded
        except BaseException:
            self._load_failed.set()
            raise

    def _finish_load(self, handed: _Loading) -> None:
        loaded = handed.future.result()
        self.rejects += loaded.rejects - handed.counted + loaded.withdrawn
        self.documents += loaded.documents
        self.written += loaded.written
        self.unchanged += loaded.unchanged
        self.emit(
            ChunkFinished(
                self.service.name,
                handed.chunk.chunk_id,
                loaded.documents,
                loaded.written,
                loaded.unchanged,
                loaded.rejects,
            )
        )
        if self.rejects > self.max_rejects and not handed.counted:
            raise self._too_many_rejects(handed.chunk)  # found by a worker's load

    def _too_many_rejects(self, chunk: ChunkRecord | None) -> RejectLimitError:
        where = f"stopped after chunk {chunk.chunk_id}" if chunk else "nothing more was loaded"
        rows = "row" if self.rejects == 1 else "rows"
        return RejectLimitError(
            f"{self.service.name}: {self.rejects} {rows} rejected, more than [run] max_rejects "
            f"= {self.max_rejects}; {where}",
            hint=f"read {self.run_dir / 'rejects.jsonl'}, fix the mapping or the data, "
            "or raise max_rejects in migrate.toml; loaded chunks stay loaded",
        )

    # -- reject files ---------------------------------------------------------------------------

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
