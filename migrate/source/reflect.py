"""Schema reflection: names and keys from SQLAlchemy's Inspector, types from the declared text.

SQLAlchemy maps SQLite's declared types by affinity (RAW(16) becomes NUMERIC, BINARY_DOUBLE an
unknown), so on SQLite the declared text comes from `PRAGMA table_info`; elsewhere it is the
reflected type compiled for the dialect (`NUMERIC(10, 2)`, `TIMESTAMP WITH TIME ZONE`), which
`resolve_type` reads the same way.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.engine.interfaces import ReflectedColumn
from sqlalchemy.engine.reflection import ObjectKind, ObjectScope
from sqlalchemy.sql import sqltypes

from migrate.errors import SourceError
from migrate.schema import ColumnInfo, ForeignKey, SchemaInfo, TableInfo, TableLinks
from migrate.source.types import resolve_type


class Reflector:
    """Reflects tables through one connection. `skipped` names columns whose type no rule covers:
    they are left out of the schema (a mapping that uses one is told the column does not exist)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.dialect = connection.dialect
        self.inspector = sa.inspect(connection)
        self.skipped: dict[str, dict[str, str]] = {}
        self._batch: dict[str, dict[str, Any]] = {}  # what `_prefetch` read, by kind and table

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
        self._prefetch(names)
        result = {}
        for name in names:
            table = self.table(name)
            result[table.name] = table
        return SchemaInfo(result)

    def _prefetch(self, names: list[str]) -> None:
        """PostgreSQL: every table's columns, keys and indexes in one catalog query per kind
        (SQLAlchemy's own per-table calls run the same queries filtered to one table)."""
        if self.dialect.name != "postgresql" or not names:
            return
        options: dict[str, Any] = {
            "filter_names": names,
            "kind": ObjectKind.ANY,
            "scope": ObjectScope.ANY,
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", sa.exc.SAWarning)  # as in `_declared`
            reads: dict[str, Mapping[tuple[str | None, str], Any]] = {
                "columns": self.inspector.get_multi_columns(**options),
                "pk": self.inspector.get_multi_pk_constraint(**options),
                "unique": self.inspector.get_multi_unique_constraints(**options),
                "indexes": self.inspector.get_multi_indexes(**options),
            }
        for kind, found in reads.items():
            self._batch[kind] = {table: value for (_, table), value in found.items()}

    def _read(self, kind: str, name: str, single: Callable[[str], Any]) -> Any:
        """What `_prefetch` read for the table, else SQLAlchemy's per-table call."""
        found = self._batch.get(kind, {})
        return found[name] if name in found else single(name)

    def table(self, name: str) -> TableInfo:
        columns = self._declared(name)
        shown = self._name(name)
        kept = []
        for column_name, declared, nullable in columns:
            try:
                kept.append(ColumnInfo(column_name, resolve_type(declared), nullable))
            except SourceError:
                self.skipped.setdefault(shown, {})[column_name] = declared
        pk = self._read("pk", name, self.inspector.get_pk_constraint)
        primary = pk.get("constrained_columns") or []
        unique: list[tuple[str, ...]] = []
        for constraint in self._read("unique", name, self.inspector.get_unique_constraints):
            unique.append(tuple(self._name(c) for c in constraint["column_names"]))
        for index in self._read("indexes", name, self.inspector.get_indexes):
            columns_of = index.get("column_names") or []
            if index.get("unique") and columns_of and all(c is not None for c in columns_of):
                unique.append(tuple(self._name(c) for c in columns_of if c is not None))
        return TableInfo(
            name=shown,
            columns=tuple(kept),
            primary_key=tuple(self._name(c) for c in primary),
            unique=tuple(dict.fromkeys(u for u in unique if u)),
        )

    def links(self, tables: Iterable[str], *, indexes: bool = True) -> dict[str, TableLinks]:
        """Foreign keys and (unless not wanted) index column lists of the named tables (those
        that exist), by the name the database reports. One catalog read per kind for all the
        tables where the dialect batches them (PostgreSQL, Oracle), else per table."""
        wanted = {t.casefold() for t in tables}
        names = [
            n
            for n in self.inspector.get_table_names()
            if self._name(n).casefold() in wanted or n in wanted
        ]
        if not names:
            return {}
        options: dict[str, Any] = {
            "filter_names": names,
            "kind": ObjectKind.TABLE,
            "scope": ObjectScope.ANY,
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", sa.exc.SAWarning)  # as in `_declared`
            reads: dict[str, Mapping[tuple[str | None, str], Any]] = {
                "fk": self.inspector.get_multi_foreign_keys(**options)
            }
            if indexes:
                reads["pk"] = self.inspector.get_multi_pk_constraint(**options)
                reads["unique"] = self.inspector.get_multi_unique_constraints(**options)
                reads["indexes"] = self.inspector.get_multi_indexes(**options)
        by_table = {kind: {t: v for (_, t), v in found.items()} for kind, found in reads.items()}
        found = {}
        for name in names:
            lists = self._index_lists(
                by_table.get("pk", {}).get(name),
                by_table.get("unique", {}).get(name, []),
                by_table.get("indexes", {}).get(name, []),
            )
            keys = self._foreign_keys(by_table["fk"].get(name, []))
            found[self._name(name)] = TableLinks(keys, lists)
        return found

    def _foreign_keys(self, reflected: Iterable[Any]) -> tuple[ForeignKey, ...]:
        """Foreign keys, each with the table and columns it refers to."""
        keys = []
        for fk in reflected:
            columns = tuple(self._name(c) for c in fk["constrained_columns"])
            referred = tuple(self._name(c) for c in fk["referred_columns"])
            if columns and len(columns) == len(referred):
                keys.append(ForeignKey(columns, self._name(fk["referred_table"]), referred))
        return tuple(keys)

    def _index_lists(
        self, pk: Any, uniques: Iterable[Any], indexes: Iterable[Any]
    ) -> tuple[tuple[str, ...], ...]:
        """The column lists of a primary key, unique constraints and indexes (an index on an
        expression is left out: it serves no plain column lookup)."""
        found: list[tuple[str, ...]] = []
        if pk:
            found.append(tuple(self._name(c) for c in pk.get("constrained_columns") or []))
        for constraint in uniques:
            found.append(tuple(self._name(c) for c in constraint["column_names"]))
        for index in indexes:
            columns = index.get("column_names") or []
            if columns and all(c is not None for c in columns):
                found.append(tuple(self._name(c) for c in columns if c is not None))
        return tuple(dict.fromkeys(cols for cols in found if cols))

    def _declared(self, name: str) -> list[tuple[str, str, bool]]:
        """(column, declared type text, nullable) in table order."""
        if self.dialect.name == "sqlite":
            quoted = self.dialect.identifier_preparer.quote_identifier(name)
            rows = self.connection.exec_driver_sql(f"PRAGMA table_info({quoted})").fetchall()
            return [(str(r[1]), str(r[2] or ""), not r[3]) for r in rows]
        with warnings.catch_warnings():
            # An unrecognised type becomes NullType with a warning; it is reported as skipped.
            warnings.simplefilter("ignore", sa.exc.SAWarning)
            reflected = self._read("columns", name, self.inspector.get_columns)
        return [(self._name(c["name"]), self._type_text(c), bool(c["nullable"])) for c in reflected]

    def _type_text(self, column: ReflectedColumn) -> str:
        type_: Any = column["type"]
        if isinstance(type_, sqltypes.NullType):
            return "unrecognised"
        try:
            return str(type_.compile(dialect=self.dialect))
        except sa.exc.CompileError:
            return type(type_).__name__.upper()
