"""Schema reflection: names and keys from SQLAlchemy's Inspector, types from the declared text.

SQLAlchemy maps SQLite's declared types by affinity (RAW(16) becomes NUMERIC, BINARY_DOUBLE an
unknown), so on SQLite the declared text comes from `PRAGMA table_info`; elsewhere it is the
reflected type compiled for the dialect (`NUMERIC(10, 2)`, `TIMESTAMP WITH TIME ZONE`), which
`resolve_type` reads the same way.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.engine.interfaces import ReflectedColumn
from sqlalchemy.sql import sqltypes

from migrate.errors import SourceError
from migrate.schema import ColumnInfo, SchemaInfo, TableInfo
from migrate.source.types import resolve_type


class Reflector:
    """Reflects tables through one connection. `skipped` names columns whose type no rule covers:
    they are left out of the schema (a mapping that uses one is told the column does not exist)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.dialect = connection.dialect
        self.inspector = sa.inspect(connection)
        self.skipped: dict[str, dict[str, str]] = {}

    def _name(self, name: str) -> str:
        """The name as the database reports it (SQLAlchemy lower-cases Oracle's names)."""
        if self.dialect.requires_name_normalize:
            return self.dialect.denormalize_name(name) or name
        return name

    def schema(self, tables: Iterable[str] | None = None) -> SchemaInfo:
        names = [*self.inspector.get_table_names(), *self.inspector.get_view_names()]
        if tables is not None:
            wanted = {t.casefold() for t in tables}
            names = [n for n in names if self._name(n).casefold() in wanted or n in wanted]
        result = {}
        for name in names:
            table = self.table(name)
            result[table.name] = table
        return SchemaInfo(result)

    def table(self, name: str) -> TableInfo:
        columns = self._declared(name)
        shown = self._name(name)
        kept = []
        for column_name, declared, nullable in columns:
            try:
                kept.append(ColumnInfo(column_name, resolve_type(declared), nullable))
            except SourceError:
                self.skipped.setdefault(shown, {})[column_name] = declared
        primary = self.inspector.get_pk_constraint(name).get("constrained_columns") or []
        unique: list[tuple[str, ...]] = []
        for constraint in self.inspector.get_unique_constraints(name):
            unique.append(tuple(self._name(c) for c in constraint["column_names"]))
        for index in self.inspector.get_indexes(name):
            columns_of = index.get("column_names") or []
            if index.get("unique") and columns_of and all(c is not None for c in columns_of):
                unique.append(tuple(self._name(c) for c in columns_of if c is not None))
        return TableInfo(
            name=shown,
            columns=tuple(kept),
            primary_key=tuple(self._name(c) for c in primary),
            unique=tuple(dict.fromkeys(u for u in unique if u)),
        )

    def _declared(self, name: str) -> list[tuple[str, str, bool]]:
        """(column, declared type text, nullable) in table order."""
        if self.dialect.name == "sqlite":
            quoted = self.dialect.identifier_preparer.quote_identifier(name)
            rows = self.connection.exec_driver_sql(f"PRAGMA table_info({quoted})").fetchall()
            return [(str(r[1]), str(r[2] or ""), not r[3]) for r in rows]
        with warnings.catch_warnings():
            # An unrecognised type becomes NullType with a warning; it is reported as skipped.
            warnings.simplefilter("ignore", sa.exc.SAWarning)
            reflected = self.inspector.get_columns(name)
        return [(self._name(c["name"]), self._type_text(c), bool(c["nullable"])) for c in reflected]

    def _type_text(self, column: ReflectedColumn) -> str:
        type_: Any = column["type"]
        if isinstance(type_, sqltypes.NullType):
            return "unrecognised"
        try:
            return str(type_.compile(dialect=self.dialect))
        except sa.exc.CompileError:
            return type(type_).__name__.upper()
