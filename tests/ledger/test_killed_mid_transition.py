"""The ledger's process SIGKILLed mid-transition (issue 15), on a SQLite file and on PostgreSQL.

A driver process (this file run as a script) walks a run's chunks through the pipeline's ledger
transitions as fast as it can: extract and transform recorded together in one transaction (as
the loader thread records them), then the load, an amendment of some loaded chunks (a collision
withdrawing documents), audit rows, and the run closed. It is SIGKILLed at seeded random moments
(a seeded number of checkpoints ahead, then a seeded delay of up to 20 ms), so most kills fall
inside a transaction or between its statements. After every kill no chunk may show a phase
without its evidence (`support.ledger_evidence_problems`); the driver run again resumes from the
ledger, and the ledger it ends with equals the one an uninterrupted driver writes.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from support import ledger_evidence_problems

CHUNKS = 120
RUN_ID = "20260101T000000Z-feed01"
SEED = 15


def _drive(url: str) -> None:
    """Walk every chunk of RUN_ID to its final state, resuming from what the ledger holds."""
    from migrate.ledger import ChunkState, Ledger, RunStatus

    ledger = Ledger(url)
    try:
        try:
            run = ledger.get_run(RUN_ID)
        except Exception:
            run = ledger.start_run(
                "pds", snapshot="snap", mapping_fingerprint="map", actor="driver", run_id=RUN_ID
            )
        ranges = [(i, json.dumps([i * 10]), json.dumps([i * 10 + 10])) for i in range(CHUNKS)]
        ledger.plan_chunks(run.run_id, "patient", "ext", ranges)
        for chunk in ledger.chunks(run.run_id):
            index = chunk.index
            if chunk.state is ChunkState.PLANNED or chunk.state is ChunkState.EXTRACTED:
                with ledger.together():
                    ledger.mark_extracted(
                        run.run_id,
                        chunk.chunk_id,
                        rows={"PATIENTS": 10 + index % 3, "PATIENT_NAMES": index % 5},
                        staged_path=f"/staged/patient/{index:05d}",
                        staged_checksum=f"s{index:031x}",
                        snapshot="snap",
                    )
                    ledger.mark_transformed(
                        run.run_id,
                        chunk.chunk_id,
                        transform_fingerprint="tf",
                        documents=10,
                        rejects=index % 2,
                        doc_checksum=f"d{index:031x}",
                    )
                chunk = ledger.chunk(run.run_id, chunk.chunk_id)
            if chunk.state is ChunkState.TRANSFORMED:
                ledger.mark_loaded(
                    run.run_id,
                    chunk.chunk_id,
                    documents=chunk.documents or 0,
                    written=chunk.documents or 0,
                    unchanged=0,
                    doc_checksum=chunk.doc_checksum or "",
                )
                if index % 10 == 0:
                    ledger.record_audit(
                        actor="driver", service="pds", action="loaded", detail={"chunk": index}
                    )
            if index % 7 == 3 and chunk.documents == 10:  # a collision withdraws one document
                ledger.amend_documents(
                    run.run_id,
                    chunk.chunk_id,
                    documents=9,
                    rejects=(chunk.rejects or 0) + 1,
                    doc_checksum=f"a{index:031x}",
                    note="a key collision withdrew one document",
                )
        ledger.finish_run(run.run_id, RunStatus.COMPLETE)
    finally:
        ledger.close()


# The driver imports this file, whose imports need the tests folder on the path.
_ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}


def _start(url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, __file__, url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=_ENV,
    )


def _count(engine: sa.Engine, sql: str) -> int:
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(sql)).scalar_one())
    except sa.exc.DBAPIError:  # not created yet, or locked past the timeout
        return 0


def _final(engine: sa.Engine) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """The ledger's end state: every run and chunk, but not when they were written."""
    with engine.connect() as conn:
        runs = conn.execute(sa.text("SELECT run_id, service, status, snapshot FROM runs"))
        chunks = conn.execute(
            sa.text(
                "SELECT chunk_id, state, rows, staged_path, staged_checksum, snapshot, "
                "transform_fingerprint, documents, rejects, doc_checksum, written, unchanged "
                "FROM chunks ORDER BY chunk_id"
            )
        )
        return [tuple(r) for r in runs], [tuple(r) for r in chunks]


def _kill_and_resume(url: str, reference: str, kills: int) -> None:
    engine = sa.create_engine(url, connect_args=_fast(url))
    rng = random.Random(f"{SEED}-{sa.make_url(url).get_backend_name()}")
    landed = attempts = 0
    try:
        while True:
            attempts += 1
            assert attempts <= 3 * kills, f"only {landed} of {kills} kills landed"
            start = _count(engine, "SELECT count(*) FROM checkpoints")
            ahead = rng.randint(1, 3 * CHUNKS // kills)
            delay = rng.uniform(0, 0.02)
            process = _start(url)
            deadline = time.monotonic() + 120
            try:
                while process.poll() is None and (
                    landed >= kills
                    or _count(engine, "SELECT count(*) FROM checkpoints") < start + ahead
                ):
                    assert time.monotonic() < deadline, "the driver made no progress"
                    time.sleep(0.002)
                time.sleep(delay)
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=60)
            finally:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
            assert ledger_evidence_problems(url) == [], f"after kill {landed + 1}"
            if process.returncode == -signal.SIGKILL:
                landed += 1
                continue
            assert process.returncode == 0, "the driver failed"
            if landed >= kills:
                break
            pytest.fail(f"the driver finished after {landed} kills: give it more chunks")
        expected = sa.create_engine(reference)
        try:
            assert _final(engine) == _final(expected)
        finally:
            expected.dispose()
    finally:
        engine.dispose()


def _fast(url: str) -> dict[str, object]:
    return {"timeout": 5} if url.startswith("sqlite") else {}


def _reference(url: str) -> str:
    done = subprocess.run(
        [sys.executable, __file__, url], capture_output=True, timeout=300, env=_ENV
    )
    assert done.returncode == 0, done.stderr.decode()
    assert ledger_evidence_problems(url) == []
    return url


@pytest.mark.slow
def test_a_sqlite_ledger_killed_mid_transition_never_shows_a_phase_without_evidence(
    tmp_path: Path,
) -> None:
    reference = _reference(f"sqlite:///{tmp_path / 'reference.db'}")
    _kill_and_resume(f"sqlite:///{tmp_path / 'state.db'}", reference, kills=20)


@pytest.mark.slow
@pytest.mark.postgres
def test_a_postgresql_ledger_killed_mid_transition_never_shows_a_phase_without_evidence(
    pg_url: str, tmp_path: Path
) -> None:
    reference = _reference(f"sqlite:///{tmp_path / 'reference.db'}")
    _kill_and_resume(pg_url, reference, kills=10)


def test_the_evidence_check_finds_a_phase_without_its_evidence(tmp_path: Path) -> None:
    """The check above can fail: a loaded chunk that lost its load counts, one that keeps a
    later phase's columns, one with no checkpoint of its phase, and one whose checkpoint has
    another checksum are each named."""
    url = _reference(f"sqlite:///{tmp_path / 'state.db'}")
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE chunks SET written = NULL WHERE chunk_index = 1"))
            conn.execute(sa.text("UPDATE chunks SET state = 'extracted' WHERE chunk_index = 2"))
            conn.execute(sa.text("DELETE FROM checkpoints WHERE chunk_id = 'patient:00004'"))
            conn.execute(sa.text("UPDATE chunks SET doc_checksum = 'x' WHERE chunk_index = 5"))
    finally:
        engine.dispose()
    found = "\n".join(ledger_evidence_problems(url))
    assert "patient:00001 (loaded): no written" in found
    assert "patient:00002 (extracted): keeps doc_checksum of the later phase transformed" in found
    assert "patient:00004 (loaded): no checkpoint of its phase" in found
    assert "patient:00005 (loaded): its last checkpoint has checksum" in found
    assert "patient:00002 (extracted): its run is complete" in found


if __name__ == "__main__":
    _drive(sys.argv[1])
