"""One `SourceDialect` per source engine: the only place where engines differ (see `base`)."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from migrate.source.dialects.base import BATCH_ROWS, SourceDialect, View, ViewBusy
from migrate.source.dialects.mysql import MySQLDialect
from migrate.source.dialects.oracle import OracleDialect
from migrate.source.dialects.postgresql import PostgreSQLDialect
from migrate.source.dialects.sqlite import SQLiteDialect

_KNOWN: tuple[type[SourceDialect], ...] = (
    SQLiteDialect,
    PostgreSQLDialect,
    MySQLDialect,
    OracleDialect,
)


def dialect_class(backend: str) -> type[SourceDialect]:
    """The rules for a SQLAlchemy backend name (the plain ones for an engine not listed)."""
    for known in _KNOWN:
        if backend in known.names:
            return known
    return SourceDialect


def dialect_for(engine: Engine) -> SourceDialect:
    rules = dialect_class(engine.dialect.name)(engine)
    rules.configure()
    return rules


__all__ = [
    "BATCH_ROWS",
    "MySQLDialect",
    "OracleDialect",
    "PostgreSQLDialect",
    "SQLiteDialect",
    "SourceDialect",
    "View",
    "ViewBusy",
    "dialect_class",
    "dialect_for",
]
