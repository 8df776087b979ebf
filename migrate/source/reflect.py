"""Schema reflection: names and keys from SQLAlchemy's Inspector, types by the engine's rules.

Each engine's `SourceDialect` gives a table's columns with their types resolved: from the declared
text on SQLite (SQLAlchemy maps its declared types by affinity: RAW(16) becomes NUMERIC), and
elsewhere from the reflected type compiled for the dialect (`NUMERIC(10, 2)`, `TIMESTAMP WITH
TIME ZONE`), which `resolve_type` reads the same way, with the engine's own meanings on top
(a MariaDB TIMESTAMP is an instant, its JSON a checked LONGTEXT).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.engine.interfaces import ReflectedColumn
from sqlalchemy.engine.reflection import ObjectKind, ObjectScope

from migrate.errors import ConfigError, SourceError
from migrate.schema import ColumnInfo, ColumnType, ForeignKey, SchemaInfo, TableInfo, TableLinks
from migrate.source.dialects import SourceDialect
from migrate.source.types import resolve_type


class Reflector:
    """Reflects tables through one connection. `skipped` names columns whose type no rule covers:
    they are left out of the schema (a mapping that uses one is told the column does not exist)."""

    def __init__(
        self,
        connection: Connection,
        rules: SourceDialect,
        *,
        schema: str | None = None,
        types: Mapping[str, str] | None = None,
    ) -> None:
        self.connection = connection
        self.rules = rules
        self.dialect = connection.dialect
        self.schema_name = schema
        self.inspector = sa.inspect(connection)
        self.skipped: dict[str, dict[str, str]] = {}
        self._batch: dict[str, dict[str, Any]] = {}  # what `prefetch` read, by kind and table
        # [source.types]: (table, column) folded -> the declared type the column is read by
        self._types: dict[tuple[str, str], tuple[str, str]] = {}
        for name, declared in (types or {}).items():
            table, _, column = name.partition(".")
            self._types[(table.casefold(), column.casefold())] = (name, declared)

    def _name(self, name: str) -> str:
        """The name as the database reports it (SQLAlchemy lower-cases Oracle's names)."""
        if self.dialect.requires_name_normalize:
            return self.dialect.denormalize_name(name) or name
        return name

    def schema(self, tables: Iterable[str] | None = None) -> SchemaInfo:
        schema = self.schema_name
        names = [
            *self.inspector.get_table_names(schema=schema),
            *self.inspector.get_view_names(schema=schema),
        ]
        if tables is not None:
            wanted = {t.casefold() for t in tables}
            names = [n for n in names if self._name(n).casefold() in wanted or n in wanted]
        self._batch = self.rules.prefetch(self.inspector, names, schema)
        result = {}
        for name in names:
            table = self.table(name)
            result[table.name] = table
        return SchemaInfo(result)

    def _read(self, kind: str, name: str, single: Callable[..., Any]) -> Any:
        """What `prefetch` read for the table, else SQLAlchemy's per-table call."""
        found = self._batch.get(kind, {})
        return found[name] if name in found else single(name, schema=self.schema_name)

    def _columns(self, name: str) -> list[ReflectedColumn]:
        with warnings.catch_warnings():
            # An unrecognised type becomes NullType with a warning; it is reported as skipped.
            warnings.simplefilter("ignore", sa.exc.SAWarning)
            columns: list[ReflectedColumn] = self._read("columns", name, self.inspector.get_columns)
        return columns

    def _override(self, table: str, column: str) -> ColumnType:
        setting, declared = self._types[(table.casefold(), column.casefold())]
        try:
            return resolve_type(declared)
        except SourceError as exc:
            raise ConfigError(
                f"[source.types] {setting} = {declared!r}: {exc.message}", hint=exc.hint
            ) from None

    def table(self, name: str) -> TableInfo:
        shown = self._name(name)
        kept = []
        declared = self.rules.declared(
            self.connection, name, self.schema_name, lambda: self._columns(name)
        )
        overridden = {c for t, c in self._types if t == shown.casefold()}
        for column_name, found, nullable in declared:
            exact = self._name(column_name)
            resolved = found
            if (shown.casefold(), exact.casefold()) in self._types:
                overridden.discard(exact.casefold())
                resolved = self._override(shown, exact)
            if isinstance(resolved, str):
                self.skipped.setdefault(shown, {})[exact] = resolved
            else:
                kept.append(ColumnInfo(exact, resolved, nullable))
        if overridden:
            setting, _ = self._types[(shown.casefold(), sorted(overridden)[0])]
            raise ConfigError(
                f"[source.types] names {setting}, which is not a column of {shown}",
                hint="name an existing TABLE.COLUMN, or remove the line from migrate.toml",
            )
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
            for n in self.inspector.get_table_names(schema=self.schema_name)
            if self._name(n).casefold() in wanted or n in wanted
        ]
        if not names:
            return {}
        options: dict[str, Any] = {
            "filter_names": names,
            "schema": self.schema_name,
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
