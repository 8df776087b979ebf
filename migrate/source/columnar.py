"""Whole-column conversions done by Arrow's C++ when they give exactly the per-value result.

Converting a chunk value by value in Python costs more than reading it. When every non-NULL value of
a column has one driver type that Arrow converts to the staged type with the same result as the
normaliser in `normalize` (text as text, `datetime` as a timestamp, ISO date text parsed, ...), the
whole column goes through Arrow at once. Anything else (mixed types, text in a form not provably
parsed alike, a value out of range) returns None, and the caller takes the per-value path, which
also names the row of a bad value.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from migrate.schema import ValueKind

_NONE = type(None)
_US = pa.timestamp("us")
_US_UTC = pa.timestamp("us", tz="UTC")
_WIDE_INTEGER = pa.decimal128(38, 0)

# ISO 8601 text that both `datetime.fromisoformat` and Arrow's parser read, to the same instant: a
# year 0001-9999, a real month and day (Arrow rejects a day past the month's end, as Python does),
# an optional time to the second with at most 6 fraction digits, and (with a time) an optional
# zone. No spaces around it: the normaliser strips them, Arrow does not.
_DATE = r"(\d{3}[1-9]|\d{2}[1-9]\d|\d[1-9]\d{2}|[1-9]\d{3})-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"
_TIME = r"[ T]([01]\d|2[0-3])(:[0-5]\d(:[0-5]\d(\.\d{1,6})?)?)?"
_ZONE = r"(Z|[+-]([01]\d|2[0-3]):[0-5]\d)"
_NAIVE_TEXT = f"^{_DATE}({_TIME})?$"
_ZONED_TEXT = f"^{_DATE}{_TIME}{_ZONE}$"

Converter = Callable[[Sequence[Any], pa.DataType], "pa.Array[Any]"]

_FAILED = (pa.ArrowException, OverflowError, TypeError, ValueError, ArithmeticError)


def _plain(values: Sequence[Any], target: pa.DataType) -> pa.Array[Any]:
    return pa.array(values, type=target)


def _timestamp_text(values: Sequence[Any], target: pa.DataType) -> pa.Array[Any] | None:
    """ISO text as `_naive` and `_utc` read it: without a zone taken as is (as UTC for a zoned
    target), with one converted to UTC for a zoned target (a naive target holds no zone: such
    text takes the per-value path, which flags its row)."""
    text = pa.array(values, type=pa.string())
    naive = pc.match_substring_regex(text, _NAIVE_TEXT)
    if pc.all(naive, skip_nulls=True).as_py() is not False:
        return text.cast(_US).cast(target)
    if _naive_target(target):  # a zone in a DATE or TIMESTAMP column: the per-value path flags it
        return None
    zoned = pc.match_substring_regex(text, _ZONED_TEXT)
    if pc.all(pc.or_(naive, zoned), skip_nulls=True).as_py() is False:
        return None
    missing = pa.scalar(None, type=pa.string())
    local = pc.if_else(naive, text, missing).cast(_US).cast(target)
    utc = pc.if_else(zoned, text, missing).cast(_US_UTC).cast(target)
    combined: pa.Array[Any] = pc.if_else(naive, local, utc)
    return combined


def _dates(values: Sequence[Any], target: pa.DataType) -> pa.Array[Any]:
    """`date` values at midnight (UTC for a zoned target), as `datetime.combine` makes them."""
    return pa.array(values, type=pa.date32()).cast(target)


def _whole_decimals(values: Sequence[Any], target: pa.DataType) -> pa.Array[Any]:
    """Decimals with no fraction (PostgreSQL's NUMERIC(10)) as integers; a fraction, NaN or a value
    past the target raises, and the per-value path names the row."""
    return pa.array(values, type=_WIDE_INTEGER).cast(target)


def _int_text(values: Sequence[Any], target: pa.DataType) -> pa.Array[Any]:
    """Integers as their decimal text, as `str(int)` writes them."""
    return pa.array(values, type=pa.int64()).cast(target)


_TIMESTAMPS = (ValueKind.DATE, ValueKind.TIMESTAMP, ValueKind.TIMESTAMP_TZ)
_ANY: tuple[pa.DataType, ...] = ()
_INT64 = (pa.int64(),)  # a wider integer column stays on the per-value path, exact

# (kind, the one driver type of every non-NULL value) -> how Arrow converts the column, and the
# staged types it holds for (any when empty).
_CONVERTERS: dict[tuple[ValueKind, type], tuple[Converter, tuple[pa.DataType, ...]]] = {
    (ValueKind.STRING, str): (_plain, _ANY),
    (ValueKind.JSON, str): (_plain, _ANY),
    (ValueKind.INTEGER, int): (_plain, _INT64),
    (ValueKind.INTEGER, Decimal): (_whole_decimals, _INT64),
    (ValueKind.DECIMAL, Decimal): (_plain, _ANY),  # a value needing rounding raises
    (ValueKind.NUMBER, int): (_int_text, _ANY),
    (ValueKind.FLOAT, float): (_plain, _ANY),
    (ValueKind.BOOLEAN, bool): (_plain, _ANY),
    (ValueKind.BINARY, bytes): (_plain, _ANY),
    **{(kind, dt.datetime): (_plain, _ANY) for kind in _TIMESTAMPS},
    **{(kind, dt.date): (_dates, _ANY) for kind in _TIMESTAMPS},
}


def _naive_target(target: pa.DataType) -> bool:
    return isinstance(target, pa.TimestampType) and target.tz is None


def _any_zoned(values: Sequence[Any]) -> bool:
    return any(value is not None and value.tzinfo is not None for value in values)


def column_array(
    values: Sequence[Any], kind: ValueKind, target: pa.DataType
) -> pa.Array[Any] | None:
    """The column as its staged Arrow array when Arrow converts it exactly as the normaliser would,
    else None. Types match exactly (a bool is not an int, a datetime not a date)."""
    types = set(map(type, values))
    types.discard(_NONE)
    if not types:
        return pa.array(values, type=target)  # every value NULL
    if len(types) > 1:
        return None
    (driver_type,) = types
    try:
        if kind in _TIMESTAMPS and driver_type is str:
            return _timestamp_text(values, target)
        if driver_type is dt.datetime and _naive_target(target) and _any_zoned(values):
            return None  # a zone in a DATE or TIMESTAMP column: the per-value path flags it
        found = _CONVERTERS.get((kind, driver_type))
        if found is None or (found[1] and target not in found[1]):
            return None
        return found[0](values, target)
    except _FAILED:
        return None


__all__ = ["column_array"]
