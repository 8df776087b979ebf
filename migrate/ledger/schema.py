"""The ledger's tables (SQLAlchemy Core), portable between SQLite and PostgreSQL.

`SCHEMA_VERSION` is stored in `schema_version`, so a later release can tell which layout a state DB
has and migrate it forward instead of misreading it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

SCHEMA_VERSION = 3
# Version 2 added `verifications` and `chunk_verifications`; version 3 added `documents` (the
# register of each run's document keys), `leases` (one writer per service) and the cutover's
# `capture`, `sync_positions`, `deltas`, `delta_batches`, `digests` and `phases`. An older file
# gets the new tables when opened for writing.

_STATES = "'planned', 'extracted', 'transformed', 'loaded'"
_STATUSES = "'running', 'complete', 'failed'"
_OUTCOMES = "'equal', 'different'"


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend: SQLite keeps no offset, so UTC is implied there."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("ledger timestamps must be timezone-aware")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"unexpected timestamp type {type(value).__name__}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


metadata = sa.MetaData()

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.CheckConstraint("id = 1", name="ck_schema_version_single_row"),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("service", sa.String(200), nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("snapshot", sa.Text, nullable=False),
    sa.Column("mapping_fingerprint", sa.String(200), nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.CheckConstraint(f"status IN ({_STATUSES})", name="ck_runs_status"),
)

chunks = sa.Table(
    "chunks",
    metadata,
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id"), primary_key=True),
    sa.Column("chunk_id", sa.String(300), primary_key=True),
    sa.Column("doc_type", sa.String(200), nullable=False),
    sa.Column("chunk_index", sa.Integer, nullable=False),
    sa.Column("lo", sa.Text, nullable=False),
    sa.Column("hi", sa.Text, nullable=False),
    sa.Column("extract_fingerprint", sa.String(200), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("rows", sa.Text, nullable=False),
    sa.Column("staged_path", sa.Text),
    sa.Column("staged_checksum", sa.String(200)),
    sa.Column("snapshot", sa.Text),
    sa.Column("transform_fingerprint", sa.String(200)),
    sa.Column("documents", sa.Integer),
    sa.Column("rejects", sa.Integer),
    sa.Column("doc_checksum", sa.String(200)),
    sa.Column("written", sa.Integer),
    sa.Column("unchanged", sa.Integer),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("run_id", "doc_type", "chunk_index", name="uq_chunks_run_doc_index"),
    sa.CheckConstraint(f"state IN ({_STATES})", name="ck_chunks_state"),
    sa.CheckConstraint("chunk_index >= 0", name="ck_chunks_index"),
    sa.CheckConstraint(
        "(documents IS NULL OR documents >= 0) AND (rejects IS NULL OR rejects >= 0)"
        " AND (written IS NULL OR written >= 0) AND (unchanged IS NULL OR unchanged >= 0)",
        name="ck_chunks_counts",
    ),
)

checkpoints = sa.Table(
    "checkpoints",
    metadata,
    sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id"), nullable=False),
    sa.Column("chunk_id", sa.String(300), nullable=True),
    sa.Column("phase", sa.String(32), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("rows", sa.Text),
    sa.Column("documents", sa.Integer),
    sa.Column("rejects", sa.Integer),
    sa.Column("written", sa.Integer),
    sa.Column("unchanged", sa.Integer),
    sa.Column("checksum", sa.String(200)),
    sa.Column("fingerprint", sa.String(200)),
    sa.Column("note", sa.Text),
    sa.Index("ix_checkpoints_run_chunk", "run_id", "chunk_id"),
)

audit = sa.Table(
    "audit",
    metadata,
    sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("service", sa.String(200), nullable=True, index=True),
    sa.Column("action", sa.String(200), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
)

verifications = sa.Table(
    "verifications",
    metadata,
    sa.Column("verification_id", sa.String(64), primary_key=True),
    sa.Column("service", sa.String(200), nullable=False, index=True),
    sa.Column("run_id", sa.String(64), nullable=True),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=False),
    sa.Column("against", sa.String(16), nullable=False),
    sa.Column("sample", sa.String(32), nullable=True),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("counts", sa.Text, nullable=False),
    sa.Column("snapshot", sa.Text, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("differences_path", sa.Text, nullable=True),
    sa.CheckConstraint("against IN ('source', 'staging')", name="ck_verifications_against"),
    sa.CheckConstraint(f"outcome IN ({_OUTCOMES})", name="ck_verifications_outcome"),
)

chunk_verifications = sa.Table(
    "chunk_verifications",
    metadata,
    sa.Column(
        "verification_id",
        sa.String(64),
        sa.ForeignKey("verifications.verification_id"),
        primary_key=True,
    ),
    sa.Column("chunk_id", sa.String(300), primary_key=True),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("missing", sa.Integer, nullable=False),
    sa.Column("extra", sa.Integer, nullable=False),
    sa.Column("changed", sa.Integer, nullable=False),
    sa.CheckConstraint(f"outcome IN ({_OUTCOMES})", name="ck_chunk_verifications_outcome"),
    sa.CheckConstraint(
        "missing >= 0 AND extra >= 0 AND changed >= 0", name="ck_chunk_verifications_counts"
    ),
)


documents = sa.Table(
    "documents",
    metadata,
    # The register of a run's documents: which root row renders which key, from which chunk, with
    # which checksum. It finds key collisions across chunks, and delta finds a root's document.
    sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id"), nullable=False),
    sa.Column("chunk_id", sa.String(300), nullable=False),
    sa.Column("doc_type", sa.String(200), nullable=False),
    sa.Column("source_key", sa.Text, nullable=False),
    sa.Column("bucket_type", sa.String(200), nullable=False),
    sa.Column("bucket", sa.String(200), nullable=False),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("ident", sa.String(32), nullable=False),  # xxh3-128 of bucket type, bucket, key
    sa.Column("checksum", sa.String(32), nullable=False),  # "" unless live
    # live: its document is written; collided: withdrawn, other rows render its key; rejected:
    # it broke another rule (its key "" when none could be rendered)
    sa.Column("state", sa.String(16), nullable=False),
    # The chunk's transform fingerprint: rows of an older mapping never collide with newer ones.
    sa.Column("fingerprint", sa.String(200), nullable=False),
    sa.Index("ix_documents_run_ident", "run_id", "ident"),
    sa.Index("ix_documents_run_chunk", "run_id", "chunk_id"),
    sa.Index("ix_documents_run_row", "run_id", "doc_type", "source_key"),
)

leases = sa.Table(
    "leases",
    metadata,
    # One writer per service: `run`, `delta`, `repair` and the cutover steps hold its lease.
    sa.Column("service", sa.String(200), primary_key=True),
    sa.Column("holder", sa.String(64), nullable=False),  # a random token per command
    sa.Column("command", sa.Text, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("host", sa.String(200), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("since", UTCDateTime, nullable=False),
    sa.Column("renewed_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
)


capture = sa.Table(
    "capture",
    metadata,
    # A service's installed change capture: its mode, and what it records (tables, columns).
    sa.Column("service", sa.String(200), primary_key=True),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("plan", sa.Text, nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("installed_at", UTCDateTime, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
)

sync_positions = sa.Table(
    "sync_positions",
    metadata,
    # Where a service's next delta starts in its change log: set by the run that loaded it (at
    # its snapshot), advanced by each delta once the target has acknowledged it.
    sa.Column("service", sa.String(200), primary_key=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("position", sa.Text, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("delta_id", sa.String(64), nullable=True),  # None: the run's own snapshot
)

deltas = sa.Table(
    "deltas",
    metadata,
    sa.Column("delta_id", sa.String(64), primary_key=True),
    sa.Column("service", sa.String(200), nullable=False, index=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("from_position", sa.Text, nullable=False),
    sa.Column("to_position", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    sa.Column("changes", sa.Integer, nullable=False),
    sa.Column("roots", sa.Integer, nullable=False),
    sa.Column("batches", sa.Integer, nullable=False),
    sa.Column("written", sa.Integer, nullable=False),
    sa.Column("deleted", sa.Integer, nullable=False),
    sa.Column("rejects", sa.Integer, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.CheckConstraint(f"status IN ({_STATUSES})", name="ck_deltas_status"),
)

delta_batches = sa.Table(
    "delta_batches",
    metadata,
    # The roots a delta rebuilds, in batches of one chunk each: recorded before any is applied,
    # so a delta killed half-way resumes with exactly the batches it had left.
    sa.Column("delta_id", sa.String(64), sa.ForeignKey("deltas.delta_id"), primary_key=True),
    sa.Column("batch", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("doc_type", sa.String(200), nullable=False),
    sa.Column("chunk_index", sa.Integer, nullable=False),
    sa.Column("keys", sa.Text, nullable=False),  # JSON: the root keys, as chunk bounds are kept
    sa.Column("done", sa.Boolean, nullable=False),
)

digests = sa.Table(
    "digests",
    metadata,
    # Watermark capture: per chunk of a run, each root's digest of the rows its document is
    # built from (keys and last-modified values), as the run or the last delta saw them
    # (generation ""), or as a delta under way saw them (generation = its id), which replaces
    # the chunk's when that delta completes (`migrate.watermark`).
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("chunk_id", sa.String(200), primary_key=True),
    sa.Column("generation", sa.String(64), primary_key=True),
    sa.Column("body", sa.LargeBinary, nullable=False),  # zlib-compressed JSON {root: digest}
)

phases = sa.Table(
    "phases",
    metadata,
    # Each service's cutover phase, changed only with an audit row in the same transaction.
    sa.Column("service", sa.String(200), primary_key=True),
    sa.Column("phase", sa.String(32), nullable=False),
    sa.Column("since", UTCDateTime, nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
)


def checkpoint_row(run_id: str, chunk_id: str | None, phase: str, at: datetime) -> dict[str, Any]:
    """A checkpoint row with every optional column present, so batches insert uniformly."""
    return {
        "run_id": run_id,
        "chunk_id": chunk_id,
        "phase": phase,
        "at": at,
        "rows": None,
        "documents": None,
        "rejects": None,
        "written": None,
        "unchanged": None,
        "checksum": None,
        "fingerprint": None,
        "note": None,
    }
