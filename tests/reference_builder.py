"""A deliberately plain reference document builder, for the differential test.

The real builder in `migrate.mapping` is optimised (chunks, key ranges, compiled plans). This one is
the opposite on purpose: one root row at a time, one parameterised query per embed and lookup,
every rule of docs/mapping.md and docs/mapping-semantics.md written out literally, stdlib `sqlite3`
and PyYAML only. When the two disagree on the demo database, one of them has misread a rule.

Values are exact: decimals are `decimal.Decimal` with their digits, floats are written by `repr`
(shortest round trip). Each document carries `canonical` (our own canonical JSON text) and
`value`, which is `json.loads(canonical, parse_float=Decimal)`: the parse the test applies to
`migrate dump` lines.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

__all__ = ["ReferenceBuildError", "build_reference"]

RESERVED = {"column", "as", "values", "default", "literal", "embed", "lookup", "on", "order_by"}
RESERVED |= {"single", "fields", "field"}
AS_NAMES = {"string", "integer", "decimal", "number", "boolean", "date", "datetime", "base64"}
AS_NAMES |= {"json", "yyyymmdd"}
TRUE_TEXT = {"y", "t", "true", "yes", "1"}
FALSE_TEXT = {"n", "f", "false", "no", "0"}
INT_TEXT = re.compile(r"[+-]?\d+")
NUMBER_TEXT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
DATE_PREFIX = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
# Enough digits that no declared NUMBER(p,s), and no integer we meet, is ever rounded.
CTX = Context(prec=1000, rounding=ROUND_HALF_UP)
ABSENT = object()  # "make no field"


class ReferenceBuildError(Exception):
    """The mapping or schema is wrong for this builder: the test's setup, not a row, is at fault."""


class RowReject(Exception):
    """A root row breaks a rule; `field` says where (dotted field path, `key` or an index name)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class BadValue(Exception):
    """A value that its column's kind or an `as:` cannot take; the reason never quotes the value."""


# ---------------------------------------------------------------- mapping YAML


def load_tree(path: Path) -> Any:
    """Compose the YAML and keep scalars as nodes, so names and `values` codes stay the raw text
    (YAML 1.1 would read `NO:`, `Y:` or `on:` as booleans)."""
    root = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    if root is None:
        raise ReferenceBuildError(f"{path}: empty mapping file")
    return _tree(root)


def _tree(node: Node) -> Any:
    if isinstance(node, MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                raise ReferenceBuildError(f"line {key_node.start_mark.line + 1}: non-scalar key")
            out[key_node.value] = _tree(value_node)
        return out
    if isinstance(node, SequenceNode):
        return [_tree(item) for item in node.value]
    return node


def text(item: Any) -> str:
    """A name as written (table, column, code, template...)."""
    if not isinstance(item, ScalarNode):
        raise ReferenceBuildError(f"expected a plain name, found {type(item).__name__}")
    return str(item.value)


def const(item: Any) -> Any:
    """A constant (`literal`, `values` targets, `default`) as YAML reads it; keys stay raw text,
    and YAML dates stay the text written, since JSON has no date type."""
    if isinstance(item, dict):
        return {key: const(value) for key, value in item.items()}
    if isinstance(item, list):
        return [const(value) for value in item]
    value = yaml.constructor.SafeConstructor().construct_object(item, deep=True)
    if isinstance(value, dt.date | bytes):
        return str(item.value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ReferenceBuildError("a constant that is not a finite number")
    return value


# ---------------------------------------------------------------- schema


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # one of the kinds in docs/mapping-semantics.md
    scale: int | None


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    pk: tuple[str, ...]

    def col(self, name: str) -> Column:
        found = self.find(name)
        if found is None:
            raise ReferenceBuildError(f"table {self.name} has no column {name}")
        return found

    def find(self, name: str) -> Column | None:
        for column in self.columns:
            if column.name.casefold() == name.casefold():
                return column
        return None


def resolve_type(declared: str) -> tuple[str, int | None]:
    """The value kind (and scale) of a declared type, read from the table of kinds."""
    upper = " ".join(declared.upper().split())
    base = " ".join(re.sub(r"\([^)]*\)", " ", upper).split())
    match = re.search(r"\(([^)]*)\)", upper)
    args = [a.strip() for a in match.group(1).split(",")] if match else []
    if base in ("TIMESTAMP WITH TIME ZONE", "TIMESTAMP WITH LOCAL TIME ZONE", "TIMESTAMPTZ"):
        return "timestamp_tz", None
    if base in ("TIMESTAMP", "TIMESTAMP WITHOUT TIME ZONE", "DATETIME"):
        return "timestamp", None
    if base == "DATE":
        return "date", None
    if base in ("NUMBER", "NUMERIC", "DECIMAL"):
        if not args:
            return "number", None
        scale = int(args[1]) if len(args) > 1 else 0
        return ("decimal", scale) if scale > 0 else ("integer", 0)
    if base in ("INTEGER", "INT", "SMALLINT", "BIGINT"):
        return "integer", None
    if base in ("FLOAT", "REAL", "DOUBLE", "DOUBLE PRECISION", "BINARY_FLOAT", "BINARY_DOUBLE"):
        return "float", None
    if base in ("BLOB", "RAW", "LONG RAW", "BYTEA", "BINARY", "VARBINARY"):
        return "binary", None
    strings = ("CHAR", "VARCHAR", "VARCHAR2", "NCHAR", "NVARCHAR2", "TEXT", "CLOB", "NCLOB", "LONG")
    if base in strings:
        return "string", None
    if base in ("BOOLEAN", "BOOL"):
        return "boolean", None
    if base in ("JSON", "JSONB"):
        return "json", None
    raise ReferenceBuildError(f"declared type {declared!r} has no value rule")


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Source:
    """The SQLite file, read-only, with tables found without regard to case."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        names = conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")
        self.names = [str(row[0]) for row in names]
        self.tables: dict[str, Table] = {}

    def table(self, name: str) -> Table:
        real = next((n for n in self.names if n.casefold() == name.casefold()), None)
        if real is None:
            raise ReferenceBuildError(f"no table {name} in the source")
        if real not in self.tables:
            info = self.conn.execute(f"PRAGMA table_info({quote(real)})").fetchall()
            columns = tuple(Column(str(r[1]), *resolve_type(str(r[2]))) for r in info)
            pk = tuple(str(r[1]) for r in sorted((r for r in info if r[5]), key=lambda r: r[5]))
            self.tables[real] = Table(real, columns, pk)
        return self.tables[real]

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        cursor = self.conn.execute(sql, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def matching(self, table: Table, pairs: list[tuple[Column, Any]]) -> list[dict[str, Any]]:
        """Rows of `table` whose columns equal the given values; a NULL never matches."""
        if any(value is None for _, value in pairs):
            return []
        where = " AND ".join(f"{quote(column.name)} = ?" for column, _ in pairs)
        sql = f"SELECT * FROM {quote(table.name)} WHERE {where}"
        return self.rows(sql, tuple(value for _, value in pairs))


# ---------------------------------------------------------------- values


def shortest(number: Decimal) -> int | Decimal:
    """The shortest exact decimal: an int when it has no fraction."""
    reduced = number.normalize(CTX)
    exponent = reduced.as_tuple().exponent
    if isinstance(exponent, int) and exponent >= 0:
        return int(reduced)
    return reduced


def to_decimal(raw: Any) -> Decimal | None:
    """An exact decimal from an int, a float (via its shortest repr) or the text of a number."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return Decimal(raw)
    if isinstance(raw, float):
        return Decimal(repr(raw)) if math.isfinite(raw) else None
    if isinstance(raw, Decimal):
        return raw
    if isinstance(raw, str) and NUMBER_TEXT.fullmatch(raw):
        return Decimal(raw)
    return None


def with_scale(number: Decimal, scale: int) -> Decimal:
    """Exactly `scale` places; rounds half up like Oracle does when a value has too many."""
    fixed = number.quantize(Decimal(1).scaleb(-scale), context=CTX)
    return fixed.copy_abs() if fixed.is_zero() else fixed


def parse_datetime(raw: Any, kind: str) -> dt.datetime:
    if not isinstance(raw, str):
        raise BadValue(f"a {kind} column holds a {type(raw).__name__}, not date text")
    try:
        parsed = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise BadValue(f"a {kind} column holds text that is not an ISO date") from None
    if kind == "timestamp_tz":
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=dt.UTC)
        return parsed.astimezone(dt.UTC)
    if parsed.tzinfo is not None:
        raise BadValue(f"a {kind} column holds a time zone")
    return parsed


def typed(column: Column, raw: Any) -> Any:
    """The column's value normalised to its kind (None for NULL); BadValue when it cannot be."""
    if raw is None:
        return None
    kind = column.kind
    what = f"column {column.name} ({kind}) holds a {type(raw).__name__} that"
    if kind == "string":
        if isinstance(raw, str):
            return raw
        if isinstance(raw, int) and not isinstance(raw, bool):
            return str(raw)
        raise BadValue(f"{what} is not text")
    if kind == "integer":
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if isinstance(raw, float) and math.isfinite(raw) and raw.is_integer():
            return int(raw)
        if isinstance(raw, str) and INT_TEXT.fullmatch(raw):
            return int(raw)
        raise BadValue(f"{what} is not an integer")
    if kind in ("decimal", "number"):
        number = to_decimal(raw)
        if number is None:
            raise BadValue(f"{what} is not a number")
        return with_scale(number, column.scale or 0) if kind == "decimal" else shortest(number)
    if kind == "float":
        if isinstance(raw, int | float) and not isinstance(raw, bool) and math.isfinite(raw):
            return float(raw)
        raise BadValue(f"{what} is not a finite number")
    if kind in ("date", "timestamp", "timestamp_tz"):
        return parse_datetime(raw, kind)
    if kind == "boolean":
        if isinstance(raw, int) and raw in (0, 1):
            return bool(raw)
        raise BadValue(f"{what} is not 0 or 1")
    if kind == "binary":
        if isinstance(raw, bytes):
            return raw
        raise BadValue(f"{what} is not bytes")
    if kind == "json":
        return parse_json(raw, what)
    raise ReferenceBuildError(f"unknown kind {kind}")


def parse_json(raw: Any, what: str) -> Any:
    """JSON text to its value; numbers keep their exact digits (2.50 stays 2.50)."""
    if not isinstance(raw, str):
        raise BadValue(f"{what} is not JSON text")
    try:
        value = json.loads(raw, parse_float=Decimal)
    except ValueError:
        raise BadValue(f"{what} is not valid JSON") from None
    canonical(value)  # rejects NaN and infinities, which JSON cannot hold
    return value


def datetime_text(moment: dt.datetime) -> str:
    naive = moment.replace(tzinfo=None)
    body = naive.isoformat(timespec="microseconds" if naive.microsecond else "seconds")
    return body + "Z" if moment.tzinfo is not None else body


def json_value(kind: str, value: Any) -> Any:
    """A non-NULL typed value as the stored JSON holds it."""
    if kind == "date":
        return value.date().isoformat() if value.time() == dt.time(0) else datetime_text(value)
    if kind in ("timestamp", "timestamp_tz"):
        return datetime_text(value)
    if kind == "binary":
        return base64.b64encode(value).decode("ascii")
    return value


def text_form(kind: str, value: Any) -> str:
    """Keys, `_bin` entries, `values` codes, `as: string`: JSON strings bare, the rest as JSON."""
    shown = json_value(kind, value)
    if kind != "json" and isinstance(shown, str):
        return shown
    return canonical(shown)


def convert_as(column: Column, value: Any, target: str) -> Any:
    """Apply an `as:` override to a non-NULL typed value (the table of `as:` in the semantics)."""
    kind = column.kind
    bad = BadValue(f"column {column.name} ({kind}) cannot be read as {target}")
    moments = ("date", "timestamp", "timestamp_tz")
    if target == "string":
        return text_form(kind, value)
    if target in ("integer", "decimal", "number"):
        numeric = kind in ("integer", "decimal", "number", "float")
        number = to_decimal(value) if numeric or kind == "string" else None
        if number is None:
            raise bad
        if target == "integer":
            if kind == "string" and not INT_TEXT.fullmatch(value):
                raise bad
            if number != number.to_integral_value():
                raise bad
            return int(number)
        if target == "number":
            return shortest(number)
        return with_scale(number, column.scale) if column.scale is not None else number
    if target == "boolean":
        if kind == "boolean":
            return value
        if kind == "integer" and value in (0, 1):
            return bool(value)
        if kind == "string" and value.lower() in TRUE_TEXT | FALSE_TEXT:
            return value.lower() in TRUE_TEXT
        raise bad
    if target in ("date", "yyyymmdd"):
        if kind in moments:
            day = value.date()
        elif kind == "string" and (match := DATE_PREFIX.match(value)):
            try:
                day = dt.date(int(match[1]), int(match[2]), int(match[3]))
            except ValueError:
                raise bad from None
        else:
            raise bad
        return day.isoformat() if target == "date" else day.year * 10000 + day.month * 100 + day.day
    if target == "datetime":
        if kind in moments:
            return datetime_text(value)
        if kind == "string":
            try:
                parsed = dt.datetime.fromisoformat(value)
            except ValueError:
                raise bad from None
            return datetime_text(parsed.astimezone(dt.UTC) if parsed.tzinfo else parsed)
        raise bad
    if target == "base64":
        if kind == "binary":
            return base64.b64encode(value).decode("ascii")
        if kind == "string":
            return base64.b64encode(value.encode("utf-8")).decode("ascii")
        raise bad
    if target == "json":
        if kind == "json":
            return value
        if kind == "string":
            return parse_json(value, f"column {column.name} (string)")
        raise bad
    raise ReferenceBuildError(f"unknown as: {target}")


def sort_value(kind: str, value: Any) -> Any:
    """A key that orders typed values by kind: numbers numerically, moments in time order."""
    if kind in ("integer", "decimal", "number"):
        return Decimal(value)
    if kind == "float":
        return Decimal(value)  # the double's exact value: orders like the double itself
    if kind == "json":
        return canonical(value)
    return value


def canonical(value: Any) -> str:
    """Canonical JSON: sorted keys, compact, UTF-8 text, decimals with their exact digits."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BadValue("a number that is not finite")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(canonical(item) for item in value) + "]"
    if isinstance(value, dict):
        items = sorted(value.items())
        return "{" + ",".join(f"{canonical(k)}:{canonical(v)}" for k, v in items) + "}"
    raise ReferenceBuildError(f"no JSON form for {type(value).__name__}")


# ---------------------------------------------------------------- documents


class DocBuilder:
    """Builds one document type's documents, one root row at a time."""

    def __init__(self, source: Source, doc_type: str, spec: dict[str, Any]) -> None:
        self.source = source
        self.doc_type = doc_type
        self.spec = spec
        self.root = source.table(text(spec["table"]))
        if not self.root.pk:
            raise ReferenceBuildError(f"root table {self.root.name} has no primary key")
        nulls = text(spec["nulls"]) if "nulls" in spec else "omit"
        if nulls not in ("omit", "keep"):
            raise ReferenceBuildError(f"{doc_type}: nulls must be omit or keep")
        self.keep = nulls == "keep"
        self.bucket = text(spec["bucket"])
        self.bucket_type = text(spec["bucket_type"]) if "bucket_type" in spec else "default"
        self.template = parse_template(text(spec["key"])) if "key" in spec else None
        self.key_escape = text(spec["key_escape"]) if "key_escape" in spec else None

    def null(self) -> Any:
        return None if self.keep else ABSENT

    def root_rows(self, max_docs: int | None) -> list[dict[str, Any]]:
        sql = f"SELECT * FROM {quote(self.root.name)}"
        if "where" in self.spec:
            sql += f" WHERE ({text(self.spec['where'])})"
        sql += " ORDER BY " + ", ".join(quote(c) for c in self.root.pk)
        if max_docs is not None:
            sql += f" LIMIT {int(max_docs)}"
        return self.source.rows(sql)

    def source_key(self, row: dict[str, Any]) -> dict[str, str]:
        out = {}
        for name in self.root.pk:
            column = self.root.col(name)
            try:
                value = typed(column, row[column.name])
                out[column.name] = "" if value is None else text_form(column.kind, value)
            except BadValue:
                out[column.name] = str(row[column.name])
        return out

    def build(self, row: dict[str, Any]) -> dict[str, Any]:
        """One document from one root row, or RowReject."""
        key = self.key(row)
        body = self.fields(self.spec.get("fields", {}), self.root, row, "")
        doc_text = canonical(body)
        indexes = {}
        for name, source in sorted(self.spec.get("indexes", {}).items()):
            entries = self.index(name, source, row, body)
            if entries:
                indexes[name] = entries
        return {
            "bucket_type": self.bucket_type,
            "bucket": self.bucket,
            "key": key,
            "indexes": indexes,
            "value": json.loads(doc_text, parse_float=Decimal),
            "canonical": doc_text,
        }

    # -- keys

    def key(self, row: dict[str, Any]) -> str:
        parts: list[str] = []
        pieces = self.template or default_template(self.root.pk)
        for is_column, piece in pieces:
            if not is_column:
                parts.append(piece)
                continue
            column = self.root.col(piece)
            value = self.typed(column, row, "key")
            if value is None:
                raise RowReject("key", f"key column {column.name} is NULL")
            part = text_form(column.kind, value)
            if self.key_escape == "percent":  # %, then every literal character, as %XX bytes
                literal = {c for is_col, p in pieces if not is_col for c in p} - {"%"}
                for char in ["%", *sorted(literal)]:
                    code = "".join(f"%{b:02X}" for b in char.encode("utf-8"))
                    part = part.replace(char, code)
            parts.append(part)
        key = "".join(parts)
        if not key:
            raise RowReject("key", "the key is empty")
        return key

    # -- fields

    def typed(self, column: Column, row: dict[str, Any], path: str) -> Any:
        try:
            return typed(column, row[column.name])
        except BadValue as exc:
            raise RowReject(path, str(exc)) from None

    def fields(self, spec: Any, table: Table, row: dict[str, Any], path: str) -> dict[str, Any]:
        if not isinstance(spec, dict):
            raise ReferenceBuildError(f"{self.doc_type}: fields of {path or 'the document'}")
        out: dict[str, Any] = {}
        for name, sub in spec.items():
            value = self.field(sub, table, row, f"{path}.{name}" if path else name)
            if value is not ABSENT:
                out[name] = value
        return out

    def field(self, spec: Any, table: Table, row: dict[str, Any], path: str) -> Any:
        if isinstance(spec, ScalarNode):
            return self.column(table.col(text(spec)), {}, row, path)
        if isinstance(spec, list):
            columns = [table.col(text(c)) for c in spec]
            values = [(c.kind, self.typed(c, row, path)) for c in columns]
            return [json_value(kind, value) for kind, value in values if value is not None]
        if not isinstance(spec, dict):
            raise ReferenceBuildError(f"{self.doc_type}: {path}: unknown field form")
        if "embed" in spec:
            return self.embed(spec, table, row, path)
        if "lookup" in spec:
            return self.lookup(spec, table, row, path)
        if "literal" in spec:
            return const(spec["literal"])
        if "column" in spec:
            return self.column(table.col(text(spec["column"])), spec, row, path)
        if RESERVED & spec.keys():
            raise ReferenceBuildError(f"{self.doc_type}: {path}: reserved key in a nested object")
        nested = self.fields(spec, table, row, path)
        return ABSENT if not nested and not self.keep else nested

    def column(self, column: Column, spec: dict[str, Any], row: dict[str, Any], path: str) -> Any:
        """A column's value with its `as:`, then its `values` translation (codes are text forms)."""
        target = text(spec["as"]) if "as" in spec else None
        if target is not None and target not in AS_NAMES:
            raise ReferenceBuildError(f"{self.doc_type}: {path}: unknown as: {target}")
        value = self.typed(column, row, path)
        if value is None:
            return self.null()
        if target is None:
            shown = json_value(column.kind, value)
            code = text_form(column.kind, value)
        else:
            try:
                shown = convert_as(column, value, target)
            except BadValue as exc:
                raise RowReject(path, str(exc)) from None
            code = shown if isinstance(shown, str) else canonical(shown)
        if "values" not in spec:
            return shown
        table = spec["values"]
        if not isinstance(table, dict):
            raise ReferenceBuildError(f"{self.doc_type}: {path}: values must be a mapping")
        if code in table:
            return const(table[code])
        if "default" in spec:
            return const(spec["default"])
        raise RowReject(path, f"column {column.name} holds a code with no translation")

    def linked(
        self, spec: dict[str, Any], name: str, table: Table, row: dict[str, Any]
    ) -> tuple[Table, list[dict[str, Any]]]:
        """The rows of the embed or lookup table whose `on` columns equal ours."""
        other = self.source.table(text(spec[name]))
        on = spec.get("on")
        if not isinstance(on, dict) or not on:
            raise ReferenceBuildError(f"{self.doc_type}: {name} {other.name} needs on:")
        pairs = [
            (other.col(theirs), row[table.col(text(ours)).name]) for theirs, ours in on.items()
        ]
        return other, self.source.matching(other, pairs)

    def embed(self, spec: dict[str, Any], table: Table, row: dict[str, Any], path: str) -> Any:
        child, rows = self.linked(spec, "embed", table, row)
        rows.sort(key=lambda r: self.order_key(spec, child, r, path))
        if "single" in spec and const(spec["single"]) is True:
            if len(rows) > 1:
                raise RowReject(path, f"single embed {child.name} has {len(rows)} children")
            if not rows:
                return self.null()
            one = self.fields(spec.get("fields", {}), child, rows[0], path)
            return ABSENT if not one and not self.keep else one
        return [self.fields(spec.get("fields", {}), child, r, path) for r in rows]

    def lookup(self, spec: dict[str, Any], table: Table, row: dict[str, Any], path: str) -> Any:
        other, rows = self.linked(spec, "lookup", table, row)
        if len(rows) > 1:
            raise RowReject(path, f"lookup {other.name} matches {len(rows)} rows")
        if not rows:
            return self.null()
        if "field" in spec:
            return self.column(other.col(text(spec["field"])), spec, rows[0], path)
        found = self.fields(spec.get("fields", {}), other, rows[0], path)
        return ABSENT if not found and not self.keep else found

    def order_key(
        self, spec: dict[str, Any], child: Table, row: dict[str, Any], path: str
    ) -> list[tuple[Any, ...]]:
        """order_by ascending with NULLs last, then the child's primary key, or without one every
        column the embed reads, in table order."""
        order_by = spec.get("order_by", [])
        names = [text(n) for n in (order_by if isinstance(order_by, list) else [order_by])]
        if child.pk:
            names += list(child.pk)
        else:
            read = {c.casefold() for c in read_columns(spec)}
            names += [c.name for c in child.columns if c.name.casefold() in read]
        out = []
        for name in names:
            column = child.col(name)
            value = self.typed(column, row, path)
            out.append((1,) if value is None else (0, sort_value(column.kind, value)))
        return out

    # -- indexes

    def index(self, name: str, source: Any, row: dict[str, Any], body: dict[str, Any]) -> list[Any]:
        """Distinct sorted entries: `_bin` text forms, `_int` integers (anything else rejects)."""
        if not re.fullmatch(r"[a-z0-9_]+_(bin|int)", name) or name.startswith("migrate_"):
            raise ReferenceBuildError(f"{self.doc_type}: bad index name {name}")
        found: list[tuple[str, Any]] = []  # (text form, JSON value) pairs
        if isinstance(source, dict) or (
            "." not in text(source) and self.root.find(text(source)) is not None
        ):
            spec = source if isinstance(source, dict) else {"column": source}
            column = self.root.col(text(spec["column"]))
            value = self.column(column, {k: v for k, v in spec.items() if k == "as"}, row, name)
            if value is not ABSENT and value is not None:
                # a json column's text form is its JSON text, even when the JSON is a string
                plain = isinstance(value, str) and ("as" in spec or column.kind != "json")
                found.append((value if plain else canonical(value), value))
        else:
            for value in walk(body, text(source).split(".")):
                if value is not None and not isinstance(value, dict):
                    found.append((value if isinstance(value, str) else canonical(value), value))
        found = [(shown, value) for shown, value in found if value != ""]
        if name.endswith("_bin"):
            return sorted({shown for shown, _ in found})
        entries = set()
        for shown, value in found:
            if isinstance(value, bool) or not INT_TEXT.fullmatch(shown) or isinstance(value, str):
                raise RowReject(name, f"index {name} needs integers")
            entries.add(int(shown))
        return sorted(entries)


def walk(node: Any, parts: list[str]) -> Iterator[Any]:
    """Every value at the dotted path, walking arrays element by element at any depth."""
    if isinstance(node, list):
        for item in node:
            yield from walk(item, parts)
    elif not parts:
        yield node
    elif isinstance(node, dict) and parts[0] in node:
        yield from walk(node[parts[0]], parts[1:])


def read_columns(spec: dict[str, Any]) -> set[str]:
    """Names of the columns an embed reads from its own table (fields, links, order_by)."""
    names: set[str] = {text(c) for c in spec.get("on", {})}
    order_by = spec.get("order_by", [])
    names |= {text(c) for c in (order_by if isinstance(order_by, list) else [order_by])}

    def visit(fields: Any) -> None:
        for sub in fields.values() if isinstance(fields, dict) else []:
            if isinstance(sub, ScalarNode):
                names.add(text(sub))
            elif isinstance(sub, list):
                names.update(text(c) for c in sub)
            elif isinstance(sub, dict) and ("embed" in sub or "lookup" in sub):
                names.update(text(ours) for ours in sub.get("on", {}).values())
            elif isinstance(sub, dict) and "column" in sub:
                names.add(text(sub["column"]))
            elif isinstance(sub, dict) and "literal" not in sub:
                visit(sub)

    visit(spec.get("fields", {}))
    return names


def parse_template(template: str) -> list[tuple[bool, str]]:
    """(is_column, text) pieces of a key template; `{{` and `}}` are literal braces."""
    pieces: list[tuple[bool, str]] = []
    i = 0
    while i < len(template):
        char = template[i]
        if template.startswith("{{", i) or template.startswith("}}", i):
            pieces.append((False, char))
            i += 2
        elif char == "{":
            end = template.find("}", i)
            if end < 0 or end == i + 1:
                raise ReferenceBuildError(f"key template {template!r}: bad placeholder")
            pieces.append((True, template[i + 1 : end]))
            i = end + 1
        elif char == "}":
            raise ReferenceBuildError(f"key template {template!r}: a lone }}")
        else:
            pieces.append((False, char))
            i += 1
    return pieces


def default_template(pk: tuple[str, ...]) -> list[tuple[bool, str]]:
    """Without `key:`, the primary-key columns' text forms joined by ':'."""
    pieces: list[tuple[bool, str]] = []
    for name in pk:
        pieces += [(False, ":"), (True, name)] if pieces else [(True, name)]
    return pieces


def build_reference(
    db_path: Path,
    mapping_path: Path,
    *,
    max_docs: int | None = None,
    max_value_bytes: int | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every document type's documents in `migrate dump` form plus `canonical`, sorted by
    (bucket_type, bucket, key), and the rejected rows. `max_docs` reads only the first root rows of
    each document type in primary-key order; `max_value_bytes` rejects larger canonical values."""
    tree = load_tree(Path(mapping_path))
    if not isinstance(tree, dict) or not isinstance(tree.get("documents"), dict):
        raise ReferenceBuildError(f"{mapping_path}: no documents")
    uri = Path(db_path).resolve().as_uri() + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True)
    documents: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    try:
        source = Source(conn)
        for doc_type, spec in tree["documents"].items():
            builder = DocBuilder(source, doc_type, spec)
            for row in builder.root_rows(max_docs):
                try:
                    document = builder.build(row)
                    size = len(document["canonical"].encode("utf-8"))
                    if max_value_bytes is not None and size > max_value_bytes:
                        raise RowReject("", f"the value is {size} bytes, over the limit")
                except RowReject as exc:
                    reject = {"doc_type": doc_type, "source_key": builder.source_key(row)}
                    rejects.append(reject | {"field": exc.field, "reason": exc.reason})
                else:
                    documents.append(document)
    finally:
        conn.close()
    documents.sort(key=lambda d: (d["bucket_type"], d["bucket"], d["key"]))
    return documents, rejects
