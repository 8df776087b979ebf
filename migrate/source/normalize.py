"""Raw driver values normalised into the staged type of their value kind, as Arrow arrays.

Drivers disagree (SQLite returns dates as text and NUMBER(10,2) as a float, psycopg returns `date`
for DATE, oracledb returns LOB handles), so one normaliser per column, chosen once from its kind,
turns whatever the driver gave into the type `migrate.schema.ValueKind` promises.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import re
import uuid
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as _compute

from migrate.schema import ColumnType, ValueKind
from migrate.source.columnar import column_array
from migrate.source.types import arrow_type

Normaliser = Callable[[Any], Any]
# pyarrow-stubs cannot follow a chain of compute calls over arrays and scalars.
pc: Any = _compute

_CONTEXT = decimal.Context(prec=200, rounding=decimal.ROUND_HALF_UP)
_UTC = dt.UTC


class BadValue(Exception):
    """A raw value that its column's kind cannot hold; `row` is its position in the batch."""

    def __init__(self, expected: str, got: str, row: int = -1) -> None:
        super().__init__(f"expected {expected}, got {got}")
        self.expected = expected
        self.got = got
        self.row = row


class Undecodable(bytes):
    """Text a SQLite source holds that is not valid UTF-8 (SQLite never checks): read as its bytes
    so the row can be rejected by name instead of the read failing with the text in its message."""


def tolerant_text(data: bytes) -> str | Undecodable:
    """A SQLite text factory that never fails (used only to re-read a chunk whose text did)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return Undecodable(data)


def describe(value: Any) -> str:
    """What kind of value the driver gave, never the value itself (it may be personal data)."""
    if isinstance(value, Undecodable):
        return "text that is not valid UTF-8"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a floating-point number"
    if isinstance(value, Decimal):
        return "a decimal number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, bytes | bytearray | memoryview):
        return "binary data"
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return "a date/time value"
    return f"a value of type {type(value).__name__}"


def _read_lob(value: Any) -> Any:
    """Oracle LOB handles are read whole; everything else passes through."""
    read = getattr(value, "read", None)
    return read() if callable(read) else value


def _string(value: Any) -> str:
    value = _read_lob(value)
    if isinstance(value, str):
        return value
    if isinstance(value, uuid.UUID) or (isinstance(value, int) and not isinstance(value, bool)):
        return str(value)
    if isinstance(value, Undecodable):
        raise BadValue("text", describe(value))
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise BadValue("text", "binary data that is not UTF-8") from None
    raise BadValue("text", describe(value))


def _json(value: Any) -> str:
    value = _read_lob(value)
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list | bool | int | float) or value is None:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    raise BadValue("JSON text", describe(value))


def _exact(value: Any, expected: str) -> Decimal:
    """An exact decimal; floats go through their shortest repr, never their binary expansion."""
    result: Decimal
    if isinstance(value, bool):
        raise BadValue(expected, describe(value))
    if isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        result = Decimal(repr(value))
    elif isinstance(value, Decimal):
        result = value
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except decimal.InvalidOperation:
            raise BadValue(expected, "text that is not a number") from None
    else:
        raise BadValue(expected, describe(value))
    if not result.is_finite():
        raise BadValue(expected, "a value that is not a finite number")
    return result


def _integer(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    number = _exact(value, "an integer")
    if number != number.to_integral_value(context=_CONTEXT):
        raise BadValue("an integer", "a number with a fraction")
    return int(number)


def _wide_integer(value: Any) -> Decimal:
    return Decimal(_integer(value))


def _decimal(scale: int) -> Normaliser:
    quantum = Decimal(1).scaleb(-scale)

    def normalise(value: Any) -> Decimal:
        # More decimals than declared (SQLite does not enforce a scale) round as Oracle stores them.
        return _exact(value, "a number").quantize(quantum, context=_CONTEXT)

    return normalise


def decimal_text(number: Decimal) -> str:
    """Plain decimal text with no exponent and no trailing zeros: `12.5`, `3`, `100`."""
    if number.is_zero():
        return "0"
    return format(number.normalize(_CONTEXT), "f")


def _number(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return decimal_text(_exact(value, "a number"))


def _float(value: Any) -> float:
    if isinstance(value, float):
        return value
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            raise BadValue("a floating-point number", "a number out of range") from None
    raise BadValue("a floating-point number", describe(value))


# MySQL and MariaDB may hold a date whose year, month or day is 0 ('0000-00-00', '2001-00-15');
# PyMySQL hands it over as text.
_ZERO_DATE = re.compile(r"^(0000-\d\d-\d\d|\d{4}-00-\d\d|\d{4}-\d\d-00)")
ZERO_DATE = "a zero date (a year, month or day of 0, which MySQL and MariaDB can store)"


def _parse_datetime(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time())
    if isinstance(value, str):
        text = value.strip()
        try:
            return dt.datetime.fromisoformat(text)
        except ValueError:
            if _ZERO_DATE.match(text):
                raise BadValue("a date/time", ZERO_DATE) from None
            raise BadValue("a date/time", "text that is not an ISO date/time") from None
    raise BadValue("a date/time", describe(value))


def _naive(value: Any) -> dt.datetime:
    """DATE and TIMESTAMP hold no zone: a value that carries one (text with an offset in SQLite)
    cannot be written without shifting it or dropping the zone, so it is a flaw of the row."""
    parsed = _parse_datetime(value)
    if parsed.tzinfo is not None:
        raise BadValue("a date/time without a time zone", "a date/time with a time zone")
    return parsed


def _utc(value: Any) -> dt.datetime:
    parsed = _parse_datetime(value)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=_UTC)  # a value without a zone is taken as UTC
    return parsed.astimezone(_UTC)


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | Decimal) and value in (0, 1):
        return bool(value)
    raise BadValue("a boolean (or 0/1)", describe(value))


def _binary(value: Any) -> bytes:
    value = _read_lob(value)
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise BadValue("binary data", describe(value))


def normaliser(column: ColumnType) -> Normaliser:
    """The function that turns one raw driver value of this column into its staged value."""
    kind = column.kind
    if kind is ValueKind.INTEGER:
        return _integer if arrow_type(column) == pa.int64() else _wide_integer
    if kind is ValueKind.DECIMAL:
        return _decimal(column.scale or 0)
    return _SIMPLE[kind]


_SIMPLE: dict[ValueKind, Normaliser] = {
    ValueKind.STRING: _string,
    ValueKind.JSON: _json,
    ValueKind.NUMBER: _number,
    ValueKind.FLOAT: _float,
    ValueKind.DATE: _naive,
    ValueKind.TIMESTAMP: _naive,
    ValueKind.TIMESTAMP_TZ: _utc,
    ValueKind.BOOLEAN: _boolean,
    ValueKind.BINARY: _binary,
}

_INT64 = (-(2**63), 2**63 - 1)


def _remembered(convert: Normaliser) -> Normaliser:
    """`convert` with its results kept for the column: money and quantities repeat a lot, and an
    exact Decimal rounded to the scale costs microseconds. Keyed by type and exact text (floats
    by repr, so 0.0 and -0.0 stay apart); unhashable values are converted every time."""
    known: dict[tuple[type, Any], Any] = {}

    def remembered(value: Any) -> Any:
        kind = type(value)
        if kind is not int and kind is not float and kind is not str:
            return convert(value)
        key = (kind, repr(value) if kind is float else value)
        found = known.get(key, _UNKNOWN)
        if found is _UNKNOWN:
            found = known[key] = convert(value)
        return found

    return remembered


_UNKNOWN: Any = object()


def to_arrow(
    values: Sequence[Any], column: ColumnType, bad: dict[int, BadValue] | None = None
) -> pa.Array[Any]:
    """One column of raw driver values as an Arrow array of its kind's staged type.

    A value the kind cannot hold (text in a number column, an impossible date, a number past the
    column's declared precision, a date-time with a zone in a DATE column...) is staged as NULL
    and recorded in `bad` by row; without `bad`, the first such value raises BadValue (with its
    row). An integer column declared without a precision (Oracle's INTEGER is NUMBER(38)) that
    holds a value beyond 64 bits is staged as decimal128(38, 0) for that chunk, so it stays exact.
    """
    found: dict[int, BadValue] = {} if bad is None else bad
    before = len(found)
    target = arrow_type(column)
    array = column_array(values, column.kind, target)
    if array is None:
        array = _per_value(values, column, target, found)
    array = _within_precision(array, column, found)
    if bad is None and len(found) > before:
        row = min(found)
        raise found[row]
    return array


def _per_value(
    values: Sequence[Any], column: ColumnType, target: pa.DataType, bad: dict[int, BadValue]
) -> pa.Array[Any]:
    convert = normaliser(column)
    if column.kind is ValueKind.DECIMAL:
        convert = _remembered(convert)
    staged: list[Any] = []
    for row, value in enumerate(values):
        if value is None:
            staged.append(None)
            continue
        try:
            staged.append(convert(value))
        except BadValue as exc:
            exc.row = row
            bad[row] = exc
            staged.append(None)
    if target == pa.int64() and any(
        v is not None and not _INT64[0] <= v <= _INT64[1] for v in staged
    ):
        target = pa.decimal128(38, 0)
        staged = [None if v is None else Decimal(v) for v in staged]
    if pa.types.is_decimal(target):
        limit = target.precision
        for row, v in enumerate(staged):
            if v is not None and len(v.as_tuple().digits) > limit:
                bad[row] = BadValue(f"a number of at most {limit} digits", "a larger number", row)
                staged[row] = None
    return pa.array(staged, type=target)


def _within_precision(
    array: pa.Array[Any], column: ColumnType, bad: dict[int, BadValue]
) -> pa.Array[Any]:
    """The array with every value past the column's declared precision (NUMBER(10,2) holds less
    than 10**8) made NULL and recorded: SQLite enforces no declared type, and a value the legacy
    type could not hold is a flaw of the row, not a number to carry over."""
    precision = column.precision
    if precision is None or column.kind not in (ValueKind.INTEGER, ValueKind.DECIMAL):
        return array
    digits = precision - (column.scale or 0) if column.kind is ValueKind.DECIMAL else precision
    if digits < 0 or len(array) == array.null_count:
        return array
    if pa.types.is_integer(array.type):
        if digits >= 19:
            return array
        bound: Any = pa.scalar(10**digits, pa.int64())
    elif pa.types.is_decimal(array.type):
        if digits >= array.type.precision - array.type.scale:
            return array
        bound = pa.scalar(Decimal(10) ** digits, array.type)
    else:
        return array
    over = pc.fill_null(pc.greater_equal(pc.abs(array), bound), False)
    if not pc.any(over).as_py():
        return array
    declared = f"at most {digits} digits before the point ({column.declared})"
    for row in pc.indices_nonzero(over).to_pylist():
        bad[row] = BadValue(f"a number of {declared}", "a larger number", row)
    nulls = pa.nulls(len(array), array.type)
    kept: pa.Array[Any] = pc.if_else(over, nulls, array)
    return kept


__all__ = [
    "ZERO_DATE",
    "BadValue",
    "Undecodable",
    "decimal_text",
    "describe",
    "normaliser",
    "to_arrow",
    "tolerant_text",
]
