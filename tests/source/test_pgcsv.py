"""PostgreSQL COPY CSV text staged by Arrow: what the per-value normaliser stages, or Unfit."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from migrate.schema import ColumnType, ValueKind
from migrate.source.normalize import decimal_text, to_arrow
from migrate.source.pgcsv import Unfit, keep_linked, parse_csv
from migrate.source.types import arrow_type, resolve_type

NUMBER = ColumnType(ValueKind.NUMBER, "NUMERIC")
TEXT = ColumnType(ValueKind.STRING, "TEXT")
BYTES = ColumnType(ValueKind.BINARY, "BYTEA")


def _one(data: bytes, column: ColumnType) -> list[Any]:
    (array,) = parse_csv(data, [column])
    assert array.type == arrow_type(column)
    return array.to_pylist()


@pytest.mark.parametrize(
    "text",
    ["0", "-0", "0.000", "-0.000", "100", "100.0", "1.250", "-1.250", "0.0010", "12345678901234567"
     "890.123450", "7", "-7.5", "0.5", "1" + "0" * 60, "0." + "0" * 60 + "1"],
)  # fmt: skip
def test_number_text_is_decimal_text(text: str) -> None:
    assert _one(f"{text}\n".encode(), NUMBER) == [decimal_text(Decimal(text))]


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "1e5", "9" * 201])
def test_number_text_the_normaliser_would_treat_otherwise_is_unfit(text: str) -> None:
    with pytest.raises(Unfit):
        parse_csv(f"{text}\n".encode(), [NUMBER])


def test_null_and_empty_text_stay_apart_and_quoting_is_undone() -> None:
    data = (
        b'""\n\n"a,b"\n"say ""hi"""\n"two\nlines"\n"crlf\r\n"\n\\\\back\\slash\n'
        b'"\\."\n caf\xc3\xa9 \n'
    )
    assert _one(data, TEXT) == [
        "", None, "a,b", 'say "hi"', "two\nlines", "crlf\r\n", "\\\\back\\slash", "\\.", " café ",
    ]  # fmt: skip


def test_one_column_null_rows_are_rows() -> None:
    assert _one(b"\n\n1\n\n", ColumnType(ValueKind.INTEGER, "INTEGER")) == [None, None, 1, None]


def test_bytea_hex_is_decoded_for_the_whole_column() -> None:
    data = b"\\x00ff\n\n\\x\n\\x5c78\n\\xDEADbeef\n"
    assert _one(data, BYTES) == [b"\x00\xff", None, b"", b"\\x", b"\xde\xad\xbe\xef"]


@pytest.mark.parametrize("data", [b"\\000\n", b"\\x0\n\\x0\n", b"\\xzz\n", b"abc\n"])
def test_bytea_not_in_hex_output_is_unfit(data: bytes) -> None:
    with pytest.raises(Unfit):
        parse_csv(data, [BYTES])


def test_every_kind_matches_the_normaliser() -> None:
    declared = [
        "INTEGER", "NUMERIC(30)", "NUMERIC(10,2)", "NUMERIC(50,3)", "DOUBLE PRECISION", "BOOLEAN",
        "DATE", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "JSONB",
    ]  # fmt: skip
    columns = [resolve_type(d) for d in declared]
    data = (
        b"-9223372036854775808,123456789012345678901234567890,12.50,1.005,0.1,t,1969-12-31,"
        b'0001-01-01 00:00:00,1900-06-30 23:59:59.999999,"{""a"": 1.10}"\n'
        b",,,,,,,,,\n"
        b"0,0,-0.01,0.000,-1.5e-07,f,9999-12-31,1958-03-04 05:06:07.5,2020-01-31 12:45:00.25,[]\n"
    )
    raw: list[list[Any]] = [
        [-(2**63), None, 0],
        [Decimal(123456789012345678901234567890), None, Decimal(0)],
        [Decimal("12.50"), None, Decimal("-0.01")],
        [Decimal("1.005"), None, Decimal("0.000")],
        [0.1, None, -1.5e-07],
        [True, None, False],
        [dt.date(1969, 12, 31), None, dt.date(9999, 12, 31)],
        [dt.datetime(1, 1, 1), None, dt.datetime(1958, 3, 4, 5, 6, 7, 500000)],
        [dt.datetime(1900, 6, 30, 23, 59, 59, 999999, dt.UTC), None,
         dt.datetime(2020, 1, 31, 12, 45, 0, 250000, dt.UTC)],
        ['{"a": 1.10}', None, "[]"],
    ]  # fmt: skip
    staged = parse_csv(data, columns)
    for array, values, column in zip(staged, raw, columns, strict=True):
        expected = to_arrow(values, column)
        assert array.type == expected.type, column.declared
        assert array.equals(expected), column.declared


@pytest.mark.parametrize(
    ("data", "declared"),
    [
        (b"9223372036854775808\n", "BIGINT"),  # the cursor path widens the chunk's column
        (b"1.5\n", "INTEGER"),
        (b"12.345\n", "NUMERIC(10,2)"),  # more decimals than declared: the normaliser rounds
        (b"NaN\n", "NUMERIC(10,2)"),
        (b"infinity\n", "TIMESTAMP"),
        (b"0044-03-15 BC\n", "DATE"),
        (b"2020-01-31 13:45:00+01\n", "TIMESTAMP"),
        (b"yes\n", "BOOLEAN"),
        (b"\xff\n", "TEXT"),
    ],
)
def test_what_arrow_would_read_differently_is_unfit(data: bytes, declared: str) -> None:
    with pytest.raises(Unfit):
        parse_csv(data, [resolve_type(declared)])


def test_no_rows_gives_empty_columns_of_the_staged_types() -> None:
    columns = [TEXT, NUMBER, BYTES, resolve_type("TIMESTAMPTZ")]
    staged = parse_csv(b"", columns)
    assert [a.type for a in staged] == [arrow_type(c) for c in columns]
    assert all(len(a) == 0 for a in staged)


def test_keep_linked_keeps_matching_rows_in_order() -> None:
    rows = [pa.array(["b", "a", "c", None, "a"]), pa.array([1, 2, 3, 4, 5])]
    kept = keep_linked(rows, [0], [pa.array(["a", "b"])])
    assert [a.to_pylist() for a in kept] == [["b", "a", "a"], [1, 2, 5]]


def test_keep_linked_on_a_composite_key_keeps_order() -> None:
    rows = [pa.array(["B", "A", "A", "B", "A"]), pa.array([2, 1, 2, 1, 1]), pa.array(list("vwxyz"))]
    keys = [pa.array(["A", "B"]), pa.array([1, 2])]
    kept = keep_linked(rows, [0, 1], keys)
    assert [a.to_pylist() for a in kept] == [["B", "A", "A"], [2, 1, 1], ["v", "w", "z"]]


def test_keep_linked_refuses_keys_staged_unlike_the_link() -> None:
    with pytest.raises(Unfit):
        keep_linked([pa.array([1])], [0], [pa.array(["1"])])
    with pytest.raises(Unfit):
        keep_linked([pa.array([1.0])], [0], [pa.array([1.0])])
