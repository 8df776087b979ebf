"""What the source schema says about tables and columns, resolved to the value rules.

These are plain values shared by `source` (which reflects them) and `mapping` (which validates and
compiles against them), so neither package imports the other.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class ValueKind(enum.Enum):
    """The value rule a column follows (docs/mapping.md, "Value rules").

    The staged (normalised) Python type of each kind is fixed, so transform never sees driver
    quirks: STRING str; INTEGER int (decimal.Decimal beyond 18 digits); DECIMAL decimal.Decimal
    (declared scale > 0); NUMBER str holding the exact plain decimal (no declared scale, such as
    Oracle's bare NUMBER); FLOAT float; DATE datetime.datetime (naive; written as a date when it
    holds no time of day); TIMESTAMP datetime.datetime (naive); TIMESTAMP_TZ datetime.datetime
    (aware, UTC); BOOLEAN bool; BINARY bytes; JSON str (JSON text).
    """

    STRING = "string"
    INTEGER = "integer"
    DECIMAL = "decimal"
    NUMBER = "number"
    FLOAT = "float"
    DATE = "date"
    TIMESTAMP = "timestamp"
    TIMESTAMP_TZ = "timestamp_tz"
    BOOLEAN = "boolean"
    BINARY = "binary"
    JSON = "json"


@dataclass(frozen=True, slots=True)
class ColumnType:
    """A declared column type resolved to its value rule."""

    kind: ValueKind
    declared: str
    precision: int | None = None
    scale: int | None = None


@dataclass(frozen=True, slots=True)
class ColumnInfo:
    name: str
    type: ColumnType
    nullable: bool = True


@dataclass(frozen=True, slots=True)
class TableInfo:
    """A reflected table. `columns` keeps the table's column order."""

    name: str
    columns: tuple[ColumnInfo, ...]
    primary_key: tuple[str, ...] = ()
    unique: tuple[tuple[str, ...], ...] = ()

    def column(self, name: str) -> ColumnInfo | None:
        """The column called `name`, matched without regard to case."""
        wanted = name.casefold()
        for column in self.columns:
            if column.name.casefold() == wanted:
                return column
        return None


@dataclass(frozen=True, slots=True)
class SchemaInfo:
    """The reflected tables of a source, matched by name without regard to case."""

    tables: dict[str, TableInfo] = field(default_factory=dict)

    def table(self, name: str) -> TableInfo | None:
        found = self.tables.get(name)
        if found is not None:
            return found
        wanted = name.casefold()
        for key, table in self.tables.items():
            if key.casefold() == wanted:
                return table
        return None


@dataclass(frozen=True, slots=True)
class ForeignKey:
    """`columns` of a table refer to `referred_columns` of `referred_table` (in that order)."""

    columns: tuple[str, ...]
    referred_table: str
    referred_columns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TableLinks:
    """What a table's keys and indexes say about how it is reached: its foreign keys, and the
    column lists (in order) of every index, primary key and unique constraint it has. Read apart
    from `TableInfo` (by `migrate.source.probe.links`): only `scaffold` and `check`'s warnings need
    them, and they cost catalog queries that runs and reconciliations do not pay."""

    foreign_keys: tuple[ForeignKey, ...] = ()
    indexes: tuple[tuple[str, ...], ...] = ()

    def has_index(self, columns: tuple[str, ...] | list[str]) -> bool:
        """Whether some index starts with exactly these columns (in any order): the database
        can then find a parent's rows without reading the whole table."""
        wanted = {c.casefold() for c in columns}
        for index in self.indexes:
            leading = {c.casefold() for c in index[: len(wanted)]}
            if len(index) >= len(wanted) and leading == wanted:
                return True
        return False
