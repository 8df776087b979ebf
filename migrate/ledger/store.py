"""The Ledger: durable run and chunk state, checkpoints and the audit log.

Every transition is one short transaction that updates the chunk row and appends a checkpoint, so
the ledger never shows a phase without its evidence, and a crash leaves the last committed phase.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from migrate.errors import LedgerError, mask_secrets
from migrate.ledger import schema as t
from migrate.ledger.claims import ClaimStore
from migrate.ledger.cutover import CutoverStore
from migrate.ledger.engine import (
    READ_OPTION,
    create_engine,
    display,
    is_missing_sqlite_file,
    resolve_url,
    translate_errors,
)
from migrate.ledger.leases import LeaseStore
from migrate.ledger.locks import LockStore
from migrate.ledger.records import ChunkRecord, RunRecord, chunk_from_row, run_from_row
from migrate.ledger.states import REQUIRED_BEFORE, ChunkState, RunStatus, cleared_after
from migrate.ledger.verifications import VerificationStore

_ADVISORY_LOCK = 0x6D6967726174  # "migrat": serialises table creation on PostgreSQL


def _now() -> datetime:
    return datetime.now(UTC)


def new_run_id() -> str:
    """A run id: it sorts by the time it was taken (UTC) and carries a random suffix."""
    return f"{_now():%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def _mask(value: Any) -> Any:
    """Mask secrets in every string of an audit detail before it is stored."""
    if isinstance(value, str):
        return mask_secrets(value)
    if isinstance(value, Mapping):
        return {_mask(str(k)): _mask(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask(v) for v in value]
    return value


class Ledger(VerificationStore, ClaimStore, LeaseStore, LockStore, CutoverStore):
    """Run, chunk, checkpoint, verification and audit records in a SQLite or PostgreSQL state
    database."""

    def __init__(self, url: str, *, base_dir: Path | None = None, read_only: bool = False) -> None:
        """Open (and create or upgrade) the ledger; `read_only` changes nothing anywhere: a missing
        SQLite file reads as an empty ledger, an older layout is read as it is, writes fail."""
        resolved = resolve_url(url, base_dir)
        self.display_url = display(resolved)
        self.read_only = read_only
        empty = read_only and is_missing_sqlite_file(resolved)
        if empty:
            resolved = sa.make_url("sqlite://")  # in memory: nothing is created on disk
        self._engine = create_engine(resolved, read_only=read_only and not empty)
        self._together = threading.local()  # a thread's open `together` transaction
        self.version = t.SCHEMA_VERSION  # the layout of the file (older only when read-only)
        self._reader = self._engine.execution_options(**{READ_OPTION: True})
        try:
            if read_only and not empty:
                self._check_version()
            else:
                self._initialise()
        except BaseException:
            self._engine.dispose()
            raise

    def _check_version(self) -> None:
        with translate_errors(self.display_url, "opening"), self._reader.connect() as conn:
            found = conn.execute(sa.select(t.schema_version.c.version)).scalar_one_or_none()
        self.version = found or t.SCHEMA_VERSION  # read as it is: an older file lacks tables
        if found is not None and found > t.SCHEMA_VERSION:
            raise LedgerError(
                f"state database {self.display_url} has ledger schema version {found}, "
                f"newer than this release understands ({t.SCHEMA_VERSION})",
                hint="upgrade migrate, or point [state] url at another state database",
            )

    def _initialise(self) -> None:
        with translate_errors(self.display_url, "opening"), self._engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_ADVISORY_LOCK)))
            t.metadata.create_all(conn)
            found = conn.execute(sa.select(t.schema_version.c.version)).scalar_one_or_none()
            if found is None:
                conn.execute(
                    t.schema_version.insert().values(
                        id=1, version=t.SCHEMA_VERSION, updated_at=_now()
                    )
                )
            elif found < t.SCHEMA_VERSION:
                # create_all above added the tables of the newer layout; nothing else changed.
                conn.execute(
                    t.schema_version.update().values(version=t.SCHEMA_VERSION, updated_at=_now())
                )
            elif found > t.SCHEMA_VERSION:
                raise LedgerError(
                    f"state database {self.display_url} has ledger schema version {found}, "
                    f"newer than this release understands ({t.SCHEMA_VERSION})",
                    hint="upgrade migrate, or point [state] url at another state database",
                )

    # Runs

    def start_run(
        self,
        service: str,
        *,
        snapshot: str,
        mapping_fingerprint: str,
        actor: str,
        run_id: str | None = None,
    ) -> RunRecord:
        """Open a new run, under `run_id` when the caller took one from `new_run_id` earlier (to
        stage files under it before the run starts)."""
        started = _now()
        run_id = run_id or new_run_id()
        record = RunRecord(
            run_id, service, RunStatus.RUNNING, snapshot, mapping_fingerprint, started, None, actor
        )
        with self._write(f"starting a run of {service}") as conn:
            conn.execute(
                t.runs.insert().values(
                    run_id=run_id,
                    service=service,
                    status=RunStatus.RUNNING.value,
                    snapshot=snapshot,
                    mapping_fingerprint=mapping_fingerprint,
                    started_at=started,
                    finished_at=None,
                    actor=actor,
                )
            )
            self._checkpoint(conn, run_id, None, "run started", fingerprint=mapping_fingerprint)
        return record

    def latest_run(self, service: str) -> RunRecord | None:
        query = (
            sa.select(t.runs)
            .where(t.runs.c.service == service)
            .order_by(t.runs.c.started_at.desc(), t.runs.c.run_id.desc())
            .limit(1)
        )
        rows = self._read(query, f"reading the runs of {service}")
        return run_from_row(rows[0]) if rows else None

    def get_run(self, run_id: str) -> RunRecord:
        rows = self._read(sa.select(t.runs).where(t.runs.c.run_id == run_id), "reading a run")
        if not rows:
            raise LedgerError(
                f"run {run_id} is not in the state database {self.display_url}",
                hint="`migrate status` lists the runs the ledger knows",
            )
        return run_from_row(rows[0])

    def runs(self, service: str | None = None) -> list[RunRecord]:
        """Runs oldest first, of one service or of all."""
        query = sa.select(t.runs).order_by(t.runs.c.started_at, t.runs.c.run_id)
        if service is not None:
            query = query.where(t.runs.c.service == service)
        return [run_from_row(row) for row in self._read(query, "reading runs")]

    def update_run(
        self,
        run_id: str,
        *,
        mapping_fingerprint: str | None = None,
        snapshot: str | None = None,
    ) -> None:
        values = {
            name: value
            for name, value in (
                ("mapping_fingerprint", mapping_fingerprint),
                ("snapshot", snapshot),
            )
            if value is not None
        }
        if not values:
            return
        with self._write(f"updating run {run_id}") as conn:
            self._update_run_row(conn, run_id, values)
            note = "changed: " + ", ".join(sorted(values))
            self._checkpoint(
                conn, run_id, None, "run updated", fingerprint=mapping_fingerprint, note=note
            )

    def finish_run(self, run_id: str, status: RunStatus) -> None:
        """Close a run as complete or failed; RUNNING reopens it (a resumed run)."""
        finished = None if status is RunStatus.RUNNING else _now()
        with self._write(f"finishing run {run_id}") as conn:
            values = {"status": status.value, "finished_at": finished}
            self._update_run_row(conn, run_id, values)
            self._checkpoint(conn, run_id, None, f"run {status.value}")

    def _update_run_row(self, conn: sa.Connection, run_id: str, values: dict[str, Any]) -> None:
        result = conn.execute(t.runs.update().where(t.runs.c.run_id == run_id).values(**values))
        if result.rowcount != 1:
            raise LedgerError(
                f"run {run_id} is not in the state database {self.display_url}",
                hint="`migrate status` lists the runs the ledger knows",
            )

    # Chunks

    def plan_chunks(
        self,
        run_id: str,
        doc_type: str,
        extract_fingerprint: str,
        ranges: Sequence[tuple[int, str, str]],
    ) -> list[ChunkRecord]:
        """Record a document type's chunks once; planning again with the same fingerprint
        resumes them."""
        indexes = [index for index, _lo, _hi in ranges]
        if len(set(indexes)) != len(indexes) or any(index < 0 for index in indexes):
            raise LedgerError(
                f"run {run_id}, {doc_type}: chunk indexes must be distinct and not negative",
                hint="this is a bug in the chunk planner worth reporting",
            )
        existing = self._planned(run_id, doc_type, extract_fingerprint)
        if existing is not None:
            return existing
        try:
            with self._write(f"planning chunks of {doc_type}") as conn:
                self._insert_plan(conn, run_id, doc_type, extract_fingerprint, ranges)
        except LedgerError:
            # Another process may have planned the same chunks between our read and our write.
            again = self._planned(run_id, doc_type, extract_fingerprint)
            if again is None:
                raise
            return again
        return self.chunks(run_id, doc_type)

    def _planned(self, run_id: str, doc_type: str, fingerprint: str) -> list[ChunkRecord] | None:
        self.get_run(run_id)
        existing = self.chunks(run_id, doc_type)
        if not existing:
            return None
        if any(chunk.extract_fingerprint != fingerprint for chunk in existing):
            raise LedgerError(
                f"run {run_id} already planned {doc_type} chunks for a different extract "
                "(the mapping, snapshot or chunking changed)",
                hint="start a new run so that every chunk comes from the same extract",
            )
        return existing

    def _insert_plan(
        self,
        conn: sa.Connection,
        run_id: str,
        doc_type: str,
        fingerprint: str,
        ranges: Sequence[tuple[int, str, str]],
    ) -> None:
        if not ranges:
            return
        now = _now()
        rows = [
            {
                "run_id": run_id,
                "chunk_id": f"{doc_type}:{index:05d}",
                "doc_type": doc_type,
                "chunk_index": index,
                "lo": lo,
                "hi": hi,
                "extract_fingerprint": fingerprint,
                "state": ChunkState.PLANNED.value,
                "rows": "{}",
                "updated_at": now,
            }
            for index, lo, hi in ranges
        ]
        conn.execute(t.chunks.insert(), rows)
        conn.execute(
            t.checkpoints.insert(),
            [
                t.checkpoint_row(run_id, f"{doc_type}:{index:05d}", ChunkState.PLANNED.value, now)
                | {"fingerprint": fingerprint}
                for index, _lo, _hi in ranges
            ],
        )

    def chunks(self, run_id: str, doc_type: str | None = None) -> list[ChunkRecord]:
        """A run's chunks ordered by document type, then index."""
        query = (
            sa.select(t.chunks)
            .where(t.chunks.c.run_id == run_id)
            .order_by(t.chunks.c.doc_type, t.chunks.c.chunk_index)
        )
        if doc_type is not None:
            query = query.where(t.chunks.c.doc_type == doc_type)
        return [
            chunk_from_row(row) for row in self._read(query, f"reading the chunks of run {run_id}")
        ]

    def chunk(self, run_id: str, chunk_id: str) -> ChunkRecord:
        """One chunk of a run (its record as last committed)."""
        query = sa.select(t.chunks).where(
            t.chunks.c.run_id == run_id, t.chunks.c.chunk_id == chunk_id
        )
        rows = self._read(query, f"reading chunk {chunk_id}")
        if not rows:
            raise LedgerError(
                f"run {run_id} has no chunk {chunk_id}",
                hint="`migrate status` shows what is planned",
            )
        return chunk_from_row(rows[0])

    def mark_extracted(
        self,
        run_id: str,
        chunk_id: str,
        *,
        rows: Mapping[str, int],
        staged_path: str,
        staged_checksum: str,
        snapshot: str,
    ) -> None:
        rows_text = json.dumps(dict(rows), sort_keys=True)
        values = {
            "rows": rows_text,
            "staged_path": staged_path,
            "staged_checksum": staged_checksum,
            "snapshot": snapshot,
        }
        checkpoint = {
            "rows": rows_text,
            "checksum": staged_checksum,
            "note": f"snapshot {snapshot}",
        }
        self._transition(run_id, chunk_id, ChunkState.EXTRACTED, values, checkpoint=checkpoint)

    def mark_transformed(
        self,
        run_id: str,
        chunk_id: str,
        *,
        transform_fingerprint: str,
        documents: int,
        rejects: int,
        doc_checksum: str,
    ) -> None:
        values = {
            "transform_fingerprint": transform_fingerprint,
            "documents": documents,
            "rejects": rejects,
            "doc_checksum": doc_checksum,
        }
        checkpoint = {
            "documents": documents,
            "rejects": rejects,
            "checksum": doc_checksum,
            "fingerprint": transform_fingerprint,
        }
        self._transition(run_id, chunk_id, ChunkState.TRANSFORMED, values, checkpoint=checkpoint)

    def mark_loaded(
        self,
        run_id: str,
        chunk_id: str,
        *,
        documents: int,
        written: int,
        unchanged: int,
        doc_checksum: str,
    ) -> None:
        """Record a load; its documents and checksum must be those the transform recorded."""
        values = {"written": written, "unchanged": unchanged}
        checkpoint = {
            "documents": documents,
            "written": written,
            "unchanged": unchanged,
            "checksum": doc_checksum,
        }
        expect = {"documents": documents, "doc_checksum": doc_checksum}
        self._transition(
            run_id, chunk_id, ChunkState.LOADED, values, checkpoint=checkpoint, expect=expect
        )

    def _transition(
        self,
        run_id: str,
        chunk_id: str,
        state: ChunkState,
        values: dict[str, Any],
        *,
        checkpoint: dict[str, Any],
        expect: dict[str, Any] | None = None,
    ) -> None:
        with self._write(f"marking {chunk_id} {state.value}") as conn:
            current = self._lock_chunk(conn, run_id, chunk_id)
            needed = REQUIRED_BEFORE[state]
            if current.rank < needed.rank:
                raise LedgerError(
                    f"run {run_id}, chunk {chunk_id}: cannot mark {state.value}, the chunk is "
                    f"only {current.value} (it must be {needed.value} first)",
                    hint="run the earlier phases of this chunk first (`migrate run` resumes)",
                )
            if expect:
                self._check_expected(conn, run_id, chunk_id, expect)
            now = _now()
            conn.execute(
                t.checkpoints.insert().values(
                    t.checkpoint_row(run_id, chunk_id, state.value, now) | checkpoint
                )
            )
            conn.execute(
                t.chunks.update()
                .where(t.chunks.c.run_id == run_id, t.chunks.c.chunk_id == chunk_id)
                .values(**(cleared_after(state) | values), state=state.value, updated_at=now)
            )

    def _lock_chunk(self, conn: sa.Connection, run_id: str, chunk_id: str) -> ChunkState:
        query = (
            sa.select(t.chunks.c.state)
            .where(t.chunks.c.run_id == run_id, t.chunks.c.chunk_id == chunk_id)
            .with_for_update()
        )
        state = conn.execute(query).scalar_one_or_none()
        if state is None:
            raise LedgerError(
                f"run {run_id} has no chunk {chunk_id}",
                hint="plan the run's chunks first; `migrate status` shows what is planned",
            )
        return ChunkState(state)

    def _check_expected(
        self, conn: sa.Connection, run_id: str, chunk_id: str, expect: dict[str, Any]
    ) -> None:
        columns = [t.chunks.c[name] for name in expect]
        row = conn.execute(
            sa.select(*columns).where(t.chunks.c.run_id == run_id, t.chunks.c.chunk_id == chunk_id)
        ).one()
        differing = [name for name, value in expect.items() if row._mapping[name] != value]
        if differing:
            raise LedgerError(
                f"run {run_id}, chunk {chunk_id}: the loaded documents differ from the transformed "
                f"ones ({', '.join(differing)})",
                hint="transform the chunk again, then load it again",
            )

    def amend_documents(
        self,
        run_id: str,
        chunk_id: str,
        *,
        documents: int,
        rejects: int,
        doc_checksum: str,
        note: str,
    ) -> None:
        """Correct a transformed (or loaded) chunk's documents, rejects and checksum in place,
        keeping its phase: documents withdrawn after it was recorded (a key collision found by a
        later chunk) or changed by a delta. `note` says why, in the chunk's checkpoints."""
        with self._write(f"amending {chunk_id}") as conn:
            current = self._lock_chunk(conn, run_id, chunk_id)
            if current.rank < ChunkState.TRANSFORMED.rank:
                raise LedgerError(
                    f"run {run_id}, chunk {chunk_id}: cannot amend the documents of a chunk that "
                    f"is only {current.value}",
                    hint="this is a bug worth reporting",
                )
            now = _now()
            values = {"documents": documents, "rejects": rejects, "doc_checksum": doc_checksum}
            conn.execute(
                t.chunks.update()
                .where(t.chunks.c.run_id == run_id, t.chunks.c.chunk_id == chunk_id)
                .values(**values, updated_at=now)
            )
            conn.execute(
                t.checkpoints.insert().values(
                    t.checkpoint_row(run_id, chunk_id, "amended", now)
                    | {
                        "documents": documents,
                        "rejects": rejects,
                        "checksum": doc_checksum,
                        "note": note,
                    }
                )
            )

    def reset_chunks(self, run_id: str, chunk_ids: Sequence[str], state: ChunkState) -> None:
        """Move chunks back to `state` (never forward), erasing the evidence of later phases."""
        with self._write(f"resetting chunks of run {run_id}") as conn:
            now = _now()
            for chunk_id in chunk_ids:
                current = self._lock_chunk(conn, run_id, chunk_id)
                if current.rank < state.rank:
                    raise LedgerError(
                        f"run {run_id}, chunk {chunk_id}: cannot reset to {state.value}, the "
                        f"chunk is only {current.value}",
                        hint="a reset moves chunks back; run the phases to move them forward",
                    )
                conn.execute(
                    t.chunks.update()
                    .where(t.chunks.c.run_id == run_id, t.chunks.c.chunk_id == chunk_id)
                    .values(**cleared_after(state), state=state.value, updated_at=now)
                )
                conn.execute(
                    t.checkpoints.insert().values(
                        t.checkpoint_row(run_id, chunk_id, state.value, now)
                        | {"note": f"reset from {current.value}"}
                    )
                )

    # History

    def checkpoints(self, run_id: str, chunk_id: str | None = None) -> list[dict[str, Any]]:
        """Transitions oldest first: a run's (run-level ones included), or one chunk's."""
        query = sa.select(t.checkpoints).where(t.checkpoints.c.run_id == run_id)
        if chunk_id is not None:
            query = query.where(t.checkpoints.c.chunk_id == chunk_id)
        rows = self._read(query.order_by(t.checkpoints.c.id), f"reading checkpoints of {run_id}")
        result = []
        for row in rows:
            item = dict(row._mapping)
            item["rows"] = json.loads(item["rows"]) if item["rows"] else None
            result.append(item)
        return result

    def record_audit(
        self, *, actor: str, service: str | None, action: str, detail: Mapping[str, Any]
    ) -> None:
        """Append who did what, when, with the evidence; strings in `detail` are secret-masked."""
        try:
            text = json.dumps(_mask(detail), sort_keys=True, ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise LedgerError(
                f"audit detail for {action} is not JSON-serialisable",
                hint="pass plain strings, numbers, lists and mappings",
            ) from exc
        with self._write(f"recording audit {action}") as conn:
            conn.execute(
                t.audit.insert().values(
                    at=_now(), actor=actor, service=service, action=action, detail=text
                )
            )

    def audit_log(self, service: str | None = None) -> list[dict[str, Any]]:
        """Audit rows oldest first, of one service or of all."""
        query = sa.select(t.audit).order_by(t.audit.c.id)
        if service is not None:
            query = query.where(t.audit.c.service == service)
        result = []
        for row in self._read(query, "reading the audit log"):
            item = dict(row._mapping)
            item["detail"] = json.loads(item["detail"])
            result.append(item)
        return result

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # Helpers

    @contextmanager
    def together(self) -> Iterator[None]:
        """This thread's writes inside the block go into one transaction, committed at its end:
        all of them or none, for one commit (one fsync on SQLite) instead of one each."""
        if getattr(self._together, "conn", None) is not None:
            yield
            return
        with self._write("recording several changes at once") as conn:
            self._together.conn = conn
            try:
                yield
            finally:
                self._together.conn = None

    @contextmanager
    def _write(self, action: str) -> Iterator[sa.Connection]:
        """One short write transaction (or this thread's `together` one); driver errors become
        LedgerError."""
        shared: sa.Connection | None = getattr(self._together, "conn", None)
        if shared is not None:
            with translate_errors(self.display_url, action):
                yield shared
            return
        with translate_errors(self.display_url, action), self._engine.begin() as conn:
            yield conn

    def _read(self, query: sa.Select[Any], action: str) -> list[sa.Row[Any]]:
        with translate_errors(self.display_url, action), self._reader.connect() as conn:
            return list(conn.execute(query))

    def _checkpoint(
        self,
        conn: sa.Connection,
        run_id: str,
        chunk_id: str | None,
        phase: str,
        *,
        fingerprint: str | None = None,
        note: str | None = None,
    ) -> None:
        row = t.checkpoint_row(run_id, chunk_id, phase, _now())
        conn.execute(
            t.checkpoints.insert().values(row | {"fingerprint": fingerprint, "note": note})
        )
