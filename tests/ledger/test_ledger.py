"""The ledger against real state databases: transitions, resume, atomicity, audit, concurrency."""

from __future__ import annotations

import json
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

import migrate.ledger
from migrate.errors import EXIT_RUNTIME, LedgerError
from migrate.ledger import SCHEMA_VERSION, ChunkRecord, ChunkState, Ledger, RunStatus, new_run_id

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:
    instance = Ledger(ledger_url)
    yield instance
    instance.close()


def start(ledger: Ledger, service: str = "pds") -> str:
    run = ledger.start_run(service, snapshot="snap-1", mapping_fingerprint="map-1", actor="alice")
    return run.run_id


def plan(ledger: Ledger, run_id: str, count: int = 3, fingerprint: str = "ext-1") -> list[str]:
    ranges = [(i, json.dumps([i * 10]), json.dumps([i * 10 + 10])) for i in range(count)]
    return [c.chunk_id for c in ledger.plan_chunks(run_id, "patient", fingerprint, ranges)]


def extract(ledger: Ledger, run_id: str, chunk_id: str, checksum: str = "s1") -> None:
    ledger.mark_extracted(
        run_id,
        chunk_id,
        rows={"PATIENTS": 10, "PATIENT_ADDRESSES": 17},
        staged_path=f"stage/{chunk_id}.parquet",
        staged_checksum=checksum,
        snapshot="snap-1",
    )


def transform(ledger: Ledger, run_id: str, chunk_id: str, checksum: str = "d1") -> None:
    ledger.mark_transformed(
        run_id,
        chunk_id,
        transform_fingerprint="tf-1",
        documents=9,
        rejects=1,
        doc_checksum=checksum,
    )


def load(ledger: Ledger, run_id: str, chunk_id: str, checksum: str = "d1") -> None:
    ledger.mark_loaded(run_id, chunk_id, documents=9, written=7, unchanged=2, doc_checksum=checksum)


def chunk(ledger: Ledger, run_id: str, chunk_id: str) -> ChunkRecord:
    (found,) = [c for c in ledger.chunks(run_id) if c.chunk_id == chunk_id]
    return found


# Public surface


def test_public_api_is_exactly_all() -> None:
    public = {name for name in dir(migrate.ledger) if not name.startswith("_")}
    modules = {
        "claims",
        "cutover",
        "engine",
        "leases",
        "locks",
        "records",
        "schema",
        "states",
        "store",
        "verifications",
    }
    assert public - modules == set(migrate.ledger.__all__)


# Runs


def test_start_run_records_an_aware_utc_run_with_a_sortable_id(ledger: Ledger) -> None:
    before = datetime.now(UTC)
    run = ledger.start_run("pds", snapshot="snap-1", mapping_fingerprint="map-1", actor="alice")
    after = datetime.now(UTC)
    assert run.status is RunStatus.RUNNING
    assert run.finished_at is None
    stamp, suffix = run.run_id.split("-")
    assert len(suffix) == 6
    assert datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC) <= after
    stored = ledger.get_run(run.run_id)
    assert stored == run
    assert stored.started_at.tzinfo is not None
    assert before - timedelta(seconds=1) <= stored.started_at <= after
    assert stored.started_at.utcoffset() == timedelta(0)


def test_a_run_starts_under_an_id_taken_before_it(ledger: Ledger) -> None:
    """The pipeline takes an id to stage a run's first chunks before the run starts; the run
    then starts under it, and only once."""
    run_id = new_run_id()
    stamp, suffix = run_id.split("-")
    assert len(suffix) == 6 and datetime.strptime(stamp, "%Y%m%dT%H%M%SZ")
    assert new_run_id() != run_id
    run = ledger.start_run("scr", snapshot="", mapping_fingerprint="m", actor="a", run_id=run_id)
    assert run.run_id == run_id and ledger.get_run(run_id) == run
    with pytest.raises(LedgerError):
        ledger.start_run("scr", snapshot="", mapping_fingerprint="m", actor="a", run_id=run_id)
    assert [r.run_id for r in ledger.runs("scr")] == [run_id]


def test_writes_together_commit_as_one(ledger: Ledger) -> None:
    """The loader records a chunk's extract and transform in one transaction: both or neither."""
    run_id = start(ledger)
    first, second = plan(ledger, run_id, count=2)
    with ledger.together():
        extract(ledger, run_id, first)
        transform(ledger, run_id, first)
        with ledger.together():  # nested: the same transaction
            extract(ledger, run_id, second)
    assert chunk(ledger, run_id, first).state is ChunkState.TRANSFORMED
    assert chunk(ledger, run_id, second).state is ChunkState.EXTRACTED
    phases = [c["phase"] for c in ledger.checkpoints(run_id, first)]
    assert phases == ["planned", "extracted", "transformed"]

    with pytest.raises(LedgerError, match="has no chunk"), ledger.together():
        transform(ledger, run_id, second)
        load(ledger, run_id, "patient:00002")  # no such chunk: nothing of the block stays
    assert chunk(ledger, run_id, second).state is ChunkState.EXTRACTED
    assert [c["phase"] for c in ledger.checkpoints(run_id, second)] == ["planned", "extracted"]
    transform(ledger, run_id, second)  # outside the block: a transaction of its own again
    assert chunk(ledger, run_id, second).state is ChunkState.TRANSFORMED


def test_runs_and_latest_run_order_by_start(ledger: Ledger) -> None:
    first = start(ledger, "pds")
    other = start(ledger, "ods")
    second = start(ledger, "pds")
    assert [r.run_id for r in ledger.runs("pds")] == [first, second]
    assert [r.run_id for r in ledger.runs()] == [first, other, second]
    latest = ledger.latest_run("pds")
    assert latest is not None and latest.run_id == second
    assert ledger.latest_run("eps") is None
    assert len({first, other, second}) == 3


def test_get_run_of_an_unknown_id_is_a_ledger_error(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="nope") as info:
        ledger.get_run("nope")
    assert info.value.exit_code == EXIT_RUNTIME


def test_update_and_finish_run(ledger: Ledger) -> None:
    run_id = start(ledger)
    ledger.update_run(run_id, snapshot="snap-2")
    run = ledger.get_run(run_id)
    assert (run.snapshot, run.mapping_fingerprint) == ("snap-2", "map-1")
    ledger.update_run(run_id, mapping_fingerprint="map-2")
    assert ledger.get_run(run_id).mapping_fingerprint == "map-2"
    ledger.finish_run(run_id, RunStatus.FAILED)
    failed = ledger.get_run(run_id)
    assert failed.status is RunStatus.FAILED and failed.finished_at is not None
    ledger.finish_run(run_id, RunStatus.RUNNING)
    reopened = ledger.get_run(run_id)
    assert reopened.status is RunStatus.RUNNING and reopened.finished_at is None
    ledger.finish_run(run_id, RunStatus.COMPLETE)
    assert ledger.get_run(run_id).status is RunStatus.COMPLETE
    phases = [c["phase"] for c in ledger.checkpoints(run_id)]
    assert phases == [
        "run started",
        "run updated",
        "run updated",
        "run failed",
        "run running",
        "run complete",
    ]


def test_updating_or_finishing_an_unknown_run_fails(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="ghost"):
        ledger.update_run("ghost", snapshot="x")
    with pytest.raises(LedgerError, match="ghost"):
        ledger.finish_run("ghost", RunStatus.COMPLETE)


# Planning and resume


def test_plan_chunks_records_planned_chunks_in_order(ledger: Ledger) -> None:
    run_id = start(ledger)
    ranges = [(2, '["c"]', '["d"]'), (0, '["a"]', '["b"]'), (1, '["b"]', '["c"]')]
    planned = ledger.plan_chunks(run_id, "patient", "ext-1", ranges)
    assert [c.chunk_id for c in planned] == ["patient:00000", "patient:00001", "patient:00002"]
    assert [(c.index, c.lo, c.hi) for c in planned] == sorted(ranges)
    assert all(c.state is ChunkState.PLANNED and c.rows == {} for c in planned)
    assert all(c.staged_path is None and c.documents is None for c in planned)
    ledger.plan_chunks(run_id, "organisation", "ext-9", [(0, "[1]", "[2]")])
    assert [c.doc_type for c in ledger.chunks(run_id)] == ["organisation", *["patient"] * 3]
    assert len(ledger.chunks(run_id, "patient")) == 3


def test_planning_again_with_the_same_fingerprint_resumes(ledger: Ledger) -> None:
    run_id = start(ledger)
    first = plan(ledger, run_id)
    extract(ledger, run_id, first[0])
    before = ledger.chunks(run_id)
    again = ledger.plan_chunks(run_id, "patient", "ext-1", [(0, "[0]", "[99]")])
    assert again == before
    assert again[0].state is ChunkState.EXTRACTED


def test_planning_again_with_another_fingerprint_fails(ledger: Ledger) -> None:
    run_id = start(ledger)
    plan(ledger, run_id)
    with pytest.raises(LedgerError, match="new run"):
        plan(ledger, run_id, fingerprint="ext-2")
    assert {c.extract_fingerprint for c in ledger.chunks(run_id)} == {"ext-1"}


def test_plan_rejects_duplicate_indexes_and_unknown_runs(ledger: Ledger) -> None:
    run_id = start(ledger)
    with pytest.raises(LedgerError, match="distinct"):
        ledger.plan_chunks(run_id, "patient", "e", [(0, "[]", "[]"), (0, "[]", "[]")])
    with pytest.raises(LedgerError, match="ghost"):
        ledger.plan_chunks("ghost", "patient", "e", [(0, "[]", "[]")])
    assert ledger.chunks(run_id) == []


# Transitions


def test_every_transition_records_its_evidence(ledger: Ledger) -> None:
    run_id = start(ledger)
    chunk_id = plan(ledger, run_id)[1]
    extract(ledger, run_id, chunk_id)
    extracted = chunk(ledger, run_id, chunk_id)
    assert extracted.state is ChunkState.EXTRACTED
    assert extracted.rows == {"PATIENTS": 10, "PATIENT_ADDRESSES": 17}
    assert (extracted.staged_path, extracted.staged_checksum, extracted.snapshot) == (
        f"stage/{chunk_id}.parquet",
        "s1",
        "snap-1",
    )
    transform(ledger, run_id, chunk_id)
    transformed = chunk(ledger, run_id, chunk_id)
    assert transformed.state is ChunkState.TRANSFORMED
    assert (transformed.documents, transformed.rejects, transformed.doc_checksum) == (9, 1, "d1")
    assert transformed.transform_fingerprint == "tf-1"
    assert transformed.written is None
    load(ledger, run_id, chunk_id)
    loaded = chunk(ledger, run_id, chunk_id)
    assert loaded.state is ChunkState.LOADED
    assert (loaded.written, loaded.unchanged, loaded.documents) == (7, 2, 9)
    assert loaded.staged_checksum == "s1" and loaded.updated_at >= extracted.updated_at
    history = ledger.checkpoints(run_id, chunk_id)
    assert [c["phase"] for c in history] == ["planned", "extracted", "transformed", "loaded"]
    assert history[1]["rows"] == {"PATIENTS": 10, "PATIENT_ADDRESSES": 17}
    assert history[1]["checksum"] == "s1"
    assert (history[2]["documents"], history[2]["rejects"], history[2]["checksum"]) == (9, 1, "d1")
    assert (history[3]["written"], history[3]["unchanged"]) == (7, 2)
    assert all(c["at"].tzinfo is not None for c in history)
    # Other chunks are untouched.
    assert [c.state for c in ledger.chunks(run_id)].count(ChunkState.PLANNED) == 2


def test_transitions_out_of_order_are_refused(ledger: Ledger) -> None:
    run_id = start(ledger)
    chunk_id = plan(ledger, run_id)[0]
    with pytest.raises(LedgerError, match="only planned"):
        transform(ledger, run_id, chunk_id)
    with pytest.raises(LedgerError, match="only planned"):
        load(ledger, run_id, chunk_id)
    extract(ledger, run_id, chunk_id)
    with pytest.raises(LedgerError, match="only extracted"):
        load(ledger, run_id, chunk_id)
    assert chunk(ledger, run_id, chunk_id).state is ChunkState.EXTRACTED
    assert [c["phase"] for c in ledger.checkpoints(run_id, chunk_id)] == ["planned", "extracted"]


def test_marking_an_unknown_chunk_fails(ledger: Ledger) -> None:
    run_id = start(ledger)
    plan(ledger, run_id)
    with pytest.raises(LedgerError, match="no chunk patient:00042"):
        extract(ledger, run_id, "patient:00042")


def test_marking_again_is_allowed_and_recorded(ledger: Ledger) -> None:
    run_id = start(ledger)
    chunk_id = plan(ledger, run_id)[0]
    extract(ledger, run_id, chunk_id)
    transform(ledger, run_id, chunk_id)
    load(ledger, run_id, chunk_id)
    load(ledger, run_id, chunk_id)
    assert chunk(ledger, run_id, chunk_id).state is ChunkState.LOADED
    transform(ledger, run_id, chunk_id, checksum="d2")
    again = chunk(ledger, run_id, chunk_id)
    assert again.state is ChunkState.TRANSFORMED
    assert again.doc_checksum == "d2" and again.written is None and again.unchanged is None
    load(ledger, run_id, chunk_id, checksum="d2")
    extract(ledger, run_id, chunk_id, checksum="s2")
    extracted = chunk(ledger, run_id, chunk_id)
    assert extracted.state is ChunkState.EXTRACTED
    assert extracted.staged_checksum == "s2"
    assert (extracted.documents, extracted.doc_checksum, extracted.written) == (None, None, None)
    phases = [c["phase"] for c in ledger.checkpoints(run_id, chunk_id)]
    assert phases == [
        "planned",
        "extracted",
        "transformed",
        "loaded",
        "loaded",
        "transformed",
        "loaded",
        "extracted",
    ]


def test_load_must_carry_the_transformed_documents(ledger: Ledger) -> None:
    run_id = start(ledger)
    chunk_id = plan(ledger, run_id)[0]
    extract(ledger, run_id, chunk_id)
    transform(ledger, run_id, chunk_id, checksum="d1")
    with pytest.raises(LedgerError, match="doc_checksum"):
        load(ledger, run_id, chunk_id, checksum="other")
    with pytest.raises(LedgerError, match="documents"):
        ledger.mark_loaded(run_id, chunk_id, documents=8, written=8, unchanged=0, doc_checksum="d1")
    assert chunk(ledger, run_id, chunk_id).state is ChunkState.TRANSFORMED


def test_a_failing_mark_leaves_chunk_and_history_unchanged(ledger: Ledger) -> None:
    run_id = start(ledger)
    chunk_id = plan(ledger, run_id)[0]
    extract(ledger, run_id, chunk_id)
    before = chunk(ledger, run_id, chunk_id)
    history = ledger.checkpoints(run_id)
    # The checkpoint insert succeeds inside the transaction, then the chunk's CHECK fails.
    with pytest.raises(LedgerError, match="marking") as info:
        ledger.mark_transformed(
            run_id, chunk_id, transform_fingerprint="tf", documents=-1, rejects=0, doc_checksum="x"
        )
    assert "ck_chunks_counts" in str(info.value)
    assert "UPDATE" not in str(info.value) and "parameters" not in str(info.value)
    assert chunk(ledger, run_id, chunk_id) == before
    assert ledger.checkpoints(run_id) == history


def test_reset_moves_chunks_back_and_clears_later_evidence(ledger: Ledger) -> None:
    run_id = start(ledger)
    ids = plan(ledger, run_id)
    for chunk_id in ids[:2]:
        extract(ledger, run_id, chunk_id)
        transform(ledger, run_id, chunk_id)
        load(ledger, run_id, chunk_id)
    ledger.reset_chunks(run_id, ids[:2], ChunkState.EXTRACTED)
    for chunk_id in ids[:2]:
        reset = chunk(ledger, run_id, chunk_id)
        assert reset.state is ChunkState.EXTRACTED
        assert reset.staged_checksum == "s1" and reset.rows["PATIENTS"] == 10
        assert (reset.documents, reset.doc_checksum, reset.written, reset.unchanged) == (
            None,
            None,
            None,
            None,
        )
        last = ledger.checkpoints(run_id, chunk_id)[-1]
        assert (last["phase"], last["note"]) == ("extracted", "reset from loaded")
    ledger.reset_chunks(run_id, [ids[0]], ChunkState.PLANNED)
    planned = chunk(ledger, run_id, ids[0])
    assert planned.state is ChunkState.PLANNED and planned.rows == {}
    assert planned.staged_path is None and planned.snapshot is None


def test_reset_is_atomic_and_never_moves_forward(ledger: Ledger) -> None:
    run_id = start(ledger)
    ids = plan(ledger, run_id)
    extract(ledger, run_id, ids[0])
    transform(ledger, run_id, ids[0])
    before = ledger.chunks(run_id)
    with pytest.raises(LedgerError, match="only planned"):
        ledger.reset_chunks(run_id, [ids[0], ids[1]], ChunkState.EXTRACTED)
    with pytest.raises(LedgerError, match="no chunk"):
        ledger.reset_chunks(run_id, [ids[0], "patient:09999"], ChunkState.PLANNED)
    assert ledger.chunks(run_id) == before


ACTIONS = st.lists(
    st.sampled_from(["extract", "transform", "load", *(f"reset:{s.value}" for s in ChunkState)]),
    max_size=12,
)
MARKS = {
    "extract": (ChunkState.EXTRACTED, extract),
    "transform": (ChunkState.TRANSFORMED, transform),
    "load": (ChunkState.LOADED, load),
}


def apply(ledger: Ledger, run_id: str, chunk_id: str, action: str) -> ChunkState:
    """Perform one action and return the state it moves the chunk to."""
    if action.startswith("reset:"):
        goal = ChunkState(action.split(":")[1])
        ledger.reset_chunks(run_id, [chunk_id], goal)
        return goal
    goal, step = MARKS[action]
    step(ledger, run_id, chunk_id)
    return goal


def model_allows(state: ChunkState, action: str) -> bool:
    if action.startswith("reset:"):
        return ChunkState(action.split(":")[1]).rank <= state.rank
    order = list(ChunkState)
    return state.rank >= order.index(MARKS[action][0]) - 1


@settings(max_examples=25, deadline=None)
@given(actions=ACTIONS)
def test_transitions_follow_the_phase_order_model(actions: list[str]) -> None:
    """Any sequence of marks and resets agrees with a plain model of the phase order."""
    with tempfile.TemporaryDirectory() as folder:
        ledger = Ledger(f"sqlite:///{folder}/state.db")
        try:
            run_id = start(ledger)
            chunk_id = plan(ledger, run_id, count=1)[0]
            model = ChunkState.PLANNED
            for action in actions:
                if model_allows(model, action):
                    model = apply(ledger, run_id, chunk_id, action)
                else:
                    with pytest.raises(LedgerError):
                        apply(ledger, run_id, chunk_id, action)
                assert chunk(ledger, run_id, chunk_id).state is model
        finally:
            ledger.close()


# Audit


def test_audit_rows_record_who_what_and_evidence(ledger: Ledger) -> None:
    ledger.record_audit(actor="alice", service="pds", action="freeze", detail={"chunks": 3})
    ledger.record_audit(
        actor="bob",
        service=None,
        action="configure",
        detail={"url": "postgresql://spine:hunter22@db/x", "tags": ["a", {"b": 1}]},
    )
    ledger.record_audit(actor="carol", service="ods", action="switch", detail={})
    everything = ledger.audit_log()
    assert [(a["actor"], a["service"], a["action"]) for a in everything] == [
        ("alice", "pds", "freeze"),
        ("bob", None, "configure"),
        ("carol", "ods", "switch"),
    ]
    assert everything[0]["detail"] == {"chunks": 3}
    assert everything[1]["detail"] == {
        "url": "postgresql://spine:***@db/x",
        "tags": ["a", {"b": 1}],
    }
    assert all(a["at"].tzinfo is not None for a in everything)
    assert [a["action"] for a in ledger.audit_log("pds")] == ["freeze"]


def test_audit_detail_must_be_json(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="JSON"):
        ledger.record_audit(actor="a", service="pds", action="x", detail={"when": object()})
    assert ledger.audit_log() == []


# Opening, reopening, durability


def test_reopening_keeps_everything(ledger_url: str) -> None:
    first = Ledger(ledger_url)
    run_id = start(first)
    chunk_id = plan(first, run_id)[0]
    extract(first, run_id, chunk_id)
    first.record_audit(actor="alice", service="pds", action="run", detail={"run_id": run_id})
    snapshot = (first.get_run(run_id), first.chunks(run_id), first.checkpoints(run_id))
    first.close()
    second = Ledger(ledger_url)
    try:
        assert (
            second.get_run(run_id),
            second.chunks(run_id),
            second.checkpoints(run_id),
        ) == snapshot
        assert second.audit_log()[0]["detail"] == {"run_id": run_id}
    finally:
        second.close()


def test_relative_sqlite_url_lives_in_the_project_folder(tmp_path: Path) -> None:
    ledger = Ledger("sqlite:///.migrate/state.db", base_dir=tmp_path)
    try:
        start(ledger)
    finally:
        ledger.close()
    path = tmp_path / ".migrate" / "state.db"
    assert path.is_file()
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert str(path) in ledger.display_url
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        tables = {row[0] for row in raw.execute("SELECT name FROM sqlite_master")}
    assert {"runs", "chunks", "checkpoints", "audit", "schema_version"} <= tables


def test_sqlite_connections_are_durable_and_patient(ledger: Ledger, ledger_url: str) -> None:
    if not ledger_url.startswith("sqlite"):
        pytest.skip("SQLite settings")
    with ledger._engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_a_newer_schema_version_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    Ledger(url).close()
    with sqlite3.connect(tmp_path / "state.db") as raw:
        raw.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(LedgerError, match="version 99"):
        Ledger(url)


def test_a_corrupt_state_file_is_a_ledger_error(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not a database at all" * 200)
    with pytest.raises(LedgerError) as info:
        Ledger(f"sqlite:///{path}")
    assert str(path) in str(info.value)
    assert info.value.exit_code == EXIT_RUNTIME
    assert "move it aside" in str(info.value)


def test_an_unreachable_server_is_a_ledger_error_with_the_password_masked() -> None:
    url = "postgresql+psycopg://spine:s3cret-pw@127.0.0.1:1/state?connect_timeout=2"
    with pytest.raises(LedgerError) as info:
        Ledger(url)
    message = str(info.value)
    assert "s3cret-pw" not in message
    assert "127.0.0.1:1" in message and "***" in message


def test_display_url_masks_the_password() -> None:
    from migrate.ledger.engine import display, resolve_url

    shown = display(resolve_url("postgresql+psycopg://spine:pw-123@db:5432/state", None))
    assert "pw-123" not in shown and shown.startswith("postgresql+psycopg://spine:***@db")


# Concurrency


def test_two_ledgers_on_one_file_interleave_marks(ledger_url: str) -> None:
    one, two = Ledger(ledger_url), Ledger(ledger_url)
    try:
        run_id = start(one)
        ids = plan(one, run_id, count=4)
        assert two.plan_chunks(run_id, "patient", "ext-1", []) == one.chunks(run_id)
        extract(one, run_id, ids[0])
        extract(two, run_id, ids[1])
        transform(two, run_id, ids[0])
        transform(one, run_id, ids[1])
        load(one, run_id, ids[0])
        load(two, run_id, ids[1])
        assert [c.state for c in one.chunks(run_id)] == [
            ChunkState.LOADED,
            ChunkState.LOADED,
            ChunkState.PLANNED,
            ChunkState.PLANNED,
        ]
        assert one.chunks(run_id) == two.chunks(run_id)
        assert len(two.checkpoints(run_id)) == 1 + 4 + 6
    finally:
        one.close()
        two.close()


def test_concurrent_writers_from_threads_all_land(ledger_url: str) -> None:
    setup = Ledger(ledger_url)
    run_id = start(setup)
    ids = plan(setup, run_id, count=16)
    errors: list[BaseException] = []

    def work(chunk_ids: list[str]) -> None:
        worker = Ledger(ledger_url)
        try:
            for chunk_id in chunk_ids:
                extract(worker, run_id, chunk_id)
                transform(worker, run_id, chunk_id)
                load(worker, run_id, chunk_id)
                worker.record_audit(actor="w", service="pds", action="load", detail={})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            worker.close()

    threads = [threading.Thread(target=work, args=(ids[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        assert {c.state for c in setup.chunks(run_id)} == {ChunkState.LOADED}
        assert len(setup.checkpoints(run_id)) == 1 + 16 * 4
        assert len(setup.audit_log("pds")) == 16
    finally:
        setup.close()


def test_schema_tables_exist_via_sqlalchemy(ledger_url: str) -> None:
    Ledger(ledger_url).close()
    engine = sa.create_engine(ledger_url)
    try:
        names = set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"runs", "chunks", "checkpoints", "audit", "schema_version"} <= names
