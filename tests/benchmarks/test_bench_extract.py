"""The extract benchmark runs end to end on a tiny demo (figures only, never timed assertions)."""

from __future__ import annotations

import re
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from benchmarks import extract, extract_mariadb
from benchmarks.harness import Settings
from migrate.demo import create_demo
from migrate.project import Project


def test_extract_case_reports_every_engine_with_its_baselines() -> None:
    figures = extract.run(Settings(quick=True, repeats=1, documents=150))
    sqlite = [f for f in figures if "SQLite" in f.name]
    postgres = [f for f in figures if "PostgreSQL" in f.name]
    mariadb = [f for f in figures if "MariaDB" in f.name]
    assert len(sqlite) + len(postgres) + len(mariadb) == len(figures)
    names = ["one connection", f"{extract.WORKERS} workers"]
    cli = shutil.which("sqlite3")
    expected = extract.CLI if cli else extract.CURSOR
    for figure, name in zip(sqlite[:2], names, strict=True):
        assert figure.name.startswith("extract pds rows/s, SQLite") and figure.name.endswith(name)
        assert figure.goal == extract.GOAL and figure.met == (
            figure.ratio is not None and figure.ratio >= 0.6
        )
    ceilings = ["sqlite3 CLI", "Python cursor"] if cli else ["Python cursor"]
    for figure, name in zip(sqlite[2:], ceilings, strict=True):
        assert figure.name.endswith(f", chunk statements alone, {name}")
        assert figure.goal is None and figure.met is None
    for figure in sqlite:
        assert figure.baseline_name == expected
        assert figure.value is not None and figure.value > 0
        assert figure.baseline is not None and figure.baseline > 0
    if len(postgres) > 1:
        titles = [*names, "chunk statements alone, COPY binary"]
        for figure, name in zip(postgres, titles, strict=True):
            assert figure.name == f"extract pds rows/s, PostgreSQL, {name}"
            assert figure.baseline_name == extract.COPY
            assert figure.value is not None and figure.value > 0
            assert figure.baseline is not None and figure.baseline > 0
        assert postgres[2].goal is None
    else:
        (skipped,) = postgres
        assert skipped.name == "extract pds rows/s, PostgreSQL"
        assert skipped.note == "skipped (no PostgreSQL binaries in /usr/lib/postgresql)"
    if len(mariadb) > 1:
        titles = [*names, f"chunk statements alone, {extract_mariadb.DUMP}"]
        for figure, name in zip(mariadb, titles, strict=True):
            assert figure.name == f"extract pds rows/s, MariaDB, {name}"
            assert figure.baseline_name == "mariadb --quick --batch"
            assert figure.value is not None and figure.value > 0
            assert figure.baseline is not None and figure.baseline > 0
        assert mariadb[0].goal == extract.GOAL and mariadb[2].goal is None
    else:
        (skipped,) = mariadb
        assert skipped.note == "skipped (no mariadbd or mariadb client installed)"


@pytest.mark.mariadb
def test_the_mariadb_client_script_reads_what_the_chunk_statements_read(
    tmp_path: Path, mariadb_server: Any
) -> None:
    """The statements inlined for the `mariadb` client select the same rows as with parameters."""
    with extract_mariadb._project(mariadb_server, 200) as (url, spec, _):
        database = str(make_url(url).database)
        statements = extract._chunk_statements(url, spec, 40, copy=False)
        script = extract_mariadb._script(mariadb_server, database, statements)
        inlined = script.rstrip("\n").split(";\n")
        assert len(inlined) == len(statements) > len(spec.nodes)
        with mariadb_server.admin(database) as connection, connection.cursor() as cursor:
            for (sql, params), text in zip(statements, inlined, strict=True):
                cursor.execute(sql, params)
                rows = cursor.fetchall()
                cursor.execute(text.rstrip(";"))
                assert cursor.fetchall() == rows


def test_the_cli_script_reads_what_the_chunk_statements_read(tmp_path: Path) -> None:
    """The statements inlined for the sqlite3 CLI select the same rows as with parameters."""
    folder = tmp_path / "demo"
    create_demo(folder, patients=300, seed=3)
    project = Project.load(folder / "migrate.toml")
    try:
        spec = extract._pds_spec(project)
    finally:
        project.close()
    database = folder / "legacy.db"
    statements = extract._chunk_statements(f"sqlite:///{database}", spec, 100, copy=False)
    script = extract._sqlite_script(database, statements)
    inlined = script.rstrip("\n").split(";\n")
    assert len(inlined) == len(statements) > len(spec.nodes)
    with sqlite3.connect(database) as db:
        total = 0
        for (sql, params), text in zip(statements, inlined, strict=True):
            rows = db.execute(sql, params).fetchall()
            assert db.execute(text.rstrip(";")).fetchall() == rows
            total += len(rows)
    # Children of roots the mapping's `where` leaves out are read, then dropped by the toolkit:
    # the ceilings count the toolkit's rows over the statements' time.
    assert total > extract._toolkit_rows(f"sqlite:///{database}", spec, 100)


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
