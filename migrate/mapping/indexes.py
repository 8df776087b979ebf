"""Secondary indexes: names, where their values come from, how entries are taken from a document.

A source is a root-table column, or a path of field names into the built document. Along a path,
arrays are walked element by element at any depth; every scalar found is one entry.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from migrate.document import IndexValue
from migrate.mapping.keys import RowError, guard
from migrate.mapping.model import (
    DocTypeModel,
    EmbedField,
    Field,
    IndexModel,
    LiteralField,
    LookupField,
    ObjectField,
)
from migrate.mapping.values import ValueRuleError, json_converter, json_text, text_converter
from migrate.schema import ColumnInfo, TableInfo

IndexEntries = Callable[[tuple[Any, ...], Any], list[IndexValue]]

INDEX_NAME = re.compile(r"^[a-z0-9_]+_(bin|int)$")
RESERVED_PREFIXES = ("$", "migrate_")


def name_problem(name: str) -> str | None:
    """Why `name` cannot be an index name, or None when it can."""
    for prefix in RESERVED_PREFIXES:
        if name.startswith(prefix):
            return f"index names starting with `{prefix}` are reserved"
    if not INDEX_NAME.match(name):
        return "an index name is lowercase letters, digits and `_`, ending in `_bin` or `_int`"
    return None


def is_int_index(name: str) -> bool:
    return name.endswith("_int")


@dataclass(frozen=True, slots=True)
class ColumnSource:
    column: ColumnInfo


@dataclass(frozen=True, slots=True)
class PathSource:
    segments: tuple[str, ...]


IndexSource = ColumnSource | PathSource


def resolve_source(index: IndexModel, table: TableInfo, doc: DocTypeModel) -> IndexSource | str:
    """Where the index's values come from, or why the source names nothing."""
    text = index.source.text
    if index.column_form:
        column = table.column(text)
        return ColumnSource(column) if column else f"root table has no column `{text}`"
    if "." not in text:
        column = table.column(text)
        if column is not None:
            return ColumnSource(column)
    segments = tuple(text.split("."))
    problem = _path_problem(doc.fields, segments)
    return problem if problem else PathSource(segments)


def _path_problem(fields: tuple[Field, ...], segments: tuple[str, ...]) -> str | None:
    """Why a path does not end at a value of the document, or None when it does."""
    current: tuple[Field, ...] | None = fields
    walked: list[str] = []
    for position, segment in enumerate(segments):
        walked.append(segment)
        if current is None:
            return f"`{'.'.join(walked[:-1])}` is a value; it has no field `{segment}`"
        found = next((f for f in current if f.name == segment), None)
        if found is None:
            where = "the document" if position == 0 else f"`{'.'.join(walked[:-1])}`"
            return f"{where} has no field `{segment}`"
        if isinstance(found, LiteralField):
            return _literal_problem(found.value, segments[position + 1 :], walked)
        current = _children(found)
    if current is not None:
        return f"`{'.'.join(segments)}` is an object; name a field inside it"
    return None


def _children(field: Field) -> tuple[Field, ...] | None:
    if isinstance(field, ObjectField | EmbedField):
        return field.fields
    if isinstance(field, LookupField):
        return field.fields
    return None


def _literal_problem(value: Any, rest: tuple[str, ...], walked: list[str]) -> str | None:
    if not rest:
        return None
    found = list(walk(value, rest))
    if not found:
        return f"the literal at `{'.'.join(walked)}` has no field `{'.'.join(rest)}`"
    return None


def walk(value: Any, segments: tuple[str, ...]) -> Iterator[Any]:
    """Every value found along `segments` in a built JSON value, walking arrays at any depth."""
    if isinstance(value, list):
        for item in value:
            yield from walk(item, segments)
        return
    if not segments:
        yield value
        return
    if isinstance(value, dict):
        child = value.get(segments[0])
        if child is not None:
            yield from walk(child, segments[1:])


def as_index_int(value: Any) -> int | None:
    """The integer an `_int` entry holds, or None when the value is not an integer.

    Booleans are not integers here; a decimal counts only when JSON writes it without a fraction.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal) and value.is_finite():
        exponent = value.as_tuple().exponent
        if isinstance(exponent, int) and exponent >= 0:
            return int(value)
    return None


def json_kind(value: Any) -> str:
    """The JSON kind of a value, for reasons that must not show the value itself."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float | Decimal):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return type(value).__name__


def compile_path_values(
    name: str, segments: tuple[str, ...]
) -> Callable[[Iterable[Any]], list[IndexValue]]:
    """A function giving one path index's entries from the values found at the path's end (each
    walked into when it is an array): skips nulls and objects, as the document walk does."""
    field = f"indexes.{name}"
    is_int = is_int_index(name)
    origin = f"path {'.'.join(segments)}"

    def entries(found: Iterable[Any]) -> list[IndexValue]:
        out: list[IndexValue] = []
        for leaf in found:
            for value in walk(leaf, ()):
                if value is None or isinstance(value, dict):
                    continue
                if is_int:
                    number = as_index_int(value)
                    if number is None:
                        kind = json_kind(value)
                        raise RowError(field, f"`{name}` needs integers; {origin} gives a {kind}")
                    out.append(number)
                    continue
                try:
                    text = json_text(value)
                except ValueRuleError as exc:
                    raise RowError(field, f"{origin}: {exc.reason}") from None
                if text:
                    out.append(text)
        return out

    return entries


def compile_index(
    index: IndexModel, doc: DocTypeModel, table: TableInfo, position: Callable[[str], int]
) -> IndexEntries:
    """A function giving one index's entries for a root row and its built document."""
    name, field = index.name, f"indexes.{index.name}"
    is_int = is_int_index(name)
    source = resolve_source(index, table, doc)
    if isinstance(source, str):
        raise KeyError(f"index {name}: {source}")

    def integer(value: Any, origin: str) -> int:
        number = as_index_int(value)
        if number is None:
            kind = json_kind(value)
            raise RowError(field, f"`{name}` needs integers; {origin} gives a {kind}")
        return number

    if isinstance(source, PathSource):
        segments = source.segments
        of_values = compile_path_values(name, segments)

        def from_path(row: tuple[Any, ...], document: Any) -> list[IndexValue]:
            return of_values(walk(document, segments))

        return from_path
    column = source.column
    at = position(column.name)
    as_ = index.as_.text if index.as_ is not None else None
    origin = f"column {column.name}"
    if is_int:
        convert = guard(json_converter(column.type, as_), column.name, field)

        def int_column(row: tuple[Any, ...], document: Any) -> list[IndexValue]:
            raw = row[at]
            return [] if raw is None else [integer(convert(raw), origin)]

        return int_column
    if as_ is None:
        to_text = text_converter(column.type)
    else:
        as_value = json_converter(column.type, as_)

        def to_text(raw: Any) -> str:
            return json_text(as_value(raw))

    text_of = guard(to_text, column.name, field)

    def bin_column(row: tuple[Any, ...], document: Any) -> list[IndexValue]:
        raw = row[at]
        if raw is None:
            return []
        text = text_of(raw)
        return [text] if text else []

    return bin_column
