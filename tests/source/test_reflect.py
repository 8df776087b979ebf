"""Reflection of an Oracle-shaped SQLite file, and how the Source treats URLs and failures."""

from __future__ import annotations

import datetime as dt
import re
import socket
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from migrate.errors import ConfigError, SourceError
from migrate.schema import ValueKind
from migrate.source import ChunkRange, Source
from migrate.spec import ExtractSpec, NodeKind, NodeSpec

from .conftest import MakeDb

ORACLE_DDL = """
CREATE TABLE PATIENTS (
    ID RAW(16) NOT NULL,
    NHS_NUMBER VARCHAR2(10) NOT NULL,
    BALANCE NUMBER(10,2),
    SCORE BINARY_DOUBLE,
    SEEN_AT TIMESTAMP WITH TIME ZONE,
    BORN DATE,
    NOTES CLOB,
    WEIGHT NUMBER,
    CONSTRAINT PATIENTS_PK PRIMARY KEY (ID)
);
CREATE UNIQUE INDEX PATIENTS_NHS_UX ON PATIENTS (NHS_NUMBER);
CREATE TABLE VISITS (
    SITE VARCHAR2(5) NOT NULL,
    VISIT_NO NUMBER(10) NOT NULL,
    PATIENT_ID RAW(16),
    CODE CHAR(3),
    PRIMARY KEY (SITE, VISIT_NO),
    UNIQUE (PATIENT_ID, CODE)
);
CREATE TABLE ODD (A INTERVAL_THING, B VARCHAR2(3));
"""

PATIENT_ID = bytes(range(16))
LONG_NOTE = "é" * 2500 + "x" * 2500  # over 4000 characters


@pytest.fixture
def oracle_db(make_db: MakeDb) -> Path:
    return make_db(
        ORACLE_DDL,
        {
            "PATIENTS": [
                (
                    PATIENT_ID,
                    "9434765919",
                    12.5,
                    0.1,
                    "2020-01-31 13:45:00.25+01:00",
                    "1980-02-29",
                    LONG_NOTE,
                    3,
                ),
                (b"\xff" * 16, "9434765870", None, None, None, "2001-05-06 07:08:09", None, 1.25),
            ]
        },
    )


def test_reflects_declared_oracle_types_on_sqlite(oracle_db: Path) -> None:
    source = Source(f"sqlite:///{oracle_db}")
    schema = source.reflect()
    patients = schema.table("patients")
    assert patients is not None and patients.name == "PATIENTS"
    kinds = {c.name: c.type.kind for c in patients.columns}
    assert kinds == {
        "ID": ValueKind.BINARY,
        "NHS_NUMBER": ValueKind.STRING,
        "BALANCE": ValueKind.DECIMAL,
        "SCORE": ValueKind.FLOAT,
        "SEEN_AT": ValueKind.TIMESTAMP_TZ,
        "BORN": ValueKind.DATE,
        "NOTES": ValueKind.STRING,
        "WEIGHT": ValueKind.NUMBER,
    }
    assert [c.name for c in patients.columns][:3] == ["ID", "NHS_NUMBER", "BALANCE"]
    balance = patients.column("balance")
    assert balance is not None and (balance.type.precision, balance.type.scale) == (10, 2)
    assert balance.type.declared == "NUMBER(10,2)"
    assert patients.primary_key == ("ID",)
    assert ("NHS_NUMBER",) in patients.unique
    nhs = patients.column("NHS_NUMBER")
    assert nhs is not None and not nhs.nullable
    visits = schema.table("VISITS")
    assert visits is not None
    assert visits.primary_key == ("SITE", "VISIT_NO")
    assert ("PATIENT_ID", "CODE") in visits.unique
    source.close()


def test_unsupported_columns_are_left_out_and_listed(oracle_db: Path) -> None:
    source = Source(f"sqlite:///{oracle_db}")
    odd = source.reflect(["odd"]).table("ODD")
    assert odd is not None and [c.name for c in odd.columns] == ["B"]
    assert source.skipped_columns == {"ODD": {"A": "INTERVAL_THING"}}


def test_reflect_only_named_tables_and_missing_ones_are_absent(oracle_db: Path) -> None:
    schema = Source(f"sqlite:///{oracle_db}").reflect(["visits", "NOPE"])
    assert list(schema.tables) == ["VISITS"]


def test_extract_gives_exact_values_for_oracle_types(oracle_db: Path) -> None:
    source = Source(f"sqlite:///{oracle_db}")
    columns = ("ID", "NHS_NUMBER", "BALANCE", "SCORE", "SEEN_AT", "BORN", "NOTES", "WEIGHT")
    spec = ExtractSpec(
        "svc", "patient", "PATIENTS", ("ID",), None,
        (NodeSpec("patient", NodeKind.ROOT, "PATIENTS", columns),),
    )  # fmt: skip
    with source.snapshot() as snapshot:
        table = snapshot.extract(spec, ChunkRange(0, None, None))["patient"]
    assert table.column_names == list(columns)
    assert table.schema.field("ID").type == pa.binary()
    assert table.schema.field("BALANCE").type == pa.decimal128(38, 2)
    assert table.schema.field("SEEN_AT").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("WEIGHT").type == pa.string()
    rows = table.to_pylist()
    first = rows[0]
    assert first["ID"] == PATIENT_ID
    assert first["BALANCE"] == Decimal("12.50") and str(first["BALANCE"]) == "12.50"
    assert first["SCORE"] == 0.1
    assert first["SEEN_AT"] == dt.datetime(2020, 1, 31, 12, 45, 0, 250000, tzinfo=dt.UTC)
    assert first["BORN"] == dt.datetime(1980, 2, 29)
    assert first["NOTES"] == LONG_NOTE
    assert first["WEIGHT"] == "3"
    second = rows[1]
    assert second["BALANCE"] is None and second["NOTES"] is None
    assert second["BORN"] == dt.datetime(2001, 5, 6, 7, 8, 9)
    assert second["WEIGHT"] == "1.25"


def test_sqlite_paths_are_relative_to_the_project_folder(oracle_db: Path) -> None:
    source = Source(f"sqlite:///{oracle_db.name}", base_dir=oracle_db.parent)
    assert source.reflect(["PATIENTS"]).table("PATIENTS") is not None
    assert source.dialect == "sqlite"


def test_a_missing_sqlite_file_is_a_source_error_and_is_not_created(tmp_path: Path) -> None:
    source = Source("sqlite:///absent.db", base_dir=tmp_path)
    with pytest.raises(SourceError) as caught:
        source.reflect()
    assert caught.value.exit_code == 3
    assert "absent.db" in str(caught.value) and caught.value.hint
    assert not (tmp_path / "absent.db").exists()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_unreachable_server_names_the_masked_url_never_the_password() -> None:
    secret = "s3cr3t-Pa55"
    url = f"postgresql+psycopg://spine@127.0.0.1:{_closed_port()}/legacy"
    source = Source(url, password=secret)
    assert source.display_url.startswith("postgresql+psycopg://spine:***@127.0.0.1:")
    with pytest.raises(SourceError) as caught:
        source.reflect()
    text = str(caught.value)
    assert secret not in text
    assert "spine:***@127.0.0.1" in text
    assert caught.value.exit_code == 3 and caught.value.hint


def test_a_malformed_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        Source("not a url")


def test_a_column_is_read_by_the_declared_type_source_types_names(oracle_db: Path) -> None:
    """`[source.types]`: an Oracle DATE an earlier move made a TIMESTAMP, read as a DATE again."""
    source = Source(f"sqlite:///{oracle_db}", types={"patients.born": "TIMESTAMP"})
    born = source.reflect(["PATIENTS"]).table("PATIENTS").column("BORN")  # type: ignore[union-attr]
    assert born is not None and born.type.kind is ValueKind.TIMESTAMP
    assert born.type.declared == "TIMESTAMP"
    source.close()


@pytest.mark.parametrize(
    ("types", "message"),
    [
        ({"PATIENTS.NOPE": "DATE"}, "PATIENTS.NOPE, which is not a column of PATIENTS"),
        ({"PATIENTS.BORN": "INTERVAL DAY"}, "PATIENTS.BORN = 'INTERVAL DAY': unsupported"),
    ],
)
def test_a_source_types_line_that_cannot_apply_is_a_config_error(
    oracle_db: Path, types: dict[str, str], message: str
) -> None:
    source = Source(f"sqlite:///{oracle_db}", types=types)
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        source.reflect(["PATIENTS"])
    assert caught.value.exit_code == 2
    source.close()


def test_a_sqlite_schema_is_an_attached_database(oracle_db: Path, tmp_path: Path) -> None:
    """`[source] schema` on SQLite names an attached database (`main` is the file itself)."""
    source = Source(f"sqlite:///{oracle_db}", schema="main")
    patients = source.reflect(["PATIENTS"]).table("PATIENTS")
    assert patients is not None and patients.column("BALANCE") is not None
    spec = ExtractSpec(
        "svc", "patient", "PATIENTS", ("ID",), None,
        (NodeSpec("patient", NodeKind.ROOT, "PATIENTS", ("ID", "NHS_NUMBER")),),
    )  # fmt: skip
    with source.snapshot() as snapshot:
        rows = snapshot.extract(spec, ChunkRange(0, None, None))["patient"]
    assert rows.num_rows == 2
    source.close()
