"""PostgreSQL: a REPEATABLE READ READ ONLY transaction whose snapshot is exported, so other
processes import it (SET TRANSACTION SNAPSHOT) and read the very same data; chunks through COPY
on the snapshot's own connection (`pgcopy`, psycopg 3) where it stages exactly what the cursor
would; catalogs read for every table at once.

An exported snapshot lives as long as the transaction that exported it: when that connection
breaks the view is gone, and a worker that lost its own connection can join it again only while
the exporter still holds it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.engine.interfaces import ReflectedColumn
from sqlalchemy.engine.reflection import ObjectKind, ObjectScope
from sqlalchemy.sql.elements import ColumnElement

from migrate.errors import SourceError
from migrate.schema import ColumnType, ValueKind
from migrate.source.dialects.base import SourceDialect, View, by_table, first_row, run_driver

if TYPE_CHECKING:
    from sqlalchemy.engine.reflection import Inspector

    from migrate.source.pgcopy import CopyReader

_SNAPSHOT_ID = re.compile(r"[0-9A-Fa-f]+-[0-9A-Fa-f]+(-[0-9]+)?")
_AS_TEXT = (ValueKind.JSON,)  # psycopg parses JSON into floats; keep the text


class PostgreSQLDialect(SourceDialect):
    names = ("postgresql",)
    token_kind = "postgresql"  # noqa: S105 - a prefix, not a secret

    def begin(self, connection: Connection) -> View:
        connection = connection.execution_options(
            isolation_level="REPEATABLE READ", postgresql_readonly=True
        )
        server = connection.dialect.server_version_info or (0,)
        current = "pg_current_snapshot()" if server >= (13,) else "txid_current_snapshot()"
        exported, xids = first_row(connection, f"SELECT pg_export_snapshot(), {current}::text")
        marker = f"postgresql:snapshot={exported};xids={xids}"
        return View(connection, marker, token=f"postgresql:{exported}")

    def join(self, connection: Connection, value: str) -> Connection:
        if not _SNAPSHOT_ID.fullmatch(value):
            raise SourceError(f"not a snapshot token this toolkit made: postgresql:{value!r}")
        connection = connection.execution_options(
            isolation_level="REPEATABLE READ", postgresql_readonly=True
        )
        run_driver(connection, f"SET TRANSACTION SNAPSHOT '{value}'")
        return connection

    def select_expr(
        self, column: ColumnElement[Any], type_: ColumnType, *, copy: bool = False
    ) -> ColumnElement[Any]:
        if type_.declared.endswith("]"):
            return sa.cast(sa.func.array_to_json(column), sa.Text)
        if type_.kind in _AS_TEXT or _is_time(type_):
            return sa.cast(column, sa.Text)  # TIME: the server's own text, as MySQL's
        if copy and type_.kind is ValueKind.TIMESTAMP_TZ:
            # COPY writes the session's zone (even a local mean time offset): ask for UTC.
            return sa.func.timezone(sa.literal_column("'UTC'"), column)
        return column

    def copy_reader(self, connection: Connection) -> CopyReader | None:
        """COPY on the snapshot's own psycopg 3 connection (not for another driver)."""
        if self.sa.driver != "psycopg":
            return None
        from migrate.source.pgcopy import CopyReader

        driver: Any = connection.connection.dbapi_connection
        return CopyReader(driver)

    def lost(self, exc: BaseException, connection: Connection) -> bool:
        """Also when COPY (which reads through libpq directly, past psycopg's own bookkeeping)
        saw the session end: libpq then reports the connection BAD."""
        if super().lost(exc, connection):
            return True
        try:
            import psycopg

            pgconn: Any = connection.connection.dbapi_connection.pgconn  # type: ignore[union-attr]
            return bool(pgconn.status == psycopg.pq.ConnStatus.BAD)
        except Exception:  # no libpq connection to ask: not known to be lost
            return False

    def resolve(self, column: ReflectedColumn) -> ColumnType | str:
        """An array is JSON: a JSON array of its elements as PostgreSQL's to_json writes them."""
        if isinstance(column["type"], sa.ARRAY):
            return ColumnType(ValueKind.JSON, self.type_text(column))
        return super().resolve(column)

    def prefetch(
        self, inspector: Inspector, names: Sequence[str], schema: str | None
    ) -> dict[str, dict[str, Any]]:
        """Every table's columns, keys and indexes in one catalog query per kind (SQLAlchemy's
        own per-table calls run the same queries filtered to one table)."""
        if not names:
            return {}
        options: dict[str, Any] = {
            "schema": schema,
            "filter_names": list(names),
            "kind": ObjectKind.ANY,
            "scope": ObjectScope.ANY,
        }
        import warnings

        with warnings.catch_warnings():
            # An unrecognised type becomes NullType with a warning; it is reported as skipped.
            warnings.simplefilter("ignore", sa.exc.SAWarning)
            return {
                "columns": by_table(inspector.get_multi_columns(**options)),
                "pk": by_table(inspector.get_multi_pk_constraint(**options)),
                "unique": by_table(inspector.get_multi_unique_constraints(**options)),
                "indexes": by_table(inspector.get_multi_indexes(**options)),
            }


def _is_time(type_: ColumnType) -> bool:
    return type_.declared.upper().startswith("TIME") and not type_.declared.upper().startswith(
        "TIMESTAMP"
    )
