"""PostgreSQL's COPY CSV output parsed by Arrow's C++ reader straight into staged columns.

Only what provably stages the same values as the cursor path goes this way: PostgreSQL's CSV
keeps NULL (unquoted, empty) apart from empty text (quoted), every type is parsed with an
explicit Arrow type, time zones are read as UTC by the statement itself, NUMBER text is
normalised as `decimal_text` writes it, and bytea is decoded from PostgreSQL's hex form. Any
value outside that (NaN, infinity, BC dates, an integer past 64 bits, another bytea or date
style, ...) raises `Unfit`, and the caller reads the chunk through the cursor instead, which
stages it or names the bad row exactly as before.
"""

from __future__ import annotations

import binascii
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from migrate.schema import ColumnType, ValueKind
from migrate.source.types import arrow_type

_US = pa.timestamp("us")
_PARSED_AS_TEXT = (ValueKind.NUMBER, ValueKind.BINARY)
_TIMESTAMPS = (ValueKind.DATE, ValueKind.TIMESTAMP, ValueKind.TIMESTAMP_TZ)

# Plain decimal text as PostgreSQL's numeric_out writes a finite value (never an exponent), and
# short enough that `decimal_text` (200 significant digits) keeps every digit.
_PLAIN_NUMBER = r"^-?\d+(\.\d+)?$"
_NUMBER_DIGITS = 200
_HEX_PREFIX = "\\x"

_FAILED = (pa.ArrowException, ValueError, TypeError, OverflowError, binascii.Error)


class Unfit(Exception):
    """A value the COPY path cannot stage exactly as the cursor path does: use the cursor."""


def _read_type(column: ColumnType) -> pa.DataType:
    """The Arrow type the CSV reader parses a column's text as (Arrow's CSV reader has no
    decimal256: such a column is cast from its text, which rounds nothing either)."""
    if column.kind in _PARSED_AS_TEXT:
        return pa.string()
    if column.kind in _TIMESTAMPS:
        return _US
    target = arrow_type(column)
    return pa.string() if pa.types.is_decimal256(target) else target


def _number_text(text: pa.StringArray) -> pa.Array[Any]:
    """Numeric text as `decimal_text` writes it: no trailing fraction zeros, zero as `0`."""
    if pc.all(pc.match_substring_regex(text, _PLAIN_NUMBER), skip_nulls=True).as_py() is False:
        raise Unfit("NaN or infinity in a NUMBER column")
    longest = pc.max(pc.utf8_length(text)).as_py()
    if longest is not None and longest > _NUMBER_DIGITS:
        raise Unfit("a NUMBER past the normaliser's precision")
    trimmed = pc.replace_substring_regex(text, r"(\.\d*?)0+$", r"\1")
    trimmed = pc.replace_substring_regex(trimmed, r"\.$", "")
    result: pa.Array[Any] = pc.replace_substring_regex(trimmed, r"^-0$", "0")
    return result


def _hex_bytes(text: pa.StringArray) -> pa.Array[Any]:
    """bytea in PostgreSQL's hex output (`\\x00ff`) as binary, decoded for the whole column."""
    if pc.all(pc.starts_with(text, _HEX_PREFIX), skip_nulls=True).as_py() is False:
        raise Unfit("bytea not in hex output (bytea_output is not 'hex')")
    # NULL as empty, so every slot's digits are its own and the column's digits are contiguous.
    filled: Any = pc.fill_null(text, pa.scalar(_HEX_PREFIX))
    digits = pc.utf8_slice_codeunits(filled, len(_HEX_PREFIX))
    odd = pc.bit_wise_and(pc.utf8_length(digits), pa.scalar(1, pa.int32()))
    if pc.any(pc.not_equal(odd, pa.scalar(0, pa.int32()))).as_py():
        raise Unfit("bytea hex text of odd length")
    _, offsets, data = digits.buffers()
    assert offsets is not None and data is not None
    count = len(digits)
    ends = pa.Array.from_buffers(pa.int32(), count + 1, [None, offsets], offset=digits.offset)
    start, end = ends[0].as_py(), ends[count].as_py()
    decoded = binascii.a2b_hex(memoryview(data)[start:end])  # one call for every value
    halved = pc.divide(pc.subtract(ends, pa.scalar(start, pa.int32())), pa.scalar(2, pa.int32()))
    validity = pc.is_valid(text).buffers()[1] if text.null_count else None
    return pa.Array.from_buffers(
        pa.binary(),
        count,
        [validity, halved.cast(pa.int32()).buffers()[1], pa.py_buffer(decoded)],
        null_count=text.null_count,
    )


def _stage(parsed: pa.Array[Any], column: ColumnType) -> pa.Array[Any]:
    """A parsed column as its staged type."""
    text: Any = parsed  # parsed as string (`_read_type`)
    if column.kind is ValueKind.NUMBER:
        return _number_text(text)
    if column.kind is ValueKind.BINARY:
        return _hex_bytes(text)
    target = arrow_type(column)
    return parsed if parsed.type == target else parsed.cast(target)


def _empty(columns: Sequence[ColumnType]) -> list[pa.Array[Any]]:
    return [pa.array([], type=arrow_type(c)) for c in columns]


def parse_csv(data: bytes, columns: Sequence[ColumnType]) -> list[pa.Array[Any]]:
    """PostgreSQL CSV rows (no header) as one staged array per column; Unfit when inexact."""
    if not data:
        return _empty(columns)
    names = [f"c{i}" for i in range(len(columns))]
    read = pa_csv.ReadOptions(column_names=names, use_threads=False, block_size=1 << 24)
    # A one-column row holding NULL is an empty line: it is a row, not a line to skip.
    parse = pa_csv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False)
    convert = pa_csv.ConvertOptions(
        column_types={n: _read_type(c) for n, c in zip(names, columns, strict=True)},
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,  # "" is empty text, not NULL
        true_values=["t"],
        false_values=["f"],
    )
    try:
        source: Any = pa.BufferReader(data)  # the stubs know only files and paths
        table = pa_csv.read_csv(
            source, read_options=read, parse_options=parse, convert_options=convert
        )
        if table.num_columns != len(columns):
            raise Unfit("the CSV stream does not have one field per selected column")
        return [_stage(table.column(i).combine_chunks(), c) for i, c in enumerate(columns)]
    except _FAILED as exc:
        raise Unfit(str(exc)) from None


def keep_linked(
    rows: Sequence[pa.Array[Any]], link: Sequence[int], keys: Sequence[pa.Array[Any]]
) -> list[pa.Array[Any]]:
    """The rows (columns) whose link columns equal one of `keys` (the root rows' key columns),
    in their order: what the cursor path's filter keeps, compared on staged values, which are
    equal exactly when the driver's values are for columns of one declared type."""
    linked = [rows[i] for i in link]
    if any(
        a.type != k.type or pa.types.is_floating(a.type) for a, k in zip(linked, keys, strict=True)
    ):
        raise Unfit("a link column staged unlike the root key it matches")
    try:
        if len(linked) == 1:
            mask = pc.is_in(linked[0], value_set=keys[0])
            return [column.filter(mask) for column in rows]
        names = [f"k{i}" for i in range(len(keys))]
        left = pa.table([*linked, pa.array(range(len(linked[0])), pa.int64())], [*names, "row"])
        matched = left.join(pa.table(list(keys), names), keys=names, join_type="left semi")
        kept = pc.sort_indices(matched.column("row"))
        positions = matched.column("row").take(kept)
        return [column.take(positions) for column in rows]
    except _FAILED as exc:
        raise Unfit(str(exc)) from None


__all__ = ["Unfit", "keep_linked", "parse_csv"]
