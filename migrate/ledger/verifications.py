"""Verification records: what each reconciliation found, per service and per chunk.

The cutover gates read these, so a verification is written in one transaction with its chunks: the
ledger never shows a verification without its per-chunk evidence.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from migrate.errors import LedgerError
from migrate.ledger import schema as t

OUTCOMES = ("equal", "different")
AGAINST = ("source", "staging")


@dataclass(frozen=True)
class VerificationRecord:
    """One reconciliation of one service; `differences_path` names the keys file for repair."""

    verification_id: str
    service: str
    run_id: str | None
    started_at: datetime
    finished_at: datetime
    against: str
    sample: str | None
    outcome: str
    counts: dict[str, int]
    snapshot: str
    actor: str
    differences_path: str | None


@dataclass(frozen=True)
class ChunkVerification:
    """One chunk's result within a verification."""

    verification_id: str
    chunk_id: str
    outcome: str
    missing: int
    extra: int
    changed: int


def new_verification_id(at: datetime) -> str:
    """Sorts by time (UTC) like run ids, with a random suffix."""
    return f"{at:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


class VerificationStore:
    """The verification half of the Ledger (mixed into it; uses its transactions)."""

    display_url: str

    def _write(self, action: str) -> AbstractContextManager[sa.Connection]:
        raise NotImplementedError  # the Ledger provides it

    def _read(self, query: sa.Select[Any], action: str) -> list[sa.Row[Any]]:
        raise NotImplementedError  # the Ledger provides it

    def record_verification(
        self,
        *,
        verification_id: str,
        service: str,
        run_id: str | None,
        started_at: datetime,
        finished_at: datetime,
        against: str,
        sample: str | None,
        outcome: str,
        counts: Mapping[str, int],
        snapshot: str,
        actor: str,
        differences_path: str | None,
        chunks: Sequence[ChunkVerification],
    ) -> VerificationRecord:
        """Store a verification and its chunk results in one transaction."""
        if outcome not in OUTCOMES or against not in AGAINST:
            raise LedgerError(
                f"verification of {service}: outcome {outcome!r} / against {against!r} is not "
                f"one of {OUTCOMES} / {AGAINST}",
                hint="this is a bug in reconcile worth reporting",
            )
        record = VerificationRecord(
            verification_id,
            service,
            run_id,
            started_at.astimezone(UTC),
            finished_at.astimezone(UTC),
            against,
            sample,
            outcome,
            dict(counts),
            snapshot,
            actor,
            differences_path,
        )
        with self._write(f"recording a verification of {service}") as conn:
            conn.execute(
                t.verifications.insert().values(
                    verification_id=verification_id,
                    service=service,
                    run_id=run_id,
                    started_at=started_at,
                    finished_at=finished_at,
                    against=against,
                    sample=sample,
                    outcome=outcome,
                    counts=json.dumps(dict(counts), sort_keys=True),
                    snapshot=snapshot,
                    actor=actor,
                    differences_path=differences_path,
                )
            )
            if chunks:
                conn.execute(
                    t.chunk_verifications.insert(),
                    [
                        {
                            "verification_id": verification_id,
                            "chunk_id": c.chunk_id,
                            "outcome": c.outcome,
                            "missing": c.missing,
                            "extra": c.extra,
                            "changed": c.changed,
                        }
                        for c in chunks
                    ],
                )
        return record

    def latest_verification(
        self, service: str, *, with_differences: bool = False
    ) -> VerificationRecord | None:
        """The service's newest verification (only those with a differences file, if asked)."""
        v = t.verifications
        query = sa.select(v).where(v.c.service == service)
        if with_differences:
            query = query.where(v.c.differences_path.is_not(None))
        query = query.order_by(v.c.started_at.desc(), v.c.verification_id.desc()).limit(1)
        rows = self._read(query, f"reading the verifications of {service}")
        return _verification(rows[0]) if rows else None

    def verifications(self, service: str | None = None) -> list[VerificationRecord]:
        """Verifications oldest first, of one service or of all."""
        v = t.verifications
        query = sa.select(v).order_by(v.c.started_at, v.c.verification_id)
        if service is not None:
            query = query.where(v.c.service == service)
        return [_verification(row) for row in self._read(query, "reading verifications")]

    def chunk_verifications(self, verification_id: str) -> list[ChunkVerification]:
        c = t.chunk_verifications
        query = sa.select(c).where(c.c.verification_id == verification_id).order_by(c.c.chunk_id)
        return [
            ChunkVerification(
                r._mapping["verification_id"],
                r._mapping["chunk_id"],
                r._mapping["outcome"],
                r._mapping["missing"],
                r._mapping["extra"],
                r._mapping["changed"],
            )
            for r in self._read(query, f"reading chunk verifications of {verification_id}")
        ]


def _verification(row: sa.Row[Any]) -> VerificationRecord:
    m = row._mapping
    return VerificationRecord(
        verification_id=m["verification_id"],
        service=m["service"],
        run_id=m["run_id"],
        started_at=m["started_at"],
        finished_at=m["finished_at"],
        against=m["against"],
        sample=m["sample"],
        outcome=m["outcome"],
        counts={str(k): int(n) for k, n in json.loads(m["counts"]).items()},
        snapshot=m["snapshot"],
        actor=m["actor"],
        differences_path=m["differences_path"],
    )
