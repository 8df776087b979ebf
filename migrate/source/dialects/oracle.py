"""Oracle (python-oracledb, thin mode): one SCN per run, every table reference `AS OF SCN n`.

No view token: every statement names its SCN, so any connection reads the same data without
joining anything; the planning connection reads the chunks. A chunk that hits ORA-01555 (the undo
it needs is gone: snapshot too old) is read again alone at a fresh SCN (`fresh_scn`), and the
snapshot records it (`Snapshot.reread`) so delta catch-up covers what changed in between.

Reads are set up for bulk: `arraysize` and `prefetchrows` of a batch, NUMBER fetched as an exact
Decimal (never a binary float) unless it is an integer, and LOBs fetched whole as text or bytes
(LONG and LONG RAW variables, streamed by the driver, never cut at a size), so no LOB locator
outlives its row. A bound datetime is bound as TIMESTAMP: oracledb binds a `datetime` as DATE by
default, which would drop a chunk bound's fraction of a second.

Nothing here has run against a live Oracle server (none can run where this is developed); the
statements are compiled with SQLAlchemy's Oracle dialect set up as a connection to Oracle 19
sets it up, and checked against Oracle's rules by the tests.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.engine.interfaces import ReflectedColumn
from sqlalchemy.sql import sqltypes
from sqlalchemy.sql.elements import ColumnElement

from migrate.schema import ColumnType, ValueKind
from migrate.source.dialects.base import BATCH_ROWS, SourceDialect, View, first_row

_SNAPSHOT_TOO_OLD = 1555
_CURRENT_SCN = "SELECT current_scn FROM v$database"


def output_type(cursor: Any, metadata: Any) -> Any:
    """The variable oracledb fetches a column into (an `outputtypehandler`): exact numbers, whole
    LOBs. None leaves the driver's default (its own type for everything else)."""
    import oracledb

    kind = metadata.type_code
    if kind is oracledb.DB_TYPE_NUMBER:
        scale = metadata.scale
        if metadata.precision and scale == 0:
            return None  # an integer: oracledb returns an int, exactly
        return cursor.var(decimal.Decimal, arraysize=cursor.arraysize)
    if kind is oracledb.DB_TYPE_CLOB:
        return cursor.var(oracledb.DB_TYPE_LONG, arraysize=cursor.arraysize)
    if kind is oracledb.DB_TYPE_NCLOB:
        return cursor.var(oracledb.DB_TYPE_LONG_NVARCHAR, arraysize=cursor.arraysize)
    if kind is oracledb.DB_TYPE_BLOB:
        return cursor.var(oracledb.DB_TYPE_LONG_RAW, arraysize=cursor.arraysize)
    return None


class OracleDialect(SourceDialect):
    names = ("oracle",)
    snapshot_hint = (
        "the user needs SELECT on v$database (GRANT SELECT ON v_$database) and FLASHBACK on "
        "the tables (or FLASHBACK ANY TABLE)"
    )

    def begin(self, connection: Connection) -> View:
        scn = self.fresh_scn(connection)
        return View(connection, f"scn:{scn}", scn=scn)

    def fresh_scn(self, connection: Connection) -> int:
        (scn,) = first_row(connection, _CURRENT_SCN)
        return int(scn)

    def cursor(self, connection: Connection) -> Any:
        cursor: Any = connection.connection.cursor()
        cursor.arraysize = BATCH_ROWS
        cursor.prefetchrows = BATCH_ROWS  # the first round trip brings a batch too
        cursor.outputtypehandler = output_type
        return cursor

    def execute(self, cursor: Any, sql: str, params: Sequence[Any] | Mapping[str, Any]) -> None:
        """Bind every datetime as TIMESTAMP, so a bound keeps its fraction of a second."""
        if isinstance(params, Mapping):
            timestamps = {k: v for k, v in params.items() if isinstance(v, dt.datetime)}
            if timestamps:
                import oracledb

                cursor.setinputsizes(**dict.fromkeys(timestamps, oracledb.DB_TYPE_TIMESTAMP))
        cursor.execute(sql, params)

    def select_expr(
        self, column: ColumnElement[Any], type_: ColumnType, *, copy: bool = False
    ) -> ColumnElement[Any]:
        if type_.kind is ValueKind.TIMESTAMP_TZ:
            return sa.func.sys_extract_utc(column)  # oracledb drops the zone; read UTC instead
        return column

    def type_text(self, column: ReflectedColumn) -> str:
        """The reflected type as Oracle declares it. SQLAlchemy compiles NUMBER(*,2), which it
        reflects as NUMBER(precision=None, scale=2), as plain `NUMBER`: the scale would be lost
        and 12.50 written as 12.5."""
        type_: Any = column["type"]
        if isinstance(type_, sqltypes.Numeric) and not isinstance(type_, sqltypes.Float):
            scale = getattr(type_, "scale", None)
            precision = getattr(type_, "precision", None)
            if scale is not None and precision is None:
                return f"NUMBER(*,{scale})"
        return super().type_text(column)

    def too_old(self, exc: BaseException) -> bool:
        orig = getattr(exc, "orig", exc)
        error = orig.args[0] if getattr(orig, "args", None) else None
        code = getattr(error, "code", None)
        full = getattr(error, "full_code", "")
        return code == _SNAPSHOT_TOO_OLD or full == "ORA-01555"
