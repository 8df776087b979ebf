"""The ledger: durable state of runs and chunks, their checkpoints and the audit log."""

from migrate.ledger.records import ChunkRecord, RunRecord
from migrate.ledger.schema import SCHEMA_VERSION
from migrate.ledger.states import ChunkState, RunStatus
from migrate.ledger.store import Ledger

__all__ = ["SCHEMA_VERSION", "ChunkRecord", "ChunkState", "Ledger", "RunRecord", "RunStatus"]
