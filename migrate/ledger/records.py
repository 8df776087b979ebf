"""Immutable views of ledger rows handed to callers, so nobody mutates state behind the ledger."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from migrate.ledger.states import ChunkState, RunStatus


@dataclass(frozen=True)
class RunRecord:
    """One run of one service: the snapshot it reads and the mapping it applies."""

    run_id: str
    service: str
    status: RunStatus
    snapshot: str
    mapping_fingerprint: str
    started_at: datetime
    finished_at: datetime | None
    actor: str


@dataclass(frozen=True)
class ChunkRecord:
    """One chunk of a run and the evidence of the last phase it reached.

    `lo` and `hi` are the chunk's key bounds as JSON text, opaque to the ledger. Fields of a phase
    the chunk has not reached are None.
    """

    run_id: str
    chunk_id: str
    doc_type: str
    index: int
    lo: str
    hi: str
    extract_fingerprint: str
    state: ChunkState
    rows: dict[str, int]
    staged_path: str | None
    staged_checksum: str | None
    snapshot: str | None
    transform_fingerprint: str | None
    documents: int | None
    rejects: int | None
    doc_checksum: str | None
    written: int | None
    unchanged: int | None
    updated_at: datetime


def run_from_row(row: sa.Row[Any]) -> RunRecord:
    m = row._mapping
    return RunRecord(
        run_id=m["run_id"],
        service=m["service"],
        status=RunStatus(m["status"]),
        snapshot=m["snapshot"],
        mapping_fingerprint=m["mapping_fingerprint"],
        started_at=m["started_at"],
        finished_at=m["finished_at"],
        actor=m["actor"],
    )


def chunk_from_row(row: sa.Row[Any]) -> ChunkRecord:
    m = row._mapping
    return ChunkRecord(
        run_id=m["run_id"],
        chunk_id=m["chunk_id"],
        doc_type=m["doc_type"],
        index=m["chunk_index"],
        lo=m["lo"],
        hi=m["hi"],
        extract_fingerprint=m["extract_fingerprint"],
        state=ChunkState(m["state"]),
        rows={str(k): int(v) for k, v in json.loads(m["rows"]).items()},
        staged_path=m["staged_path"],
        staged_checksum=m["staged_checksum"],
        snapshot=m["snapshot"],
        transform_fingerprint=m["transform_fingerprint"],
        documents=m["documents"],
        rejects=m["rejects"],
        doc_checksum=m["doc_checksum"],
        written=m["written"],
        unchanged=m["unchanged"],
        updated_at=m["updated_at"],
    )
