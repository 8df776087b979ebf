"""Reconciliation: prove, per document, that the target holds exactly what the source says.

Expected checksums are rebuilt from the source (or the run's staged files), actual ones read from
the target's chunk index; chunks are compared by aggregate first and by key only when they differ.
"""

from migrate.reconcile.model import (
    Against,
    ChunkOutcome,
    Difference,
    DocTypeResult,
    Kind,
    Options,
    ServiceResult,
)
from migrate.reconcile.repair import RepairReport, repair_service
from migrate.reconcile.sample import in_sample, parse_sample
from migrate.reconcile.service import reconcile_service, reconcile_services

__all__ = [
    "Against",
    "ChunkOutcome",
    "Difference",
    "DocTypeResult",
    "Kind",
    "Options",
    "RepairReport",
    "ServiceResult",
    "in_sample",
    "parse_sample",
    "reconcile_service",
    "reconcile_services",
    "repair_service",
]
