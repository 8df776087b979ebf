"""The source's connections: a SQLite source is opened read-only, whatever the caller runs."""

from __future__ import annotations

import sqlite3

import pytest
import sqlalchemy as sa

from migrate.source import Source

from .conftest import MakeDb


def test_a_sqlite_source_is_never_written(make_db: MakeDb) -> None:
    path = make_db("CREATE TABLE T (ID INTEGER PRIMARY KEY, NAME TEXT);", {"T": [(1, "a")]})
    source = Source(f"sqlite:///{path}")
    try:
        with (
            source.engine.connect() as connection,
            pytest.raises(sa.exc.OperationalError, match="readonly"),
        ):
            connection.exec_driver_sql("DELETE FROM T")
    finally:
        source.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM T").fetchone() == (1,)


def test_a_missing_driver_names_the_one_to_install() -> None:
    from migrate.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        Source("mysql+notadriver://legacy@db.example/pas")
    assert caught.value.exit_code == 2 and caught.value.hint is not None
    for install in ("pip install PyMySQL", "pip install oracledb", "psycopg[binary]"):
        assert install in caught.value.hint
