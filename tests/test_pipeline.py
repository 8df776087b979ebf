"""The pipeline's hand-offs on a real demo project: rows staged and transformed in one step, the
loader thread (in chunk order, bounded, so a slow target holds up the extract), failures mid-load.
"""

from __future__ import annotations

import contextlib
import pickle
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from support import Invoke, WaitingWriter, share_then_block

from migrate.document import Document
from migrate.errors import SourceError, TargetError
from migrate.ledger import ChunkState, RunStatus
from migrate.pipeline import LOAD_QUEUE, _ServiceRun, run_services
from migrate.processes import worker_pool
from migrate.project import Project
from migrate.source import Snapshot, read_staged
from migrate.source.shared import share_view
from migrate.target.base import WriteStats
from migrate.target.chunks import CHUNK_INDEX
from migrate.target.local_batch import PreparedDocuments
from migrate.transform import Extracted, TransformOutput, TransformTask, transform_chunk


@pytest.fixture
def project(demo_project: Path) -> Iterator[Project]:
    opened = Project.load(demo_project / "migrate.toml")
    yield opened
    opened.close()


class ThrottledTarget:
    """The project's embedded target behind a slow, observable write: each call records the
    chunk it writes and how many chunks are staged on disk at that moment; `fail_at` makes that
    call (0-based) fail as a target that went away would, once `fail_when` is set."""

    def __init__(
        self,
        inner: Any,
        staged: Path,
        *,
        pause: float,
        fail_at: int = -1,
        fail_when: threading.Event | None = None,
    ) -> None:
        self.inner = inner
        self.staged = staged
        self.pause = pause
        self.fail_at = fail_at
        self.fail_when = fail_when
        self.calls: list[tuple[str, int, str]] = []  # chunk, chunks staged, thread
        self.first_loads: dict[str, bool] = {}  # chunk: the write's first_load
        self.kinds: list[type] = []  # what each write was handed
        self.lock = threading.Lock()

    def write(
        self, documents: Sequence[Document], *, meta: Mapping[str, str], first_load: bool = False
    ) -> WriteStats:
        with self.lock:
            staged = len(list(self.staged.glob("*/staged/*/[0-9]*")))
            self.calls.append((meta["migrate-chunk"], staged, threading.current_thread().name))
            self.first_loads[meta["migrate-chunk"]] = first_load
            self.kinds.append(type(documents))
            if len(self.calls) - 1 == self.fail_at:
                assert self.fail_when is None or self.fail_when.wait(timeout=60)
                raise TargetError("the target went away (injected)")
        time.sleep(self.pause)
        stats: WriteStats = self.inner.write(documents, meta=meta, first_load=first_load)
        return stats

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _throttle(project: Project, service: str, **options: Any) -> ThrottledTarget:
    throttled = ThrottledTarget(project.target, project.config.work_dir / service, **options)
    project._target = throttled  # type: ignore[assignment]
    return throttled


def test_a_chunk_built_from_fresh_rows_equals_one_built_from_its_staged_files(
    project: Project, tmp_path: Path
) -> None:
    service = project.config.service("pds")
    plan = project.plan(service)
    doc = plan.doc_types[0]
    with project.source.snapshot() as snapshot:
        chunk = snapshot.plan_chunks(doc.extract, 200)[1]
        tables = snapshot.extract(doc.extract, chunk)

    def task(source: Any) -> TransformTask:
        return TransformTask(
            str(service.mapping),
            project.config.target.bucket_type,
            plan.fingerprint,
            project.schema(),
            doc.name,
            chunk.index,
            project.config.run.max_document_bytes,
            source,
        )

    fresh = transform_chunk(task(Extracted(str(tmp_path / "chunk"), tables)))
    read_back = read_staged(Path(fresh.staged.path), fresh.staged)
    assert list(read_back) == list(tables)
    for node, table in tables.items():
        assert read_back[node].schema == table.schema and read_back[node].equals(table)

    resumed = transform_chunk(task(fresh.staged))
    assert resumed == fresh
    assert len(fresh.documents) == 200
    assert all(
        dict(d.indexes)[CHUNK_INDEX] == (f"{chunk.index:08d}:{d.checksum}",)
        for d in fresh.documents
    )


def test_transform_output_crosses_processes_unchanged(project: Project, tmp_path: Path) -> None:
    run_services(project, ["ods"], workers=1)
    chunk = project.ledger.chunks(project.ledger.latest_run("ods").run_id)[0]  # type: ignore[union-attr]
    service = project.config.service("ods")
    plan = project.plan(service)
    from migrate.source import StagedChunk

    output = transform_chunk(
        TransformTask(
            str(service.mapping),
            project.config.target.bucket_type,
            plan.fingerprint,
            project.schema(),
            chunk.doc_type,
            chunk.index,
            project.config.run.max_document_bytes,
            StagedChunk(chunk.staged_path or "", dict(chunk.rows), chunk.staged_checksum or ""),
        )
    )
    copy = pickle.loads(pickle.dumps(output))
    assert isinstance(copy, TransformOutput) and copy == output
    assert [type(d) for d in copy.documents] == [Document] * len(output.documents)
    assert copy.checksum == chunk.doc_checksum


def test_loads_run_in_one_loader_thread_in_chunk_order(project: Project) -> None:
    throttled = _throttle(project, "eps", pause=0.0)
    [report] = run_services(project, ["eps"], workers=1)
    chunks = project.ledger.chunks(report.run_id)
    assert [call[0] for call in throttled.calls] == [c.chunk_id for c in chunks]
    assert {call[2] for call in throttled.calls} != {threading.current_thread().name}
    assert len({call[2] for call in throttled.calls}) == 1
    assert {c.state for c in chunks} == {ChunkState.LOADED}
    assert report.documents == sum(c.documents or 0 for c in chunks) > 0


@pytest.mark.parametrize("workers", [1, 2])
def test_the_targets_own_step_is_done_where_the_documents_are_built(
    project: Project, workers: int
) -> None:
    """The embedded target's per-document step (`Target.preparer`) runs in the worker that built
    the chunk, or inline without workers: the loader thread is handed batches laid out already."""
    throttled = _throttle(project, "eps", pause=0.0)
    [report] = run_services(project, ["eps"], workers=workers)
    assert len(throttled.kinds) == report.chunks > 1
    assert set(throttled.kinds) == {PreparedDocuments}
    assert report.verification is not None and report.verification.equal


@pytest.mark.parametrize("workers", [1, 2])
def test_a_slow_target_holds_up_the_extract(project: Project, workers: int) -> None:
    """However slow the target, chunks staged ahead of the load stay within the bounds of the
    two hand-offs (transforms in flight, chunks handed to the loader)."""
    throttled = _throttle(project, "eps", pause=0.05)
    [report] = run_services(project, ["eps"], workers=workers)
    total = len(project.ledger.chunks(report.run_id))
    in_flight = max(2, workers * 2)
    assert total > in_flight + LOAD_QUEUE + 2, "the demo needs more chunks than the bounds"
    for written, (_, staged, _) in enumerate(throttled.calls):
        assert staged <= written + in_flight + LOAD_QUEUE, throttled.calls
    assert report.status is RunStatus.COMPLETE


def test_a_load_that_fails_stops_the_run_and_a_rerun_finishes_it(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The failing write ends only once the chunk after it waits in the loader's queue: the
    loader must not go on to load it."""
    handed: list[str] = []
    next_one_queued = threading.Event()
    start_load = _ServiceRun._start_load

    def start_and_count(self: _ServiceRun, *args: Any) -> Any:
        loading = start_load(self, *args)
        handed.append(loading.chunk.chunk_id)
        if len(handed) > 4:
            next_one_queued.set()
        return loading

    monkeypatch.setattr(_ServiceRun, "_start_load", start_and_count)
    throttled = _throttle(project, "eps", pause=0.0, fail_at=3, fail_when=next_one_queued)
    with pytest.raises(TargetError, match="went away"):
        run_services(project, ["eps"], workers=1)
    run = project.ledger.latest_run("eps")
    assert run is not None and run.status is RunStatus.FAILED
    chunks = project.ledger.chunks(run.run_id)
    loaded = [c.chunk_id for c in chunks if c.state is ChunkState.LOADED]
    assert loaded == [call[0] for call in throttled.calls[:3]]
    assert len(handed) > 4 and len(throttled.calls) == 4, "nothing written after the failure"

    project._target = throttled.inner
    [report] = run_services(project, ["eps"], workers=1)
    assert report.run_id == run.run_id and report.status is RunStatus.COMPLETE
    assert report.verification is not None and report.verification.outcome == "equal"
    objects = sum(1 for _ in project.target.iter_bucket("default", "prescriptions"))
    assert objects == report.documents


def test_only_chunks_the_ledger_never_saw_written_are_first_loads(project: Project) -> None:
    """A chunk is a first load when it had not reached TRANSFORMED (recorded right before its
    write) as its run began or resumed, and no earlier run of the service wrote anything."""
    throttled = _throttle(project, "eps", pause=0.0, fail_at=3)
    with pytest.raises(TargetError, match="went away"):
        run_services(project, ["eps"], workers=1)
    assert list(throttled.first_loads.values()) == [True] * 4
    failed = throttled.calls[3][0]  # its write began: it is TRANSFORMED in the ledger

    throttled.first_loads.clear()
    throttled.fail_at = -1
    run_services(project, ["eps"], workers=1)
    assert throttled.first_loads[failed] is False
    others = [first for chunk, first in throttled.first_loads.items() if chunk != failed]
    assert others and all(others)  # the resumed run's chunks that no write had reached

    throttled.first_loads.clear()
    run_services(project, ["eps"], workers=1, fresh=True)  # a new run: the keys were loaded
    assert throttled.first_loads and not any(throttled.first_loads.values())


def _not_here(*_: object) -> None:
    raise AssertionError("the main thread read a chunk the workers should have read")


def _staged_and_loaded(project: Project, service: str) -> list[tuple[Any, ...]]:
    (run,) = [r for r in [project.ledger.latest_run(service)] if r is not None]
    return [
        (c.chunk_id, c.state, dict(c.rows), c.staged_checksum, c.documents, c.doc_checksum)
        for c in project.ledger.chunks(run.run_id)
    ]


def test_workers_that_read_their_own_chunks_stage_what_the_main_thread_would(
    demo_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a pool, workers read their chunks under the run's shared snapshot; without one, the
    main thread reads them. The staged files and the documents are the same, byte for byte."""
    config = demo_project / "migrate.toml"
    found = {}
    for workers in (2, 1):
        project = Project.load(config)
        try:
            with monkeypatch.context() as patch:
                if workers > 1:  # only this process is patched: the workers read as they do
                    patch.setattr(Snapshot, "extract", _not_here)
                [report] = run_services(project, ["pds"], workers=workers, fresh=True)
            assert report.status is RunStatus.COMPLETE and report.chunks > 4
            assert report.verification is not None and report.verification.equal
            found[workers] = _staged_and_loaded(project, "pds")
        finally:
            project.close()
    assert found[2] == found[1]
    assert all(state is ChunkState.LOADED for _, state, *_ in found[2])


def test_chunks_a_worker_cannot_read_are_read_by_the_snapshot(
    demo_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SQLite writer waiting to commit keeps the workers out (ViewBusy): the main thread reads
    those chunks on the snapshot's connection, and the run stages what it would have."""
    config = demo_project / "migrate.toml"
    project = Project.load(config)
    try:
        run_services(project, ["pds"], workers=1)
        expected = _staged_and_loaded(project, "pds")
    finally:
        project.close()
    writers: list[WaitingWriter] = []
    blocking = share_then_block(demo_project / "legacy.db", writers)
    monkeypatch.setattr("migrate.pipeline.share_view", blocking)
    project = Project.load(config)
    try:
        [report] = run_services(project, ["pds"], workers=2, fresh=True)
        assert report.status is RunStatus.COMPLETE and report.chunks > 4
        assert _staged_and_loaded(project, "pds") == expected
    finally:
        project.close()
    (writer,) = writers
    writer.finish()  # it committed once the run's snapshot ended


class _Recorded:
    """A run's pool submissions and events on one timeline: ("submit", service, chunk) and
    ("event", type name, service)."""

    def __init__(self, project: Project) -> None:
        self.timeline: list[tuple[str, str, str]] = []
        self.services = {str(s.mapping): s.name for s in project.config.services.values()}

    @contextlib.contextmanager
    def transformers(self, workers: int) -> Iterator[Any]:
        pool = worker_pool(workers)
        submit = pool.submit

        def recording(fn: Any, task: TransformTask) -> Any:
            service = self.services[task.mapping_path]
            self.timeline.append(("submit", service, f"{task.doc_type}:{task.chunk_index:05d}"))
            return submit(fn, task)

        pool.submit = recording  # type: ignore[method-assign,assignment]
        try:
            yield pool
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def event(self, event: object) -> None:
        self.timeline.append(("event", type(event).__name__, getattr(event, "service", "")))

    def submitted(self, service: str) -> list[str]:
        return [chunk for kind, name, chunk in self.timeline if (kind, name) == ("submit", service)]

    def position(self, entry: tuple[str, str, str]) -> int:
        return self.timeline.index(entry)

    def first_submit(self, service: str) -> int:
        return next(
            i
            for i, (kind, name, _) in enumerate(self.timeline)
            if (kind, name) == ("submit", service)
        )


def _recorded(project: Project, monkeypatch: pytest.MonkeyPatch) -> _Recorded:
    recorded = _Recorded(project)
    monkeypatch.setattr("migrate.executor.local.transformers", recorded.transformers)
    return recorded


def _staged_files(project: Project, service: str) -> list[Path]:
    return sorted((project.config.work_dir / service).glob("*/staged/*/*"))


def test_the_next_service_reads_ahead_while_the_one_before_drains(
    demo_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once pds has handed out its last chunk, scr's first chunks go to the workers before pds
    has finished; each chunk is still transformed once, under scr's own run, and the result is
    what a run without workers stages and loads."""
    config = demo_project / "migrate.toml"
    project = Project.load(config)
    try:
        recorded = _recorded(project, monkeypatch)
        reports = run_services(project, ["pds", "scr"], workers=2, on_event=recorded.event)
        assert [r.status for r in reports] == [RunStatus.COMPLETE] * 2
        assert all(r.verification is not None and r.verification.equal for r in reports)
        pds_done = recorded.position(("event", "ServiceFinished", "pds"))
        assert recorded.first_submit("scr") < pds_done, recorded.timeline
        assert recorded.position(("event", "ServiceStarted", "scr")) > pds_done
        scr_chunks = [c.chunk_id for c in project.ledger.chunks(reports[1].run_id)]
        assert recorded.submitted("scr") == scr_chunks  # read ahead or not, once each, in order
        found = {s: _staged_and_loaded(project, s) for s in ("pds", "scr")}
        assert all(c[1] is ChunkState.LOADED for s in found for c in found[s])
        assert all(
            str(p).startswith(str(project.config.work_dir / "scr" / reports[1].run_id))
            for p in _staged_files(project, "scr")
        )
    finally:
        project.close()
    project = Project.load(config)
    try:
        run_services(project, ["pds", "scr"], workers=1, fresh=True)
        assert {s: _staged_and_loaded(project, s) for s in ("pds", "scr")} == found
    finally:
        project.close()


def test_what_was_read_ahead_is_discarded_when_the_service_before_fails(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pds fails on its last load after scr has read ahead: scr has no run and no staged files,
    and a re-run finishes pds and migrates scr."""
    recorded = _recorded(project, monkeypatch)
    with project.source.snapshot() as snapshot:
        doc = project.plan(project.config.service("pds")).doc_types[0]
        pds_chunks = len(snapshot.plan_chunks(doc.extract, project.config.run.chunk_size))
    throttled = _throttle(project, "pds", pause=0.0, fail_at=pds_chunks - 1)
    with pytest.raises(TargetError, match="went away"):
        run_services(project, ["pds", "scr"], workers=2, on_event=recorded.event)
    assert recorded.submitted("scr"), "scr did not read ahead: the test proves nothing"
    pds = project.ledger.latest_run("pds")
    assert pds is not None and pds.status is RunStatus.FAILED
    assert project.ledger.latest_run("scr") is None
    assert _staged_files(project, "scr") == []
    assert not any(name == "scr" for kind, _, name in recorded.timeline if kind == "event")

    project._target = throttled.inner
    reports = run_services(project, ["pds", "scr"], workers=2)
    assert reports[0].run_id == pds.run_id
    assert [r.status for r in reports] == [RunStatus.COMPLETE] * 2
    assert all(r.verification is not None and r.verification.equal for r in reports)


def test_a_read_ahead_that_fails_leaves_the_service_to_its_own_turn(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """scr cannot read ahead (its snapshot cannot be shared the first time it asks): pds is not
    disturbed, and scr runs at its turn as it would have."""
    recorded = _recorded(project, monkeypatch)
    calls: list[str] = []

    def once_broken(source: Any, snapshot: Snapshot, specs: Any) -> Any:
        calls.append("share")
        if len(calls) == 2:  # scr reading ahead
            raise SourceError("the source went away for a moment (injected)")
        return share_view(source, snapshot, specs)

    monkeypatch.setattr("migrate.pipeline.share_view", once_broken)
    reports = run_services(project, ["pds", "scr"], workers=2, on_event=recorded.event)
    assert len(calls) == 3
    assert [r.status for r in reports] == [RunStatus.COMPLETE] * 2
    assert recorded.first_submit("scr") > recorded.position(("event", "ServiceFinished", "pds"))
    assert recorded.submitted("scr") == [
        c.chunk_id for c in project.ledger.chunks(reports[1].run_id)
    ]
    runs = [p.name for p in (project.config.work_dir / "scr").iterdir() if p.name != "reconcile"]
    assert runs == [reports[1].run_id]


def test_a_run_into_another_target_starts_afresh(demo_project: Path, migrate_cli: Invoke) -> None:
    """Rehearsed on the embedded target, then pointed at another: resuming would load nothing
    there, so the run starts afresh and loads everything."""
    assert migrate_cli("run", "ods").exit_code == 0
    config = demo_project / "migrate.toml"
    config.write_text(config.read_text().replace("target.db", "other-target.db"))
    again = migrate_cli("run", "ods")
    assert again.exit_code == 0, again.output
    assert "loaded another target" in again.output
    dumped = migrate_cli("dump", "ods")
    assert dumped.exit_code == 0 and dumped.stdout.count("\n") > 0


def test_the_first_run_into_another_target_is_a_first_load(demo_project: Path) -> None:
    """After a rehearsal on one embedded target, the run into another writes nothing there that
    an earlier run wrote: its chunks are first loads; a fresh run after it is not."""
    with contextlib.closing(Project.load(demo_project / "migrate.toml")) as rehearsal:
        run_services(rehearsal, ["eps"], workers=1)
    config = demo_project / "migrate.toml"
    config.write_text(config.read_text().replace("target.db", "other-target.db"))
    with contextlib.closing(Project.load(config)) as project:
        throttled = _throttle(project, "eps", pause=0.0)
        [report] = run_services(project, ["eps"], workers=1)
        assert report.status is RunStatus.COMPLETE
        assert throttled.first_loads and all(throttled.first_loads.values())
        throttled.first_loads.clear()
        run_services(project, ["eps"], workers=1, fresh=True)
        assert throttled.first_loads and not any(throttled.first_loads.values())
