"""The cutover's state in the ledger: installed capture, where each service's next delta starts,
deltas and their batches, and each service's phase.

A delta is recorded with every batch of roots it will rebuild before any is applied; each batch
is marked done once the target has its documents; the position advances, and the delta is
closed, in one transaction after the last batch. A delta killed at any moment resumes with the
batches it had left, under the same positions.
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
from migrate.ledger.states import RunStatus


def _now() -> datetime:
    return datetime.now(UTC)


def new_delta_id() -> str:
    return f"{_now():%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class CaptureRecord:
    service: str
    mode: str
    plan: str  # JSON (`migrate.source.capture.CapturePlan`)
    fingerprint: str
    installed_at: datetime
    actor: str


@dataclass(frozen=True)
class Position:
    service: str
    run_id: str
    position: str
    updated_at: datetime
    delta_id: str | None


@dataclass(frozen=True)
class DeltaRecord:
    delta_id: str
    service: str
    run_id: str
    from_position: str
    to_position: str
    status: RunStatus
    started_at: datetime
    finished_at: datetime | None
    changes: int
    roots: int
    batches: int
    written: int
    deleted: int
    rejects: int
    actor: str


@dataclass(frozen=True)
class DeltaBatch:
    delta_id: str
    batch: int
    doc_type: str
    chunk_index: int
    keys: str  # JSON
    done: bool


@dataclass(frozen=True)
class PhaseRecord:
    service: str
    phase: str
    since: datetime
    detail: dict[str, Any]


class CutoverStore:
    """The cutover tables of the Ledger (mixed into it; uses its transactions)."""

    version: int

    def _write(self, action: str) -> AbstractContextManager[sa.Connection]:
        raise NotImplementedError  # the Ledger provides it

    def _read(self, query: sa.Select[Any], action: str) -> list[sa.Row[Any]]:
        raise NotImplementedError  # the Ledger provides it

    # -- capture ---------------------------------------------------------------------------------

    def record_capture(
        self, service: str, *, mode: str, plan: str, fingerprint: str, actor: str
    ) -> None:
        c = t.capture
        with self._write(f"recording the capture of {service}") as conn:
            conn.execute(c.delete().where(c.c.service == service))
            conn.execute(
                c.insert().values(
                    service=service,
                    mode=mode,
                    plan=plan,
                    fingerprint=fingerprint,
                    installed_at=_now(),
                    actor=actor,
                )
            )

    def capture_record(self, service: str) -> CaptureRecord | None:
        if self.version < 3:
            return None
        c = t.capture
        rows = self._read(sa.select(c).where(c.c.service == service), "reading the capture")
        if not rows:
            return None
        m = rows[0]._mapping
        return CaptureRecord(
            m["service"], m["mode"], m["plan"], m["fingerprint"], m["installed_at"], m["actor"]
        )

    def forget_capture(self, service: str) -> None:
        c, p = t.capture, t.sync_positions
        with self._write(f"forgetting the capture of {service}") as conn:
            conn.execute(c.delete().where(c.c.service == service))
            conn.execute(p.delete().where(p.c.service == service))

    # -- positions -------------------------------------------------------------------------------

    def set_position(
        self, service: str, *, run_id: str, position: str, delta_id: str | None = None
    ) -> None:
        p = t.sync_positions
        with self._write(f"recording the change-log position of {service}") as conn:
            conn.execute(p.delete().where(p.c.service == service))
            conn.execute(
                p.insert().values(
                    service=service,
                    run_id=run_id,
                    position=position,
                    updated_at=_now(),
                    delta_id=delta_id,
                )
            )

    def position(self, service: str) -> Position | None:
        if self.version < 3:
            return None
        p = t.sync_positions
        rows = self._read(sa.select(p).where(p.c.service == service), "reading the position")
        if not rows:
            return None
        m = rows[0]._mapping
        return Position(m["service"], m["run_id"], m["position"], m["updated_at"], m["delta_id"])

    # -- deltas ----------------------------------------------------------------------------------

    def start_delta(
        self,
        service: str,
        *,
        run_id: str,
        from_position: str,
        to_position: str,
        changes: int,
        batches: Sequence[tuple[str, int, str]],
        roots: int,
        actor: str,
        digests: Mapping[str, bytes] | None = None,
    ) -> DeltaRecord:
        """Record a delta and every batch (document type, chunk index, keys as JSON) at once,
        with (watermark capture) the chunks' digests it saw, which replace theirs once it is
        complete."""
        delta_id = new_delta_id()
        started = _now()
        with self._write(f"starting a delta of {service}") as conn:
            conn.execute(
                t.deltas.insert().values(
                    delta_id=delta_id,
                    service=service,
                    run_id=run_id,
                    from_position=from_position,
                    to_position=to_position,
                    status=RunStatus.RUNNING.value,
                    started_at=started,
                    finished_at=None,
                    changes=changes,
                    roots=roots,
                    batches=len(batches),
                    written=0,
                    deleted=0,
                    rejects=0,
                    actor=actor,
                )
            )
            if batches:
                conn.execute(
                    t.delta_batches.insert(),
                    [
                        {
                            "delta_id": delta_id,
                            "batch": number,
                            "doc_type": doc_type,
                            "chunk_index": index,
                            "keys": keys,
                            "done": False,
                        }
                        for number, (doc_type, index, keys) in enumerate(batches)
                    ],
                )
            if digests:
                conn.execute(
                    t.digests.insert(),
                    [
                        {"run_id": run_id, "chunk_id": c, "generation": delta_id, "body": body}
                        for c, body in sorted(digests.items())
                    ],
                )
        return self.delta(delta_id)

    def delta(self, delta_id: str) -> DeltaRecord:
        d = t.deltas
        rows = self._read(sa.select(d).where(d.c.delta_id == delta_id), "reading a delta")
        if not rows:
            raise LedgerError(f"no delta {delta_id} in the ledger")
        return _delta(rows[0])

    def deltas(self, service: str | None = None) -> list[DeltaRecord]:
        """Deltas oldest first, of one service or of all."""
        if self.version < 3:
            return []
        d = t.deltas
        query = sa.select(d).order_by(d.c.started_at, d.c.delta_id)
        if service is not None:
            query = query.where(d.c.service == service)
        return [_delta(row) for row in self._read(query, "reading deltas")]

    def open_delta(self, service: str) -> DeltaRecord | None:
        """The service's delta that has not finished (killed or failed part-way), if any."""
        pending = [d for d in self.deltas(service) if d.status is not RunStatus.COMPLETE]
        return pending[-1] if pending else None

    def delta_batches(self, delta_id: str) -> list[DeltaBatch]:
        b = t.delta_batches
        query = sa.select(b).where(b.c.delta_id == delta_id).order_by(b.c.batch)
        return [
            DeltaBatch(
                m["delta_id"], m["batch"], m["doc_type"], m["chunk_index"], m["keys"], m["done"]
            )
            for m in (row._mapping for row in self._read(query, "reading a delta's batches"))
        ]

    def finish_batch(
        self, delta_id: str, batch: int, *, written: int, deleted: int, rejects: int
    ) -> None:
        b, d = t.delta_batches, t.deltas
        with self._write(f"recording batch {batch} of delta {delta_id}") as conn:
            conn.execute(
                b.update().where(b.c.delta_id == delta_id, b.c.batch == batch).values(done=True)
            )
            conn.execute(
                d.update()
                .where(d.c.delta_id == delta_id)
                .values(
                    written=d.c.written + written,
                    deleted=d.c.deleted + deleted,
                    rejects=d.c.rejects + rejects,
                )
            )

    def add_batches(self, delta_id: str, batches: Sequence[tuple[str, int, str]]) -> None:
        """More batches for a delta under way (rows released from a collision it resolved)."""
        b, d = t.delta_batches, t.deltas
        with self._write(f"adding batches to delta {delta_id}") as conn:
            last = conn.execute(
                sa.select(sa.func.max(b.c.batch)).where(b.c.delta_id == delta_id)
            ).scalar_one_or_none()
            first = (last if last is not None else -1) + 1
            conn.execute(
                b.insert(),
                [
                    {
                        "delta_id": delta_id,
                        "batch": first + n,
                        "doc_type": doc_type,
                        "chunk_index": index,
                        "keys": keys,
                        "done": False,
                    }
                    for n, (doc_type, index, keys) in enumerate(batches)
                ],
            )
            conn.execute(
                d.update()
                .where(d.c.delta_id == delta_id)
                .values(batches=d.c.batches + len(batches))
            )

    def finish_delta(self, delta: DeltaRecord, status: RunStatus) -> None:
        """Close a delta; a complete one moves the service's position to where it ended (and
        the chunks' watermark digests to what it saw)."""
        d, p, g = t.deltas, t.sync_positions, t.digests
        with self._write(f"finishing delta {delta.delta_id}") as conn:
            conn.execute(
                d.update()
                .where(d.c.delta_id == delta.delta_id)
                .values(status=status.value, finished_at=_now())
            )
            seen = g.c.generation == delta.delta_id
            if status is RunStatus.COMPLETE:
                chunks = sa.select(g.c.chunk_id).where(g.c.run_id == delta.run_id, seen)
                conn.execute(
                    g.delete().where(
                        g.c.run_id == delta.run_id, g.c.generation == "", g.c.chunk_id.in_(chunks)
                    )
                )
                conn.execute(
                    g.update().where(g.c.run_id == delta.run_id, seen).values(generation="")
                )
            else:
                conn.execute(g.delete().where(g.c.run_id == delta.run_id, seen))
            if status is RunStatus.COMPLETE:
                conn.execute(p.delete().where(p.c.service == delta.service))
                conn.execute(
                    p.insert().values(
                        service=delta.service,
                        run_id=delta.run_id,
                        position=delta.to_position,
                        updated_at=_now(),
                        delta_id=delta.delta_id,
                    )
                )

    # -- watermark digests ----------------------------------------------------------------------

    def store_digests(
        self, run_id: str, bodies: Mapping[str, bytes], *, generation: str = ""
    ) -> None:
        """Record chunks' digests (`migrate.watermark`), replacing those of that generation."""
        g = t.digests
        with self._write("recording watermark digests") as conn:
            for chunk_id, body in sorted(bodies.items()):
                conn.execute(
                    g.delete().where(
                        g.c.run_id == run_id,
                        g.c.chunk_id == chunk_id,
                        g.c.generation == generation,
                    )
                )
                conn.execute(
                    g.insert().values(
                        run_id=run_id, chunk_id=chunk_id, generation=generation, body=body
                    )
                )

    def digests(self, run_id: str, *, generation: str = "") -> dict[str, bytes]:
        """The run's chunks' digests of a generation ("": the last complete delta's, or the
        run's), by chunk id."""
        if self.version < 3:
            return {}
        g = t.digests
        query = sa.select(g.c.chunk_id, g.c.body).where(
            g.c.run_id == run_id, g.c.generation == generation
        )
        rows = self._read(query, "reading watermark digests")
        return {str(row._mapping["chunk_id"]): bytes(row._mapping["body"]) for row in rows}

    # -- phases ----------------------------------------------------------------------------------

    def phase(self, service: str) -> PhaseRecord | None:
        if self.version < 3:
            return None
        ph = t.phases
        rows = self._read(sa.select(ph).where(ph.c.service == service), "reading the phase")
        if not rows:
            return None
        m = rows[0]._mapping
        return PhaseRecord(m["service"], m["phase"], m["since"], json.loads(m["detail"]))

    def set_phase(self, service: str, phase: str, detail: Mapping[str, Any]) -> None:
        ph = t.phases
        with self._write(f"recording the phase of {service}") as conn:
            conn.execute(ph.delete().where(ph.c.service == service))
            conn.execute(
                ph.insert().values(
                    service=service,
                    phase=phase,
                    since=_now(),
                    detail=json.dumps(dict(detail), sort_keys=True),
                )
            )


def _delta(row: sa.Row[Any]) -> DeltaRecord:
    m = row._mapping
    return DeltaRecord(
        delta_id=m["delta_id"],
        service=m["service"],
        run_id=m["run_id"],
        from_position=m["from_position"],
        to_position=m["to_position"],
        status=RunStatus(m["status"]),
        started_at=m["started_at"],
        finished_at=m["finished_at"],
        changes=m["changes"],
        roots=m["roots"],
        batches=m["batches"],
        written=m["written"],
        deleted=m["deleted"],
        rejects=m["rejects"],
        actor=m["actor"],
    )
