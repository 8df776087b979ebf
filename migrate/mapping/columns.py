"""Value rules over whole columns: one staged Arrow column in, its canonical JSON text out.

The column-wise builder (`columnar.py`) needs, per field, the exact bytes `canonical_json` would
write for each row's value. Where the staged Arrow type and the rule allow it, Arrow computes them
in C: text that needs no escaping, 64-bit integers, dates and times, fixed-scale decimals. Every
other column goes through the very converters the row builder uses (`values.py`), one value at a
time, so both builders agree by construction; the fast paths are held to the same bytes by tests.

Rows whose value breaks a rule are not converted: they come back as `bad` row positions with their
`RowError`, and the caller builds those roots with the row builder, which reports them exactly.
"""

from __future__ import annotations

import functools
from binascii import b2a_base64
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import pyarrow as pa
import pyarrow.compute as _compute

from migrate.mapping.canonical import canonical_lines
from migrate.mapping.keys import RowError, guard
from migrate.mapping.values import json_converter, text_converter
from migrate.schema import ColumnType, ValueKind

# pyarrow-stubs type each compute function by overloads that cannot follow a chain of calls
# over arrays, chunked arrays and scalars; the calls here are checked by the tests instead.
pc: Any = _compute

_K = ValueKind
BINARY = pa.binary()


@functools.cache
def lit(value: bytes) -> pa.Scalar[Any]:
    """A binary constant for compute calls. Passing Python bytes instead makes pyarrow convert
    them on every call, and that conversion tries (and fails) to import pandas each time."""
    return pa.scalar(value, BINARY)


Bad = dict[int, RowError]

# Bytes msgspec escapes in a JSON string are the C0 controls, the quote and the backslash; these
# are all the others. Deleting them from a buffer leaves nothing exactly when no byte of it needs
# escaping: one pass in C, about nine times faster than a regular expression's scan.
_NEEDS_NO_ESCAPE = bytes(sorted(set(range(0x20, 0x100)) - {ord('"'), ord("\\")}))
_SCAN_BYTES = 1 << 20  # the scan copies this much at a time
# A fraction's trailing zeros, and its point when nothing else is left ("12.500" -> "12.5",
# "12.000" -> "12"): what Decimal.normalize() keeps, for the digits Arrow writes for decimal128.
_TRAILING_ZEROS = r"\.0*$|(\.[0-9]*[1-9])0+$"
_MIN_YEAR, _MAX_YEAR = 1000, 9999  # four-digit years: Arrow and isoformat write them alike


@dataclass(frozen=True, slots=True)
class ColumnRule:
    """How one column's values become JSON: its type, the `as:` given, and the mapping path."""

    name: str
    ctype: ColumnType
    as_: str | None
    path: str

    def converter(self) -> Callable[[Any], Any]:
        return guard(json_converter(self.ctype, self.as_), self.name, self.path)

    def text_converter(self) -> Callable[[Any], str]:
        return guard(text_converter(self.ctype), self.name, self.path)


def python_values(column: pa.Array[Any] | pa.ChunkedArray[Any], kind: ValueKind) -> list[Any]:
    """A column's staged values exactly as the row builder reads them (NUMBER text as Decimal)."""
    values = column.to_pylist()
    if kind is _K.NUMBER:
        from migrate.mapping.builder import _number_values

        return _number_values(values)
    return values


def json_texts(column: pa.ChunkedArray[Any], rule: ColumnRule) -> tuple[pa.Array[Any], Bad]:
    """Canonical JSON text of every value (binary; null where the value is NULL), and bad rows."""
    text, quoted, bad = json_parts(column, rule)
    return (quote_text(text) if quoted else text), bad


def json_parts(column: pa.ChunkedArray[Any], rule: ColumnRule) -> tuple[pa.Array[Any], bool, Bad]:
    """`json_texts`, except that text Arrow wrote may come back without its quotes (the flag
    says so), for a caller that can add them in a join it makes anyway."""
    if pa.types.is_null(column.type):  # no value at all: nothing to convert
        return pa.nulls(len(column), BINARY), False, {}
    parts = _fast_parts(column, rule)
    if parts is not None:
        return parts[0], parts[1], {}
    texts, bad = _generic(column, rule, rule.converter())
    return texts, False, bad


def key_texts(column: pa.ChunkedArray[Any], rule: ColumnRule) -> tuple[pa.Array[Any], Bad]:
    """The text form of every value (keys, codes, `_bin` entries) as UTF-8 binary; NULL stays."""
    if pa.types.is_null(column.type):
        return pa.nulls(len(column), BINARY), {}
    fast = _fast_text(column, rule.ctype)
    if fast is not None:
        return fast, {}
    convert = rule.text_converter()
    values = python_values(column, rule.ctype.kind)
    out: list[bytes | None] = []
    bad: Bad = {}
    for row, value in enumerate(values):
        if value is None:
            out.append(None)
            continue
        try:
            out.append(convert(value).encode("utf-8", "surrogatepass"))
        except RowError as exc:
            bad[row] = exc
            out.append(None)
    return pa.array(out, BINARY), bad


def _generic(
    column: pa.ChunkedArray[Any], rule: ColumnRule, convert: Callable[[Any], Any]
) -> tuple[pa.Array[Any], Bad]:
    values = python_values(column, rule.ctype.kind)
    converted: list[Any] = []
    absent: list[int] = []  # NULL or bad; a converted None (JSON null) is a present value
    bad: Bad = {}
    for row, value in enumerate(values):
        if value is None:
            absent.append(row)
            converted.append(None)
            continue
        try:
            converted.append(convert(value))
        except RowError as exc:
            bad[row] = exc
            absent.append(row)
            converted.append(None)
    texts, unencodable = canonical_lines(converted)
    for row in unencodable:
        bad[row] = RowError("fields", "a text value is not valid Unicode")
        absent.append(row)
    for row in absent:
        texts[row] = None
    return pa.array(texts, BINARY), bad


# -- fast paths ------------------------------------------------------------------------------------


def _plain_text(column: pa.ChunkedArray[Any]) -> pa.ChunkedArray[Any] | None:
    """Text columns whose values need no JSON escaping; None when some value may."""
    if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
        return None
    for chunk in column.chunks:
        data = chunk.buffers()[2]
        # One scan of the chunk's whole character buffer: bytes outside the values (a sliced
        # chunk) can only send the column down the slower exact path.
        if data is not None and _needs_escaping(memoryview(data)):
            return None
    return column


def _needs_escaping(data: memoryview) -> bool:
    """Whether any byte of `data` is one a JSON string must escape."""
    return any(
        bytes(data[start : start + _SCAN_BYTES]).translate(None, _NEEDS_NO_ESCAPE)
        for start in range(0, len(data), _SCAN_BYTES)
    )


def quote_text(text: pa.ChunkedArray[Any] | pa.Array[Any]) -> pa.Array[Any]:
    """Text that needs no escaping, inside its quotes: its JSON string."""
    joined = pc.binary_join_element_wise(lit(b'"'), _binary(text), lit(b'"'), lit(b""))
    return _binary(joined)


def _binary(array: pa.ChunkedArray[Any] | pa.Array[Any]) -> pa.Array[Any]:
    combined = _combined(array)
    if pa.types.is_string(combined.type):
        return combined.view(BINARY)  # the same buffers, read as bytes: no kernel call
    return combined.cast(BINARY)


_EPOCH = datetime(1970, 1, 1)
_LOW = (datetime(_MIN_YEAR, 1, 1) - _EPOCH) // timedelta(microseconds=1)
_HIGH = (datetime(_MAX_YEAR, 12, 31, 23, 59, 59, 999_999) - _EPOCH) // timedelta(microseconds=1)
_SECOND = pa.scalar(1_000_000, pa.int64())
_DAY = pa.scalar(86_400_000_000, pa.int64())
_ZERO = pa.scalar(0, pa.int64())


@dataclass(frozen=True, slots=True)
class _Moments:
    """A date/time column as naive UTC microseconds, and whether its values are zoned."""

    naive: pa.Array[Any]  # timestamp[us], no zone
    micros: pa.Array[Any]  # int64
    zoned: bool

    def date_text(self) -> pa.Array[Any]:
        return _binary(pc.cast(pc.cast(self.naive, pa.date32()), pa.string()))

    def at_midnight(self) -> bool:
        return not pc.any(pc.not_equal(pc.remainder(self.micros, _DAY), _ZERO)).as_py()

    def datetime_text(self) -> pa.Array[Any]:
        """isoformat(), plus "Z" when zoned: a six-digit fraction only where it is not zero."""
        whole = pc.cast(pc.cast(self.naive, pa.timestamp("s"), safe=False), pa.string())
        fraction = pc.not_equal(pc.remainder(self.micros, _SECOND), _ZERO)
        if pc.any(fraction).as_py():
            whole = pc.if_else(fraction, pc.cast(self.naive, pa.string()), whole)
        text = pc.replace_substring(whole, " ", "T", max_replacements=1)
        if self.zoned:
            text = pc.binary_join_element_wise(_binary(text), lit(b"Z"), lit(b""))
        return _binary(text)


def _moments(column: pa.ChunkedArray[Any], ctype: ColumnType) -> _Moments | None:
    """The column as `_Moments` when it holds microsecond timestamps of the zone its kind allows,
    all within four-digit years (where Arrow and isoformat write the same text), else None."""
    kind, arrow = ctype.kind, column.type
    if kind not in (_K.DATE, _K.TIMESTAMP, _K.TIMESTAMP_TZ):
        return None
    if not pa.types.is_timestamp(arrow) or arrow.unit != "us":
        return None
    if arrow.tz is not None and (arrow.tz not in ("UTC", "+00:00") or kind is not _K.TIMESTAMP_TZ):
        return None
    micros = _combined(column).cast(pa.int64())
    if micros.null_count < len(micros):
        low, high = pc.min_max(micros).values()
        if low.as_py() < _LOW or high.as_py() > _HIGH:
            return None
    return _Moments(micros.cast(pa.timestamp("us")), micros, kind is _K.TIMESTAMP_TZ)


def _combined(array: pa.ChunkedArray[Any] | pa.Array[Any]) -> pa.Array[Any]:
    if isinstance(array, pa.ChunkedArray):
        return cast(
            "pa.Array[Any]", array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
        )
    return array


def _fast_text(column: pa.ChunkedArray[Any], ctype: ColumnType) -> pa.Array[Any] | None:
    """Arrow's text for the kinds whose text form it writes byte for byte like `text_converter`."""
    kind = ctype.kind
    arrow = column.type
    if kind is _K.STRING and (pa.types.is_string(arrow) or pa.types.is_large_string(arrow)):
        return _binary(column)
    if kind is _K.INTEGER and pa.types.is_int64(arrow):
        return _binary(pc.cast(column, pa.string()))
    moments = _moments(column, ctype)
    if moments is None:
        return None
    if kind is _K.DATE:
        return _date_form(moments)
    return moments.datetime_text()


def _date_form(moments: _Moments) -> pa.Array[Any]:
    """A DATE value: the date at midnight, the date and time otherwise (row by row)."""
    if moments.at_midnight():
        return moments.date_text()
    midnight = pc.equal(pc.remainder(moments.micros, _DAY), _ZERO)
    return _combined(pc.if_else(midnight, moments.date_text(), moments.datetime_text()))


def _fast_parts(
    column: pa.ChunkedArray[Any], rule: ColumnRule
) -> tuple[pa.Array[Any], bool] | None:
    """Arrow's JSON text for the column, and whether it still needs its quotes around it."""
    ctype, as_ = rule.ctype, rule.as_
    kind = ctype.kind
    arrow = column.type
    if as_ is None or as_ == "string":
        if kind is _K.STRING:
            plain = _plain_text(column)
            return None if plain is None else (_binary(plain), True)
        if as_ == "string":
            text = _fast_text(column, ctype)
            return None if text is None else (text, True)
    if kind is _K.INTEGER and pa.types.is_int64(arrow) and as_ in (None, "integer"):
        return _binary(pc.cast(column, pa.string())), False
    if kind is _K.BINARY and as_ in (None, "base64") and pa.types.is_binary(arrow):
        return _base64(column), True
    if kind is _K.DECIMAL and pa.types.is_decimal128(arrow) and as_ in (None, "decimal", "number"):
        if ctype.scale is None or arrow.scale != ctype.scale or not 0 < ctype.scale <= 6:
            return None
        text = pc.cast(column, pa.string())
        if as_ == "number":  # shortest: no trailing fraction zeros, no point when whole
            text = pc.replace_substring_regex(text, _TRAILING_ZEROS, r"\1")
        return _binary(text), False
    moments = _moments(column, ctype)
    if moments is None:
        return None
    if as_ == "date":
        return moments.date_text(), True
    if as_ == "yyyymmdd":
        return _yyyymmdd(moments), False
    if as_ == "datetime" or (as_ is None and kind is not _K.DATE):
        return moments.datetime_text(), True
    if as_ is None:
        return _date_form(moments), True
    return None


def _base64(column: pa.ChunkedArray[Any]) -> pa.Array[Any]:
    """Base64 (Arrow has no kernel for it; binascii writes it in C, per value)."""
    texts = [
        None if value is None else b2a_base64(value, newline=False) for value in column.to_pylist()
    ]
    return pa.array(texts, BINARY)


def _yyyymmdd(moments: _Moments) -> pa.Array[Any]:
    return _binary(pc.replace_substring(moments.date_text(), b"-", b""))


def int_values(column: pa.ChunkedArray[Any], rule: ColumnRule) -> list[int | None] | None:
    """Integers of `_int` index sources Arrow can give exactly (int64, yyyymmdd), else None."""
    kind, as_ = rule.ctype.kind, rule.as_
    if kind is _K.INTEGER and pa.types.is_int64(column.type) and as_ in (None, "integer"):
        return column.to_pylist()
    moments = _moments(column, rule.ctype) if as_ == "yyyymmdd" else None
    if moments is None:
        return None
    return pc.cast(_yyyymmdd(moments).cast(pa.string()), pa.int64()).to_pylist()  # type: ignore[no-any-return]
