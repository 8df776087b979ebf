"""The parsed mapping file: what the user wrote, with where they wrote it.

Names here are as written (not yet matched against the schema); every piece keeps its line and field
path so validation can point at it. Validation and compilation resolve names against `SchemaInfo`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NULLS_MODES = ("omit", "keep")
KEY_ESCAPES = frozenset({"percent"})
RESERVED_KEYS = frozenset(
    {
        "column",
        "as",
        "values",
        "default",
        "literal",
        "embed",
        "lookup",
        "on",
        "order_by",
        "single",
        "fields",
        "field",
    }
)


@dataclass(frozen=True, slots=True)
class Loc:
    """Where something is: its line (1-based) and field path, plus the lines of its own keys."""

    line: int
    path: str
    lines: tuple[tuple[str, int], ...] = ()

    def at(self, key: str) -> Loc:
        """The location of one of this item's keys (its own line when the key is absent)."""
        for name, line in self.lines:
            if name == key:
                return Loc(line, f"{self.path}.{key}")
        return Loc(self.line, f"{self.path}.{key}")


@dataclass(frozen=True, slots=True)
class Name:
    """A table or column name as written, with where it was written."""

    text: str
    loc: Loc


@dataclass(frozen=True, slots=True)
class JoinPair:
    """One `on:` entry: `their` column (the embedded or looked-up table) = `our` column (holder)."""

    their: Name
    our: Name


@dataclass(frozen=True, slots=True)
class ValueEntry:
    """One `values:` entry: the code as the raw text written in YAML, and its translation."""

    code: str
    value: Any
    line: int


@dataclass(frozen=True, slots=True)
class ColumnField:
    name: str
    loc: Loc
    column: Name
    as_: Name | None = None
    values: tuple[ValueEntry, ...] | None = None
    default: Any = None
    has_default: bool = False


@dataclass(frozen=True, slots=True)
class ListField:
    """`[C1, C2, ...]`: an array of the columns' values, NULLs dropped."""

    name: str
    loc: Loc
    columns: tuple[Name, ...]


@dataclass(frozen=True, slots=True)
class LiteralField:
    name: str
    loc: Loc
    value: Any


@dataclass(frozen=True, slots=True)
class ObjectField:
    name: str
    loc: Loc
    fields: tuple[Field, ...]


@dataclass(frozen=True, slots=True)
class EmbedField:
    name: str
    loc: Loc
    table: Name
    on: tuple[JoinPair, ...]
    fields: tuple[Field, ...]
    order_by: tuple[Name, ...] = ()
    single: bool = False


@dataclass(frozen=True, slots=True)
class LookupField:
    """Many-to-one: an object (`fields`) or one value (`field`); exactly one of them is set."""

    name: str
    loc: Loc
    table: Name
    on: tuple[JoinPair, ...]
    fields: tuple[Field, ...] | None = None
    field: Name | None = None


Field = ColumnField | ListField | LiteralField | ObjectField | EmbedField | LookupField


@dataclass(frozen=True, slots=True)
class IndexModel:
    """A secondary index. `source` is a column or a document path; `column_form` is True when
    written as `{column: C, as: T}`, which always names a column."""

    name: str
    loc: Loc
    source: Name
    column_form: bool = False
    as_: Name | None = None


@dataclass(frozen=True, slots=True)
class DocTypeModel:
    name: str
    loc: Loc
    table: Name
    bucket: str
    fields: tuple[Field, ...]
    bucket_type: str = "default"
    key: Name | None = None
    key_escape: str | None = None  # "percent": the template's separators escaped inside values
    where: str | None = None
    nulls: str = "omit"
    indexes: tuple[IndexModel, ...] = ()


@dataclass(slots=True)
class Mapping:
    """One service's mapping file."""

    service: str
    path: Path
    documents: list[DocTypeModel] = field(default_factory=list)
    description: str | None = None
