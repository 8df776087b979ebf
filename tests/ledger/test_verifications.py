"""Verification records and the ledger's schema migration from older versions."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from migrate.ledger import SCHEMA_VERSION, ChunkVerification, Ledger


def test_a_version_1_ledger_gains_the_newer_tables(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    Ledger(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as raw:
        for table in ("chunk_verifications", "verifications", "documents", "leases"):
            raw.execute(f"DROP TABLE {table}")
        raw.execute("UPDATE schema_version SET version = 1")
    with Ledger(f"sqlite:///{path}") as ledger:
        assert ledger.latest_verification("pds") is None
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT version FROM schema_version").fetchone() == (SCHEMA_VERSION,)
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master")}
    assert {"verifications", "chunk_verifications", "documents", "leases"} <= tables
    assert SCHEMA_VERSION == 3


def test_record_and_read_a_verification(tmp_path: Path) -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    with Ledger(f"sqlite:///{tmp_path / 's.db'}") as ledger:
        for vid, outcome in (("v1", "equal"), ("v2", "different")):
            ledger.record_verification(
                verification_id=vid,
                service="pds",
                run_id=None,
                started_at=at,
                finished_at=at,
                against="source",
                sample="1%",
                outcome=outcome,
                counts={"missing": 1},
                snapshot="m",
                actor="me",
                differences_path="/x",
                chunks=[ChunkVerification(vid, "patient:00000", outcome, 1, 0, 0)],
            )
        latest = ledger.latest_verification("pds")
        assert latest is not None and latest.verification_id == "v2"
        assert latest.counts == {"missing": 1} and latest.started_at == at
        assert ledger.chunk_verifications("v2") == [
            ChunkVerification("v2", "patient:00000", "different", 1, 0, 0)
        ]
        assert [v.verification_id for v in ledger.verifications("pds")] == ["v1", "v2"]
