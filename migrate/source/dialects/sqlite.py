"""SQLite: a read-only connection, one read transaction, and a view shared by the file's header.

The declared type text comes from `PRAGMA table_info`: SQLAlchemy maps SQLite's declared types by
affinity (RAW(16) becomes NUMERIC, BINARY_DOUBLE an unknown), and the value rules need the text.

Another connection sees the same view in a rollback-journal mode: the first read transaction's
SHARED lock keeps every writer out until it ends, and the file change counter in the database
header (bytes 24-27, changed by every commit) proves a later transaction sees the same data. In
WAL mode each reader has its own view and no way to share it: no token.

The header is read through a descriptor that stays open while any view of the file is open in
this process (`_Headers`): SQLite's locks are POSIX record locks, which belong to the process
and are all released when it closes any descriptor of the file, so opening and closing the file
to read 4 bytes would silently let writers in under a view that claims to keep them out.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection
from sqlalchemy.engine.interfaces import ReflectedColumn

from migrate.errors import SourceError
from migrate.schema import ColumnType
from migrate.source.dialects.base import SourceDialect, View, first_row
from migrate.source.normalize import tolerant_text
from migrate.source.types import resolve_type

_SHARED_MODES = ("delete", "truncate", "persist")  # rollback journals: readers lock out writers
_CONFIG_HINT = (
    "check [source] url in migrate.toml (SQLite paths are relative to the project folder)"
)


def _reader(dbapi_connection: Any, _record: object) -> None:
    """Every SQLite source connection is read-only: the source is never written. (Not memory
    mapped: mapped pages count as the process's resident memory, which would then grow with the
    source file up to the map's size.)"""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA query_only = ON")
    finally:
        cursor.close()


def _file(database: str | None) -> str | None:
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return database


class _Headers:
    """One read-only descriptor per database file, open while this process holds a view of it.

    Closing a descriptor of a file drops every POSIX lock the process holds on that file, the
    SHARED lock of an open read transaction included (SQLite itself never closes one while a
    lock is held). So the header is read through a descriptor opened before a view takes its
    lock and closed only when no view of the file is left in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, tuple[int, int]] = {}  # path -> (descriptor, views using it)

    def acquire(self, path: str) -> None:
        with self._lock:
            found = self._open.get(path)
            if found is None:
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                except OSError:
                    return  # no file (yet): `counter` reads None, the view gets no token
                found = (fd, 0)
            self._open[path] = (found[0], found[1] + 1)

    def release(self, path: str) -> None:
        with self._lock:
            found = self._open.get(path)
            if found is None:
                return
            fd, users = found
            if users > 1:
                self._open[path] = (fd, users - 1)
                return
            del self._open[path]
        os.close(fd)  # no view of the file is left in this process: no lock to lose

    def counter(self, path: str) -> int | None:
        """The file change counter (header bytes 24-27), or None without a header."""
        with self._lock:
            found = self._open.get(path)
            if found is None:
                return None
            try:
                header = os.pread(found[0], 100, 0)
            except OSError:
                return None
        if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
            return None
        return int.from_bytes(header[24:28], "big")


_HEADERS = _Headers()


class SQLiteDialect(SourceDialect):
    names = ("sqlite",)
    token_kind = "sqlite"  # noqa: S105 - a prefix, not a secret
    views_travel = False

    @classmethod
    def prepare_url(cls, url: URL, base_dir: Path | None) -> URL:
        database = _file(url.database)
        if database is None:
            return url
        path = Path(database)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        return url.set(database=str(path))

    def configure(self) -> None:
        event.listen(self.engine, "connect", _reader)

    def check_reachable(self, display_url: str) -> None:
        database = _file(self.engine.url.database)
        if database is not None and not Path(database).is_file():
            raise SourceError(
                f"the source database file does not exist: {display_url}", hint=_CONFIG_HINT
            )

    def fetch_all(
        self, cursor: Any, sql: str, params: Sequence[Any] | Mapping[str, Any]
    ) -> list[tuple[Any, ...]]:
        """SQLite does not check that text is UTF-8, and its driver fails the whole read on such
        text (quoting it in the message): the statement is then read again with a text factory
        that keeps undecodable text as `Undecodable` bytes, which the normaliser flags as its
        row's flaw."""
        try:
            return super().fetch_all(cursor, sql, params)
        except sqlite3.OperationalError as exc:
            if not str(exc).startswith("Could not decode to UTF-8"):
                raise
        connection = cursor.connection
        connection.text_factory = tolerant_text
        try:
            return super().fetch_all(cursor, sql, params)
        finally:
            connection.text_factory = str

    def begin(self, connection: Connection) -> View:
        self._hold_header()
        try:
            _read(connection)
            (version,) = first_row(connection, "PRAGMA data_version")
            token = self._token(connection)
            # Told apart from any other snapshot: SQLite has no snapshot id (data_version counts
            # only from this connection's start), so the marker takes the time to the
            # microsecond and, where there is one, the file change counter the token proves.
            stamp = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
            marker = f"sqlite:data_version={version};at={stamp.replace('+00:00', 'Z')}"
            if token is not None:
                marker += f";{token.removeprefix('sqlite:')}"
            return View(connection, marker, token=token)
        except BaseException:
            self._release_header()
            raise

    def join(self, connection: Connection, value: str) -> Connection:
        self._hold_header()
        try:
            _read(connection)
            self._same_view(connection, f"{self.token_kind}:{value}")
        except BaseException:
            self._release_header()
            raise
        return connection

    def end(self, view: View) -> None:
        """The view's connection is closed: its header descriptor may go with it."""
        self._release_header()

    def _database(self) -> str | None:
        """The database file as the header registry knows it (one entry per file, however its
        path is spelled)."""
        database = _file(self.engine.url.database)
        return None if database is None else os.path.realpath(database)

    def _hold_header(self) -> None:
        database = self._database()
        if database is not None:
            _HEADERS.acquire(database)

    def _release_header(self) -> None:
        database = self._database()
        if database is not None:
            _HEADERS.release(database)

    def pause(self, view: View) -> bool:
        """Between chunks a worker holds no lock: the next read proves by the token that the
        view is the same. Only for a view with a token: without one, a new transaction could
        see newer data."""
        if view.token is None:
            return False
        view.connection.connection.rollback()
        return True

    def resume(self, view: View) -> None:
        assert view.token is not None
        _read(view.connection)
        self._same_view(view.connection, view.token)

    def _counter(self) -> int | None:
        """The database file's change counter, or None when it has no header (read through the
        descriptor the view holds: never one opened and closed here)."""
        database = self._database()
        return None if database is None else _HEADERS.counter(database)

    def _token(self, connection: Connection) -> str | None:
        """The view's token, read while the connection's read transaction holds its SHARED
        lock."""
        (mode,) = first_row(connection, "PRAGMA journal_mode")
        (locking,) = first_row(connection, "PRAGMA locking_mode")
        if str(mode).lower() not in _SHARED_MODES or str(locking).lower() != "normal":
            return None
        counter = self._counter()
        return None if counter is None else f"sqlite:counter={counter}"

    def _same_view(self, connection: Connection, token: str) -> None:
        """Refuse a read transaction that does not see the view `token` names."""
        if self._token(connection) != token:
            raise SourceError(
                f"the source changed since the snapshot was taken ({token} expected)",
                hint="something wrote to the SQLite file while the snapshot was open; run the "
                "command again",
            )

    def declared(
        self,
        connection: Connection,
        name: str,
        schema: str | None,
        reflected: Callable[[], list[ReflectedColumn]],
    ) -> list[tuple[str, ColumnType | str, bool]]:
        quote = self.sa.identifier_preparer.quote_identifier
        pragma = f"PRAGMA {quote(schema)}.table_info" if schema else "PRAGMA table_info"
        rows = connection.exec_driver_sql(f"{pragma}({quote(name)})").fetchall()
        columns: list[tuple[str, ColumnType | str, bool]] = []
        for row in rows:
            declared = str(row[2] or "")
            try:
                resolved: ColumnType | str = resolve_type(declared)
            except SourceError:
                resolved = declared
            columns.append((str(row[1]), resolved, not row[3]))
        return columns


def _read(connection: Connection) -> None:
    """Start the connection's read transaction (deferred BEGIN, then a first read)."""
    cursor = connection.connection.cursor()
    try:
        cursor.execute("BEGIN")
        cursor.execute("SELECT count(*) FROM sqlite_master")
    finally:
        cursor.close()
