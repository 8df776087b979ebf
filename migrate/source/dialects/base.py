"""What every source engine does, and the plain behaviour of one this toolkit has no rules for.

A chunk's read path (`snapshot`, `shared`, `sql`, `reflect`, `engine`) asks the engine's one
`SourceDialect` object whenever engines differ: how a URL is completed, how a connection is set
up, how a consistent view is begun, shared, joined and proved, which cursor reads a chunk, which
form a column is selected in, how a reflected type resolves to a value kind, and which driver
errors mean the view is gone or too old. A new reader (a capture log, another engine) adds a
method here and an override in its engine's module, not a branch in each file.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.engine.interfaces import ReflectedColumn
from sqlalchemy.sql import sqltypes
from sqlalchemy.sql.elements import ColumnElement

from migrate.errors import SourceError
from migrate.schema import ColumnType
from migrate.source.types import resolve_type

if TYPE_CHECKING:
    from sqlalchemy.engine.reflection import Inspector

    from migrate.source.pgcopy import CopyReader

BATCH_ROWS = 5000  # rows per round trip where the driver batches (a cursor's `arraysize`)

Declared = tuple[str, str, bool]  # column name, declared type text, nullable


class ViewBusy(SourceError):
    """A worker could not start reading under the shared view (SQLite: a writer waits to commit;
    MariaDB: something committed since the view was taken); the chunk is read by the process
    that holds the snapshot instead."""


@dataclass(slots=True)
class View:
    """A connection inside a consistent read view, and what names it.

    `marker` goes to the ledger (delta catch-up starts there); `token` is what another process
    joins the same view with (None where the engine cannot prove another connection sees the
    same data); `scn` is Oracle's system change number every statement reads `AS OF`.
    """

    connection: Connection
    marker: str
    token: str | None = None
    scn: int | None = None


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def first_row(connection: Connection, sql: str) -> tuple[Any, ...]:
    """The first row of a statement run on the driver's own cursor."""
    cursor = connection.connection.cursor()
    try:
        cursor.execute(sql)
        row = cursor.fetchone()
        if row is None:
            raise SourceError(f"the source returned no row for {sql!r}")
        return tuple(row)
    finally:
        cursor.close()


def run_driver(connection: Connection, sql: str) -> None:
    """Run one statement on the driver's own cursor (SQLAlchemy keeps no state about it)."""
    cursor = connection.connection.cursor()
    try:
        cursor.execute(sql)
    finally:
        cursor.close()


def first_line(exc: BaseException) -> str:
    """The first line of a driver error, short enough for a message."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


class SourceDialect:
    """The rules of one source engine. `names` are SQLAlchemy's backend names it serves."""

    names: ClassVar[tuple[str, ...]] = ()
    token_kind: ClassVar[str] = ""  # the prefix of its view tokens ("" when it has none)
    # Whether a process on another host can join its views (a server's snapshot can be; a
    # SQLite file's lock is only this host's, and its path may name another file elsewhere).
    views_travel: ClassVar[bool] = True
    driver_hint: ClassVar[str] = (
        "install the driver for this URL (oracle+oracledb: `pip install oracledb`; "
        "postgresql+psycopg: `pip install 'psycopg[binary]'`; mysql+pymysql: "
        "`pip install PyMySQL`)"
    )
    snapshot_hint: ClassVar[str] = "check that the database is reachable and the user may read it"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sa = engine.dialect
        self.name: str = engine.dialect.name

    # -- the URL and the connections -------------------------------------------------------

    @classmethod
    def prepare_url(cls, url: URL, base_dir: Path | None) -> URL:
        """The URL completed as this engine needs it (relative paths, connection options)."""
        return url

    def configure(self) -> None:
        """Set up every connection the engine opens (listeners on `self.engine`)."""

    def check_reachable(self, display_url: str) -> None:
        """Refuse, before connecting, a source that cannot exist (SQLite: a missing file)."""

    # -- the consistent view ---------------------------------------------------------------

    def begin(self, connection: Connection) -> View:
        """Start a consistent read view on `connection` (which it then belongs to)."""
        return View(connection, f"{self.name}:at={now()}")

    def join(self, connection: Connection, value: str) -> Connection:
        """Make `connection` read the view whose token (after `token_kind:`) is `value`."""
        raise SourceError(f"a {self.name} source cannot share its snapshot (token {value!r})")

    def pause(self, view: View) -> bool:
        """End the read transaction between chunks where the view can be proved again; True when
        it did (`resume` starts it again)."""
        return False

    def resume(self, view: View) -> None:
        """Start the read transaction `pause` ended, proving it sees the same view."""

    def end(self, view: View) -> None:
        """Release what `begin` or `join` took for the view besides its connection, once that
        connection is closed."""

    # -- reading ---------------------------------------------------------------------------

    def cursor(self, connection: Connection) -> Any:
        """The driver cursor chunks are read with."""
        cursor = connection.connection.cursor()
        cursor.arraysize = BATCH_ROWS
        return cursor

    def execute(self, cursor: Any, sql: str, params: Sequence[Any] | Mapping[str, Any]) -> None:
        """Run one statement on the reading cursor (Oracle: with bind types set first)."""
        cursor.execute(sql, params)

    def fetch_all(
        self, cursor: Any, sql: str, params: Sequence[Any] | Mapping[str, Any]
    ) -> list[tuple[Any, ...]]:
        """Every row of one statement on the reading cursor (a chunk's rows are staged
        together)."""
        self.execute(cursor, sql, params)
        rows: list[tuple[Any, ...]] = cursor.fetchall()
        return rows

    def select_expr(
        self, column: ColumnElement[Any], type_: ColumnType, *, copy: bool = False
    ) -> ColumnElement[Any]:
        """The form a column is selected in so the driver (or, `copy`, the bulk reader) returns
        its value exactly."""
        return column

    def copy_reader(self, connection: Connection) -> CopyReader | None:
        """A bulk reader on the view's own connection (PostgreSQL's COPY), or None."""
        return None

    def too_old(self, exc: BaseException) -> bool:
        """Whether a driver error says the view is too old to read (Oracle's ORA-01555): the
        chunk is then read again alone at a fresh view."""
        return False

    def fresh_scn(self, connection: Connection) -> int | None:
        """A new read point for a chunk whose view was too old (Oracle), else None."""
        return None

    def lost(self, exc: BaseException, connection: Connection) -> bool:
        """Whether a driver error says the connection itself broke, not the statement (the
        driver dialect's own disconnect test, as SQLAlchemy's pool uses it)."""
        try:
            dbapi_connection = connection.connection.dbapi_connection
        except sa.exc.SQLAlchemyError:
            return True
        try:
            return bool(self.sa.is_disconnect(exc, dbapi_connection, None))  # type: ignore[arg-type]
        except Exception:  # a driver's test that fails answers "not known to be lost"
            return False

    # -- reflection ------------------------------------------------------------------------

    def prefetch(
        self, inspector: Inspector, names: Sequence[str], schema: str | None
    ) -> dict[str, dict[str, Any]]:
        """Columns, keys and indexes of many tables in one catalog read per kind, where the
        engine's reflection can (by kind, then table name); empty: one read per table."""
        return {}

    def declared(
        self,
        connection: Connection,
        name: str,
        schema: str | None,
        reflected: Callable[[], list[ReflectedColumn]],
    ) -> list[tuple[str, ColumnType | str, bool]]:
        """Each column of a table, in table order: its name, its type resolved (or, where no rule
        covers it, its declared text), and whether it is nullable. `reflected` gives
        SQLAlchemy's reflected columns."""
        return [
            (column["name"], self.resolve(column), bool(column["nullable"]))
            for column in reflected()
        ]

    def resolve(self, column: ReflectedColumn) -> ColumnType | str:
        """A reflected column's type resolved to its value kind, or its declared text when no
        rule covers it. The declared text is the reflected type compiled for the dialect
        (`NUMERIC(10, 2)`, `TIMESTAMP WITH TIME ZONE`), read the same way on every engine."""
        declared = self.type_text(column)
        try:
            return resolve_type(declared)
        except SourceError:
            return declared

    def type_text(self, column: ReflectedColumn) -> str:
        type_: Any = column["type"]
        if isinstance(type_, sqltypes.NullType):
            return "unrecognised"
        try:
            return str(type_.compile(dialect=self.sa))
        except sa.exc.CompileError:
            return type(type_).__name__.upper()


def by_table(found: Mapping[tuple[str | None, str], Any]) -> dict[str, Any]:
    return {table: value for (_, table), value in found.items()}
