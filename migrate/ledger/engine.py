"""Opening the state database: URL resolution, SQLite durability settings, error translation.

SQLite gets WAL (readers never block the writer), `synchronous=FULL` (a committed transition
survives a power cut) and a 30 s busy timeout. Write transactions start with `BEGIN IMMEDIATE`, so
two processes sharing one state file queue for the lock instead of failing on a lock upgrade.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.pool import StaticPool

from migrate.errors import ConfigError, LedgerError, mask_secrets
from migrate.files import sqlite_reader_uri

BUSY_TIMEOUT_MS = 30_000
READ_OPTION = "migrate_ledger_read"


def resolve_url(url: str, base_dir: Path | None) -> sa.URL:
    """Parse `url`; a relative SQLite path is taken relative to the project folder."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ConfigError(
            "the state database URL cannot be parsed",
            hint="set [state] url in migrate.toml, e.g. sqlite:///.migrate/state.db",
        ) from exc
    if parsed.get_backend_name() != "sqlite" or not _is_file_database(parsed):
        return parsed
    path = Path(str(parsed.database))
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    return parsed.set(database=str(path))


def _is_file_database(url: sa.URL) -> bool:
    return url.database not in (None, "", ":memory:") and not str(url.database).startswith("file:")


def display(url: sa.URL) -> str:
    """The URL as messages show it: password masked."""
    return mask_secrets(url.render_as_string(hide_password=True))


def create_engine(url: sa.URL, *, read_only: bool = False) -> sa.Engine:
    """An engine for `url`, with SQLite set up for durability and concurrent writers.

    `read_only` opens an existing SQLite file so that nothing on disk changes (SQLite itself refuses
    writes); the caller deals with a missing file.
    """
    try:
        if url.get_backend_name() == "sqlite" and read_only and _is_file_database(url):
            return _sqlite_reader(Path(str(url.database)))
        if url.get_backend_name() == "sqlite":
            return _sqlite_engine(url)
        connect_args: dict[str, Any] = {}
        if url.get_backend_name() == "postgresql" and "connect_timeout" not in url.query:
            connect_args["connect_timeout"] = 10
        return sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as exc:
        raise ConfigError(
            f"the state database URL {display(url)} names a driver that is not available",
            hint="use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB in [state] url",
        ) from exc


def _sqlite_engine(url: sa.URL) -> sa.Engine:
    if _is_file_database(url):
        path = Path(str(url.database))
        _create_owner_only(path)
        engine = sa.create_engine(url)
    else:
        engine = sa.create_engine(
            url, poolclass=StaticPool, connect_args={"check_same_thread": False}
        )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to the "begin" hook below instead of the driver.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = FULL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        read_only = conn.get_execution_options().get(READ_OPTION, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def _sqlite_reader(path: Path) -> sa.Engine:
    uri = sqlite_reader_uri(path)

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(uri, uri=True, check_same_thread=False)

    engine = sa.create_engine("sqlite://", creator=connect, poolclass=StaticPool)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        dbapi_connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN")

    return engine


def is_missing_sqlite_file(url: sa.URL) -> bool:
    return (
        url.get_backend_name() == "sqlite"
        and _is_file_database(url)
        and not Path(str(url.database)).exists()
    )


def _create_owner_only(path: Path) -> None:
    """Create the folder (0700) and an empty database file (0600); SQLite gives its WAL files the
    database file's mode, so they are owner-only too."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
            os.close(fd)
    except FileExistsError:
        return
    except OSError as exc:
        raise LedgerError(
            f"cannot create the state database file {path}: {exc.strerror}",
            hint="check that the project folder is writable, or set [state] url",
        ) from exc


@contextmanager
def translate_errors(display_url: str, action: str) -> Iterator[None]:
    """Turn driver errors into LedgerError naming the masked URL, without SQL or parameters."""
    try:
        yield
    except sa.exc.SQLAlchemyError as exc:
        raise LedgerError(
            f"state database {display_url}: {action} failed: {describe(exc)}",
            hint=_hint(exc),
        ) from exc


def describe(exc: sa.exc.SQLAlchemyError) -> str:
    """The driver's first line only: statements and bound parameters stay out of messages."""
    orig = getattr(exc, "orig", None)
    source = orig if orig is not None else exc
    lines = str(source).strip().splitlines()
    first = lines[0] if lines else ""
    return f"{type(source).__name__}: {first}" if first else type(source).__name__


def _hint(exc: sa.exc.SQLAlchemyError) -> str:
    text = describe(exc).lower()
    if "not a database" in text or "malformed" in text:
        return "the file is not a usable state database; move it aside or set [state] url"
    if isinstance(exc, sa.exc.IntegrityError):
        return "the ledger refused an inconsistent record; this is a bug worth reporting"
    return "check [state] url in migrate.toml and that the state database is reachable"
