"""resolve_type reads every dialect's spelling of a declared type; arrow_type stages each kind."""

from __future__ import annotations

import pyarrow as pa
import pytest

from migrate.errors import SourceError
from migrate.schema import ColumnType, ValueKind
from migrate.source import arrow_type, resolve_type

K = ValueKind

CASES: list[tuple[str, ValueKind, int | None, int | None]] = [
    ("VARCHAR2(100 CHAR)", K.STRING, None, None),
    ("VARCHAR2(30 BYTE)", K.STRING, None, None),
    ("NVARCHAR2(50)", K.STRING, None, None),
    ("CHAR(1)", K.STRING, None, None),
    ("NCHAR(2)", K.STRING, None, None),
    ("VARCHAR(20)", K.STRING, None, None),
    ("character varying(20)", K.STRING, None, None),
    ("character(3)", K.STRING, None, None),
    ("text", K.STRING, None, None),
    ("CLOB", K.STRING, None, None),
    ("NCLOB", K.STRING, None, None),
    ("LONG", K.STRING, None, None),
    ("uuid", K.STRING, None, None),
    ("INTEGER", K.INTEGER, None, None),
    ("INT", K.INTEGER, None, None),
    ("SMALLINT", K.INTEGER, None, None),
    ("BIGINT", K.INTEGER, None, None),
    ("BIGINT UNSIGNED", K.INTEGER, 20, 0),
    ("NUMBER(10)", K.INTEGER, 10, 0),
    ("NUMBER(10,0)", K.INTEGER, 10, 0),
    ("NUMBER(*,0)", K.INTEGER, 38, 0),
    ("NUMERIC(12,0)", K.INTEGER, 12, 0),
    ("NUMBER(5,-2)", K.INTEGER, 7, 0),
    ("NUMBER(10,2)", K.DECIMAL, 10, 2),
    ("NUMERIC(12,3)", K.DECIMAL, 12, 3),
    ("DECIMAL(8,4)", K.DECIMAL, 8, 4),
    ("NUMBER(*,2)", K.DECIMAL, None, 2),
    ("NUMBER", K.NUMBER, None, None),
    ("NUMERIC", K.NUMBER, None, None),
    ("DECIMAL", K.NUMBER, None, None),
    ("BINARY_DOUBLE", K.FLOAT, None, None),
    ("BINARY_FLOAT", K.FLOAT, None, None),
    ("FLOAT", K.FLOAT, None, None),
    ("FLOAT(126)", K.FLOAT, None, None),
    ("REAL", K.FLOAT, None, None),
    ("DOUBLE PRECISION", K.FLOAT, None, None),
    ("DOUBLE", K.FLOAT, None, None),
    ("RAW(16)", K.BINARY, None, None),
    ("LONG RAW", K.BINARY, None, None),
    ("BLOB", K.BINARY, None, None),
    ("BYTEA", K.BINARY, None, None),
    ("VARBINARY(16)", K.BINARY, None, None),
    ("DATE", K.DATE, None, None),
    ("TIMESTAMP", K.TIMESTAMP, None, None),
    ("TIMESTAMP(6)", K.TIMESTAMP, None, None),
    ("DATETIME", K.TIMESTAMP, None, None),
    ("timestamp without time zone", K.TIMESTAMP, None, None),
    ("timestamp(3) without time zone", K.TIMESTAMP, None, None),
    ("TIMESTAMP WITH TIME ZONE", K.TIMESTAMP_TZ, None, None),
    ("TIMESTAMP(6) WITH TIME ZONE", K.TIMESTAMP_TZ, None, None),
    ("TIMESTAMP(3) WITH LOCAL TIME ZONE", K.TIMESTAMP_TZ, None, None),
    ("timestamptz", K.TIMESTAMP_TZ, None, None),
    ("BOOLEAN", K.BOOLEAN, None, None),
    ("bool", K.BOOLEAN, None, None),
    ("JSON", K.JSON, None, None),
    ("JSONB", K.JSON, None, None),
    ("TIME", K.STRING, None, None),  # the server's own text of a time of day
    ("TIME(3)", K.STRING, None, None),
    ("time with time zone", K.STRING, None, None),
    ("timetz", K.STRING, None, None),
]


@pytest.mark.parametrize(("declared", "kind", "precision", "scale"), CASES)
def test_resolves_every_documented_name(
    declared: str, kind: ValueKind, precision: int | None, scale: int | None
) -> None:
    resolved = resolve_type(declared)
    assert (resolved.kind, resolved.precision, resolved.scale) == (kind, precision, scale)
    assert resolved.declared == declared


def _variants(declared: str) -> list[str]:
    spaced = declared.replace("(", " ( ").replace(",", " , ").replace(")", " ) ")
    return [declared.lower(), declared.upper(), f"  {spaced}  ", declared.title()]


@pytest.mark.parametrize(("declared", "kind", "precision", "scale"), CASES)
def test_case_and_spacing_do_not_matter(
    declared: str, kind: ValueKind, precision: int | None, scale: int | None
) -> None:
    for variant in _variants(declared):
        resolved = resolve_type(variant)
        assert (resolved.kind, resolved.precision, resolved.scale) == (kind, precision, scale)


def test_text_like_unknown_names_are_strings() -> None:
    assert resolve_type("VARCHAR_IGNORECASE(10)").kind is K.STRING
    assert resolve_type("MYTEXT").kind is K.STRING
    assert resolve_type("LONGVARCHAR").kind is K.STRING


@pytest.mark.parametrize("declared", ["INTERVAL DAY(2) TO SECOND(6)", "XMLTYPE", "", "GEOMETRY"])
def test_unknown_types_raise_a_source_error_naming_the_type(declared: str) -> None:
    with pytest.raises(SourceError) as caught:
        resolve_type(declared)
    assert repr(declared) in caught.value.message
    assert caught.value.hint and "view" in caught.value.hint


@pytest.mark.parametrize(
    ("declared", "expected"),
    [
        ("VARCHAR2(10)", pa.string()),
        ("JSONB", pa.string()),
        ("NUMBER", pa.string()),
        ("INTEGER", pa.int64()),
        ("NUMBER(18)", pa.int64()),
        ("NUMBER(19)", pa.decimal128(38, 0)),
        ("NUMBER(*,0)", pa.decimal128(38, 0)),
        ("NUMERIC(50,0)", pa.decimal256(76, 0)),
        ("NUMBER(10,2)", pa.decimal128(38, 2)),
        ("NUMBER(*,4)", pa.decimal128(38, 4)),
        ("BINARY_DOUBLE", pa.float64()),
        ("DATE", pa.timestamp("us")),
        ("TIMESTAMP(6)", pa.timestamp("us")),
        ("TIMESTAMP WITH TIME ZONE", pa.timestamp("us", tz="UTC")),
        ("BOOLEAN", pa.bool_()),
        ("RAW(16)", pa.binary()),
    ],
)
def test_arrow_type_of_each_kind(declared: str, expected: pa.DataType) -> None:
    assert arrow_type(resolve_type(declared)) == expected


def test_every_kind_has_an_arrow_type() -> None:
    for kind in ValueKind:
        assert isinstance(arrow_type(ColumnType(kind, kind.value)), pa.DataType)


def test_public_api_is_exactly_all() -> None:
    import migrate.source as package

    assert sorted(package.__all__) == [
        "ChunkRange", "Snapshot", "Source", "StagedChunk", "arrow_type", "read_staged",
        "resolve_type", "write_staged",
    ]  # fmt: skip
    assert all(hasattr(package, name) for name in package.__all__)
