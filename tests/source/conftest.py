"""Fixtures for the source tests: SQLite files built from DDL (PostgreSQL: tests/conftest.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

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
