"""The ledger: durable state of runs and chunks, their checkpoints, verifications and audit log."""

from migrate.ledger.records import ChunkRecord, RunRecord
from migrate.ledger.schema import SCHEMA_VERSION
from migrate.ledger.states import ChunkState, RunStatus
from migrate.ledger.store import Ledger, new_run_id
from migrate.ledger.verifications import ChunkVerification, VerificationRecord

__all__ = [
    "SCHEMA_VERSION",
    "ChunkRecord",
    "ChunkState",
    "ChunkVerification",
    "Ledger",
    "RunRecord",
    "RunStatus",
    "VerificationRecord",
    "new_run_id",
]
