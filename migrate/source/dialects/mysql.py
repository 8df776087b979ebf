"""MariaDB and MySQL (through PyMySQL): one consistent snapshot for every reader, streamed reads.

The view is a `START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY` in REPEATABLE READ. Another
process shares it by starting its own and proving it sees the same data: MariaDB reports, inside
such a transaction, the binary-log position of the last commit it sees (`binlog_snapshot_file`
and `_position`); two snapshots at one position see the same committed data, because every commit
moves the position. A worker whose snapshot is at another position (something committed in
between) does not read: the chunk is read on the snapshot's own connection (`ViewBusy`), so every
chunk of a run is read at the one point. Without a binary log (or on MySQL, which does not report
a snapshot's position) there is no proof, no token, and every chunk is read on that connection.

Every connection reads in UTF-8 (`charset=utf8mb4`) with the session time zone at UTC, so a
TIMESTAMP (stored by the server in UTC, shown in the session's zone) comes back in UTC: it
resolves to the `timestamp_tz` kind. Chunks are read through an unbuffered server-side cursor
(SSCursor): rows stream from the server in batches instead of the driver holding a second copy of
the whole result.

Types the value rules meet here first: BIT(1) is a boolean and BIT(n) an unsigned integer (read
as a number, not as bytes), TIME is text as the server writes it (`-12:34:56.500000`, hours past
24 included), a MariaDB JSON column (LONGTEXT with a `json_valid` check) is JSON, and a zero date
('0000-00-00', which MariaDB may hold and no calendar does) is a bad value, never a crash.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import URL, Connection
from sqlalchemy.engine.interfaces import ReflectedColumn
from sqlalchemy.sql.elements import ColumnElement

from migrate.schema import ColumnType, ValueKind
from migrate.source.dialects.base import (
    BATCH_ROWS,
    SourceDialect,
    View,
    ViewBusy,
    first_row,
    now,
    run_driver,
)

_BIT = re.compile(r"^BIT(\((\d+)\))?$", re.I)
_JSON_CHECK = re.compile(r"^\s*json_valid\(\s*`?([^`()]+)`?\s*\)\s*$", re.I)
_BEGIN = "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"


def _utc_session(dbapi_connection: Any, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SET time_zone = '+00:00'")
    finally:
        cursor.close()


class MySQLDialect(SourceDialect):
    names = ("mysql", "mariadb")
    token_kind = "mysql"  # noqa: S105 - a prefix, not a secret
    snapshot_hint = (
        "check the database is reachable and the user may read these tables (a MariaDB "
        "binary-log position also needs the BINLOG MONITOR privilege to be shared)"
    )

    @classmethod
    def prepare_url(cls, url: URL, base_dir: Path | None) -> URL:
        if "charset" not in url.query:
            url = url.update_query_dict({"charset": "utf8mb4"})
        return url

    def configure(self) -> None:
        event.listen(self.engine, "connect", _utc_session)

    # -- the view --------------------------------------------------------------------------

    def _start(self, connection: Connection) -> tuple[Connection, str | None]:
        """A consistent snapshot on `connection` and its binary-log position (None: unknown)."""
        connection = connection.execution_options(isolation_level="REPEATABLE READ")
        run_driver(connection, _BEGIN)
        cursor = connection.connection.cursor()
        try:
            cursor.execute("SHOW SESSION STATUS LIKE 'binlog_snapshot_%'")
            status = {str(name).lower(): str(value) for name, value in cursor.fetchall()}
        finally:
            cursor.close()
        file = status.get("binlog_snapshot_file", "")
        position = status.get("binlog_snapshot_position", "")
        return connection, (f"{file}:{position}" if file and position else None)

    def begin(self, connection: Connection) -> View:
        connection, position = self._start(connection)
        (version,) = first_row(connection, "SELECT VERSION()")
        if position is None:
            return View(connection, f"mysql:version={version};at={now()}")
        marker = f"mysql:binlog={position};version={version};at={now()}"
        return View(connection, marker, token=f"mysql:binlog={position}")

    def join(self, connection: Connection, value: str) -> Connection:
        connection, position = self._start(connection)
        if value != f"binlog={position}":
            raise ViewBusy(
                f"the source committed since the snapshot was taken (its view is at {value}, "
                f"a new one at binlog={position})",
                hint="the chunk is read on the snapshot's own connection instead",
            )
        return connection

    # -- reading ---------------------------------------------------------------------------

    def cursor(self, connection: Connection) -> Any:
        """An unbuffered server-side cursor (PyMySQL's or mysqlclient's SSCursor)."""
        module = type(connection.connection.dbapi_connection).__module__.split(".")[0]
        if module == "pymysql":
            import pymysql.cursors

            cursor = connection.connection.cursor(pymysql.cursors.SSCursor)
        else:
            cursor = connection.connection.cursor()
        cursor.arraysize = BATCH_ROWS
        return cursor

    def select_expr(
        self, column: ColumnElement[Any], type_: ColumnType, *, copy: bool = False
    ) -> ColumnElement[Any]:
        declared = type_.declared.strip().upper()
        if _BIT.match(declared):
            return sa.cast(column, mysql.BIGINT(unsigned=True))  # a number, all 64 bits of it
        if declared.startswith("TIME") and not declared.startswith("TIMESTAMP"):
            return sa.cast(column, sa.CHAR)  # the server's own text, not a timedelta
        return column

    # -- reflection ------------------------------------------------------------------------

    def declared(
        self,
        connection: Connection,
        name: str,
        schema: str | None,
        reflected: Callable[[], list[ReflectedColumn]],
    ) -> list[tuple[str, ColumnType | str, bool]]:
        json_columns = self._json_columns(connection, name, schema)
        columns: list[tuple[str, ColumnType | str, bool]] = []
        for column in reflected():
            resolved = self.resolve(column)
            if column["name"].casefold() in json_columns:
                resolved = ColumnType(ValueKind.JSON, "JSON")
            columns.append((column["name"], resolved, bool(column["nullable"])))
        return columns

    def resolve(self, column: ReflectedColumn) -> ColumnType | str:
        declared = self.type_text(column)
        upper = declared.strip().upper()
        bit = _BIT.match(upper)
        if bit:
            width = int(bit.group(2) or 1)
            if width == 1:
                return ColumnType(ValueKind.BOOLEAN, declared)
            digits = len(str(2**width - 1))
            return ColumnType(ValueKind.INTEGER, declared, digits, 0)
        if upper.startswith("TIMESTAMP"):
            # Stored in UTC and shown in the session's zone, which is UTC here: an instant.
            return ColumnType(ValueKind.TIMESTAMP_TZ, declared)
        return super().resolve(column)

    def _json_columns(self, connection: Connection, name: str, schema: str | None) -> set[str]:
        """MariaDB's JSON is LONGTEXT with a column check `json_valid(col)` (MySQL 8 has a JSON
        type SQLAlchemy reflects as such)."""
        if not getattr(self.sa, "is_mariadb", False):
            return set()
        rows = connection.exec_driver_sql(
            "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
            "WHERE CONSTRAINT_SCHEMA = COALESCE(%(schema)s, DATABASE()) AND TABLE_NAME = %(table)s",
            {"schema": schema, "table": name},
        ).fetchall()
        found = set()
        for (clause,) in rows:
            match = _JSON_CHECK.match(str(clause))
            if match:
                found.add(match.group(1).casefold())
        return found
