"""Fixtures for the source tests: SQLite files built from DDL, and a throwaway PostgreSQL server."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from postgres_server import PostgresServer, find_bin_dir

MakeDb = Callable[..., Path]


@pytest.fixture
def make_db(tmp_path: Path) -> MakeDb:
    """Build a SQLite file from a DDL script and rows: make_db(script, {table: [row, ...]})."""
    counter = iter(range(1000))

    def make(script: str, rows: dict[str, Sequence[Sequence[Any]]] | None = None) -> Path:
        path = tmp_path / f"source-{next(counter)}.db"
        db = sqlite3.connect(path)
        try:
            db.executescript(script)
            for table, values in (rows or {}).items():
                if values:
                    marks = ", ".join("?" for _ in values[0])
                    db.executemany(f"INSERT INTO {table} VALUES ({marks})", values)
            db.commit()
        finally:
            db.close()
        return path

    return make


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole session; skipped only when the binaries are missing."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.skip(
            "PostgreSQL binaries not found under /usr/lib/postgresql/*/bin (CI installs them)"
        )
    server = PostgresServer.start(bin_dir)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> str:
    """The URL of a fresh, empty PostgreSQL database."""
    return postgres_server.create_database()
