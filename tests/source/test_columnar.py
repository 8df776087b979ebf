"""Whole-column conversion through Arrow stages exactly what the per-value normalisers would, and
declines (None) whenever it could not be sure to."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from migrate.schema import ColumnType, ValueKind
from migrate.source.columnar import column_array
from migrate.source.normalize import BadValue, normaliser, to_arrow
from migrate.source.types import arrow_type

DATE = ColumnType(ValueKind.DATE, "DATE")
TIMESTAMP = ColumnType(ValueKind.TIMESTAMP, "TIMESTAMP(6)")
ZONED = ColumnType(ValueKind.TIMESTAMP_TZ, "TIMESTAMP WITH TIME ZONE")
TIMES = (DATE, TIMESTAMP, ZONED)
PARIS = dt.timezone(dt.timedelta(hours=1))


def _per_value(values: list[Any], column: ColumnType) -> list[Any]:
    convert = normaliser(column)
    return [None if v is None else convert(v) for v in values]


def _fast(values: list[Any], column: ColumnType) -> pa.Array[Any] | None:
    return column_array(values, column.kind, arrow_type(column))


@pytest.mark.parametrize(
    ("column", "values"),
    [
        (ColumnType(ValueKind.STRING, "VARCHAR2(9)"), ["a", None, "Siân", ""]),
        (ColumnType(ValueKind.JSON, "JSON"), ['{"a": 1}', None]),
        (ColumnType(ValueKind.INTEGER, "NUMBER(10)", 10, 0), [1, None, -(2**63), 2**63 - 1]),
        (ColumnType(ValueKind.INTEGER, "NUMERIC(10)", 10, 0), [Decimal("7"), Decimal("1E+2")]),
        (ColumnType(ValueKind.DECIMAL, "NUMBER(10,2)", 10, 2), [Decimal("1.5"), Decimal("-0.25")]),
        (ColumnType(ValueKind.NUMBER, "NUMBER"), [12, -3, None]),
        (ColumnType(ValueKind.FLOAT, "BINARY_DOUBLE"), [0.1, float("inf"), None]),
        (ColumnType(ValueKind.BOOLEAN, "BOOLEAN"), [True, False, None]),
        (ColumnType(ValueKind.BINARY, "RAW(16)"), [b"\x00\xff", b"", None]),
        (DATE, [dt.date(2020, 2, 29), None]),
        (ZONED, [dt.date(1999, 12, 31)]),
        (TIMESTAMP, [dt.datetime(2020, 1, 1, 10, 30, 0, 5), None]),
        (ZONED, [dt.datetime(2020, 1, 1, 10), dt.datetime(2020, 6, 1, 10, tzinfo=PARIS)]),
        (DATE, ["2020-01-31", "2020-01-31 13:45:00", "2020-01-31T13:45:00.5", None]),
        (ZONED, ["2003-06-26 09:42:59.444497-03:30", "2020-05-28 14:01:23", "2001-01-01T00Z"]),
        (TIMESTAMP, [None, None]),
    ],
)
def test_arrow_gives_what_the_normalisers_give(column: ColumnType, values: list[Any]) -> None:
    fast = _fast(values, column)
    assert fast is not None, "expected the whole-column path"
    assert fast.type == arrow_type(column)
    assert fast.to_pylist() == _per_value(values, column)


@pytest.mark.parametrize(
    ("column", "values"),
    [
        (ColumnType(ValueKind.STRING, "VARCHAR2(9)"), ["a", 5]),  # mixed types
        (ColumnType(ValueKind.INTEGER, "NUMBER(10)", 10, 0), [1, True]),  # a bool is no int
        (ColumnType(ValueKind.INTEGER, "NUMBER(10)", 10, 0), [2**64]),  # beyond 64 bits
        (ColumnType(ValueKind.INTEGER, "NUMBER(10)", 10, 0), [Decimal("1.5")]),
        (ColumnType(ValueKind.INTEGER, "NUMBER(30)", 30, 0), [5]),  # staged as a decimal
        (ColumnType(ValueKind.DECIMAL, "NUMBER(10,2)", 10, 2), [Decimal("1.005")]),  # rounds
        (ColumnType(ValueKind.DECIMAL, "NUMBER(10,2)", 10, 2), [Decimal("NaN")]),
        (ColumnType(ValueKind.NUMBER, "NUMBER"), ["12.50"]),  # text is normalised per value
        (ColumnType(ValueKind.FLOAT, "FLOAT"), [1]),
        (ColumnType(ValueKind.BINARY, "BLOB"), [bytearray(b"x")]),
        (DATE, ["2021-02-29"]),  # no such day: the per-value path names the row
        (DATE, [" 2020-01-01"]),  # spaces: stripped per value, not by Arrow
        (DATE, ["20200101"]),  # a form Python reads and this path does not vouch for
        (TIMESTAMP, ["2020-01-01 10:00:00.1234567"]),  # beyond microseconds
        (TIMESTAMP, ["2020-01-01 10:00:00+0100"]),
        (TIMESTAMP, ["2003-06-26 09:42:59+10:00", None]),  # a zone: the per-value path flags it
        (TIMESTAMP, [dt.datetime(2020, 1, 1, 10, tzinfo=PARIS)]),
        (DATE, ["0000-01-01"]),
        (DATE, [dt.date(2020, 1, 1), dt.datetime(2020, 1, 1)]),
    ],
)
def test_anything_uncertain_is_left_to_the_normalisers(
    column: ColumnType, values: list[Any]
) -> None:
    assert _fast(values, column) is None


_DIGITS = st.text(alphabet="0123456789", min_size=1, max_size=4)
_PIECES = st.lists(
    st.one_of(_DIGITS, st.sampled_from(["-", ":", " ", "T", ".", "+", "Z", "0", "1", "2"])),
    max_size=14,
)


@st.composite
def _iso_like(draw: st.DrawFn) -> str:
    """Mostly valid ISO text with random damage, to find where the two parsers could disagree."""
    moment = draw(st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31)))
    text = moment.isoformat(sep=draw(st.sampled_from([" ", "T"])))
    text = text[: draw(st.integers(min_value=0, max_value=len(text)))]
    text += draw(st.sampled_from(["", "Z", "+01:00", "-03:30", "+14:00", "+24:00", "-00:00"]))
    if draw(st.booleans()):
        text += "".join(draw(_PIECES))
    return text


@settings(max_examples=400, deadline=None)
@given(
    values=st.lists(st.one_of(st.none(), _iso_like()), max_size=6), column=st.sampled_from(TIMES)
)
def test_timestamp_text_agrees_with_fromisoformat(values: list[Any], column: ColumnType) -> None:
    fast = _fast(values, column)
    try:
        expected = _per_value(values, column)
    except BadValue:
        assert fast is None  # the per-value path then reports the bad row
        return
    if fast is not None:
        assert fast.to_pylist() == expected
    assert to_arrow(values, column).to_pylist() == expected
