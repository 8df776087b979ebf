"""The extract benchmark runs end to end on a tiny demo (figures only, never timed assertions)."""

from __future__ import annotations

import re
import shutil

from benchmarks import extract
from benchmarks.harness import Settings


def test_extract_case_reports_sqlite_and_postgres_with_their_baselines() -> None:
    figures = extract.run(Settings(quick=True, repeats=1, documents=150))
    sqlite, postgres = figures
    assert sqlite.name.startswith("extract pds rows/s, SQLite")
    expected = extract.CLI if shutil.which("sqlite3") else extract.CURSOR
    assert sqlite.baseline_name == expected
    assert sqlite.value is not None and sqlite.value > 0
    assert sqlite.baseline is not None and sqlite.baseline > 0
    assert sqlite.goal == extract.GOAL and sqlite.met == (
        sqlite.ratio is not None and sqlite.ratio >= 0.6
    )
    assert postgres.name == "extract pds rows/s, PostgreSQL"
    if postgres.samples:
        assert postgres.baseline_name == extract.COPY
        assert postgres.value is not None and postgres.value > 0
        assert postgres.baseline is not None and postgres.baseline > 0
    else:
        assert postgres.note == "skipped (no PostgreSQL binaries in /usr/lib/postgresql)"


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
