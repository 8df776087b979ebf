"""The extract benchmark runs end to end on a tiny demo (figures only, never timed assertions)."""

from __future__ import annotations

import re
import shutil

from benchmarks import extract
from benchmarks.harness import Settings


def test_extract_case_reports_sqlite_and_postgres_with_their_baselines() -> None:
    figures = extract.run(Settings(quick=True, repeats=1, documents=150))
    sqlite, postgres = figures[:2], figures[2:]
    names = ["one connection", f"{extract.WORKERS} workers"]
    expected = extract.CLI if shutil.which("sqlite3") else extract.CURSOR
    for figure, name in zip(sqlite, names, strict=True):
        assert figure.name.startswith("extract pds rows/s, SQLite") and figure.name.endswith(name)
        assert figure.baseline_name == expected
        assert figure.value is not None and figure.value > 0
        assert figure.baseline is not None and figure.baseline > 0
        assert figure.goal == extract.GOAL and figure.met == (
            figure.ratio is not None and figure.ratio >= 0.6
        )
    if len(postgres) == 2:
        for figure, name in zip(postgres, names, strict=True):
            assert figure.name == f"extract pds rows/s, PostgreSQL, {name}"
            assert figure.baseline_name == extract.COPY
            assert figure.value is not None and figure.value > 0
            assert figure.baseline is not None and figure.baseline > 0
    else:
        (skipped,) = postgres
        assert skipped.name == "extract pds rows/s, PostgreSQL"
        assert skipped.note == "skipped (no PostgreSQL binaries in /usr/lib/postgresql)"


def test_postgres_ddl_has_no_oracle_types_left() -> None:
    for table in extract.PG_TABLES:
        ddl = extract.pg_ddl(table)
        assert not re.search(r"VARCHAR2|NUMBER\(|RAW\(|CLOB|WITH TIME ZONE|\bDATE\b", ddl), ddl
        assert ddl.startswith(f"CREATE TABLE {table} (")
    patients = extract.pg_ddl("PATIENTS")
    assert "RECORD_UID BYTEA NOT NULL" in patients
    assert "CREATED_AT TIMESTAMPTZ NOT NULL" in patients
    assert "DATE_OF_BIRTH TIMESTAMP(0) NOT NULL" in patients
    assert "SERIAL_CHANGE NUMERIC(10) NOT NULL" in patients
