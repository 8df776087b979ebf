"""The pass-through path for text and 64-bit integer columns stages exactly what the per-value
normalisers would, and leaves every other case to them."""

from __future__ import annotations

import pyarrow as pa
import pytest

from migrate.schema import ColumnType, ValueKind
from migrate.source.normalize import ZERO_DATE, BadValue, normaliser, to_arrow

INTEGER = ColumnType(ValueKind.INTEGER, "INTEGER")
TEXT = ColumnType(ValueKind.STRING, "VARCHAR2(20)")


@pytest.mark.parametrize(
    ("column", "values"),
    [
        (TEXT, ["a", None, "Siân", ""]),
        (TEXT, ["a", 5, None]),  # an int in a text column: the normaliser writes it as text
        (INTEGER, [1, None, -(2**63), 2**63 - 1]),
        (INTEGER, [1, 2.0, None]),  # a whole float (SQLite affinity) becomes an int
    ],
)
def test_staged_values_equal_the_per_value_normalisers(
    column: ColumnType, values: list[object]
) -> None:
    convert = normaliser(column)
    expected = [None if v is None else convert(v) for v in values]
    assert to_arrow(values, column).to_pylist() == expected


def test_integers_beyond_64_bits_are_staged_wide() -> None:
    staged = to_arrow([1, 2**70, None], INTEGER)
    assert staged.type == pa.decimal128(38, 0)
    assert [None if v is None else int(v) for v in staged.to_pylist()] == [1, 2**70, None]


def test_a_boolean_is_not_an_integer() -> None:
    with pytest.raises(BadValue):
        to_arrow([1, True], INTEGER)


def test_repeated_decimals_stage_as_each_would_alone_and_bad_ones_name_their_row() -> None:
    """Decimal results are remembered per column: a repeat must give what it gives alone, float
    and int and text of one value stay apart, and a bad value still fails at its own row."""
    ctype = ColumnType(ValueKind.DECIMAL, "NUMBER(8,2)", 8, 2)
    values = [12.5, 12.5, 12, "12.5", 0.0, -0.0, 1.005, 1.005, 12, 7.125]
    convert = normaliser(ctype)
    expected = [convert(value) for value in values]
    assert to_arrow(values, ctype).to_pylist() == expected
    with pytest.raises(BadValue) as caught:
        to_arrow([1.5, 1.5, "x", 1.5], ctype)
    assert caught.value.row == 2


@pytest.mark.parametrize(
    "text", ["0000-00-00", "0000-00-00 00:00:00.000000", "2001-00-15 10:00:00", "1999-12-00"]
)
def test_a_zero_date_is_a_bad_value_named_as_such(text: str) -> None:
    for kind in (ValueKind.DATE, ValueKind.TIMESTAMP, ValueKind.TIMESTAMP_TZ):
        with pytest.raises(BadValue) as caught:
            to_arrow(["2001-01-01", text], ColumnType(kind, "DATE"))
        assert caught.value.row == 1 and caught.value.got == ZERO_DATE
