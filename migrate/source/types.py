"""Declared column types resolved to value kinds, and the Arrow type each kind is staged as.

The declared text decides, not the driver's idea of the type: SQLite keeps Oracle DDL verbatim but
maps it by affinity (RAW(16) becomes NUMERIC), so one resolver reads Oracle, PostgreSQL, SQLite and
MySQL spellings alike (docs/mapping-semantics.md, "Value rules in detail").
"""

from __future__ import annotations

import re

import pyarrow as pa

from migrate.errors import SourceError
from migrate.schema import ColumnType, ValueKind

# fmt: off
_STRING = {
    "CHAR", "CHARACTER", "NCHAR", "VARCHAR", "VARCHAR2", "NVARCHAR", "NVARCHAR2", "CHAR VARYING",
    "CHARACTER VARYING", "NATIONAL CHAR", "NATIONAL CHARACTER", "NATIONAL CHAR VARYING",
    "NATIONAL CHARACTER VARYING", "NCHAR VARYING", "TEXT", "NTEXT", "TINYTEXT", "MEDIUMTEXT",
    "LONGTEXT", "CLOB", "NCLOB", "LONG", "LONG VARCHAR", "STRING", "CITEXT", "UUID",
    "UNIQUEIDENTIFIER", "ROWID", "UROWID", "ENUM", "BPCHAR", "NAME", "VARCHAR_IGNORECASE",
}
_INTEGER = {
    "INTEGER", "INT", "SMALLINT", "BIGINT", "TINYINT", "MEDIUMINT", "INT2", "INT4", "INT8",
    "SERIAL", "SMALLSERIAL", "BIGSERIAL", "SERIAL4", "SERIAL8", "PLS_INTEGER", "BINARY_INTEGER",
    "YEAR",
}
_NUMERIC = {"NUMBER", "NUMERIC", "DECIMAL", "DEC"}
_FLOAT = {
    "FLOAT", "REAL", "DOUBLE", "DOUBLE PRECISION", "BINARY_FLOAT", "BINARY_DOUBLE", "FLOAT4",
    "FLOAT8",
}
_BINARY = {
    "BLOB", "RAW", "LONG RAW", "BYTEA", "BINARY", "VARBINARY", "TINYBLOB", "MEDIUMBLOB",
    "LONGBLOB", "IMAGE", "BINARY VARYING",
}
# fmt: on
_BOOLEAN = {"BOOLEAN", "BOOL"}
_JSON = {"JSON", "JSONB"}
_DATE = {"DATE"}
_TIMESTAMP = {"TIMESTAMP", "DATETIME", "DATETIME2", "SMALLDATETIME"}
_TIMESTAMP_TZ = {"TIMESTAMPTZ", "DATETIMEOFFSET"}
# A time of day (or MySQL's signed duration): text as the server writes it, `-12:34:56.500`.
_TIME = {"TIME", "TIMETZ", "TIME WITH TIME ZONE", "TIME WITHOUT TIME ZONE"}

_ARGS = re.compile(r"\(([^()]*)\)")
_INT64_DIGITS = 18  # every 18-digit integer fits in int64
_DECIMAL128_DIGITS = 38

# Integer types whose unsigned range needs more than 63 bits, by the digits of their largest value.
_UNSIGNED_DIGITS = {"BIGINT": 20, "INT8": 20}


def _unknown(declared: str) -> SourceError:
    return SourceError(
        f"unsupported column type {declared!r}",
        hint="map the column through a view that casts it to a supported type "
        "(text, number, date/timestamp, boolean, binary or JSON), or leave it out of the mapping",
    )


def _numeric(name: str, args: list[str], declared: str) -> ColumnType:
    """NUMBER/NUMERIC/DECIMAL: the scale decides integer, decimal or number."""
    if not args or args == [""]:
        return ColumnType(ValueKind.NUMBER, declared)
    try:
        precision = None if args[0] == "*" else int(args[0])
        scale = int(args[1]) if len(args) > 1 else 0
    except ValueError:
        raise _unknown(declared) from None
    if scale > 0:
        return ColumnType(ValueKind.DECIMAL, declared, precision, scale)
    if precision is None:
        precision = _DECIMAL128_DIGITS  # Oracle's NUMBER(*,0): up to 38 digits
    return ColumnType(ValueKind.INTEGER, declared, precision - scale, 0)


def resolve_type(declared: str) -> ColumnType:
    """The value kind of a declared column type, in any dialect's spelling.

    Raises SourceError for a type no rule covers (e.g. INTERVAL), naming it, with a hint.
    """
    text = " ".join(declared.upper().replace("(", " (").split())
    match = _ARGS.search(text)
    args = [a.strip() for a in match.group(1).split(",")] if match else []
    name = " ".join(_ARGS.sub(" ", text).split())
    unsigned = False
    for word in (" UNSIGNED", " SIGNED", " ZEROFILL"):
        if word in f" {name}":
            unsigned = unsigned or word == " UNSIGNED"
            name = " ".join(f" {name}".replace(word, " ").split())
    if name.startswith("TIMESTAMP"):
        with_zone = " WITH " in f" {name} " and "WITHOUT" not in name
        if with_zone or name in _TIMESTAMP_TZ:
            return ColumnType(ValueKind.TIMESTAMP_TZ, declared)
        if name in _TIMESTAMP or name == "TIMESTAMP WITHOUT TIME ZONE":
            return ColumnType(ValueKind.TIMESTAMP, declared)
    if name in _NUMERIC:
        return _numeric(name, args, declared)
    if name in _INTEGER:
        digits = _UNSIGNED_DIGITS.get(name) if unsigned else None
        return ColumnType(ValueKind.INTEGER, declared, digits, 0 if digits else None)
    simple = (
        (_STRING, ValueKind.STRING),
        (_TIME, ValueKind.STRING),
        (_FLOAT, ValueKind.FLOAT),
        (_BINARY, ValueKind.BINARY),
        (_BOOLEAN, ValueKind.BOOLEAN),
        (_JSON, ValueKind.JSON),
        (_DATE, ValueKind.DATE),
        (_TIMESTAMP, ValueKind.TIMESTAMP),
        (_TIMESTAMP_TZ, ValueKind.TIMESTAMP_TZ),
    )
    for names, kind in simple:
        if name in names:
            return ColumnType(kind, declared)
    if name and any(word in name for word in ("CHAR", "TEXT", "CLOB", "STRING")):
        return ColumnType(ValueKind.STRING, declared)  # e.g. MySQL's "VARCHAR ... CHARSET utf8"
    raise _unknown(declared)


def arrow_type(column: ColumnType) -> pa.DataType:
    """The Arrow type a column's values are staged as.

    NUMBER (no declared scale) is staged as a string holding the exact decimal text, because no
    fixed Arrow decimal scale fits every value; the builder reads it as decimal text.
    """
    kind = column.kind
    if kind is ValueKind.INTEGER:
        digits = column.precision
        if digits is None or digits <= _INT64_DIGITS:
            return pa.int64()
        if digits <= _DECIMAL128_DIGITS:
            return pa.decimal128(_DECIMAL128_DIGITS, 0)
        return pa.decimal256(76, 0)
    if kind is ValueKind.DECIMAL:
        scale = column.scale or 0
        digits = max(column.precision or _DECIMAL128_DIGITS, scale)
        if digits <= _DECIMAL128_DIGITS:
            return pa.decimal128(_DECIMAL128_DIGITS, scale)
        return pa.decimal256(76, scale)
    return _SIMPLE_ARROW[kind]


_SIMPLE_ARROW: dict[ValueKind, pa.DataType] = {
    ValueKind.STRING: pa.string(),
    ValueKind.JSON: pa.string(),
    ValueKind.NUMBER: pa.string(),
    ValueKind.FLOAT: pa.float64(),
    ValueKind.DATE: pa.timestamp("us"),
    ValueKind.TIMESTAMP: pa.timestamp("us"),
    ValueKind.TIMESTAMP_TZ: pa.timestamp("us", tz="UTC"),
    ValueKind.BOOLEAN: pa.bool_(),
    ValueKind.BINARY: pa.binary(),
}
