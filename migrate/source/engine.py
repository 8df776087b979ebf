"""The source database of a run: its engine, its masked URL, reflection and snapshots.

`rules` is the engine's `SourceDialect`: everything that differs between engines is asked there.
`schema` names the schema (Oracle: the owner; MariaDB: the database) whose tables are read, for a
migration user reading another user's tables; None reads the connection's own.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, make_url

from migrate.errors import ConfigError, SourceError, register_secret
from migrate.schema import SchemaInfo, TableInfo
from migrate.source import watermark
from migrate.source.capture import (
    CaptureEngine,
    CapturePlan,
    CaptureTable,
    Pending,
    WatermarkCapture,
    capture_engine,
)
from migrate.source.dialects import SourceDialect, dialect_class, dialect_for
from migrate.source.dialects.base import first_line
from migrate.source.reflect import Reflector
from migrate.source.snapshot import Snapshot, open_snapshot
from migrate.spec import ExtractSpec


class Source:
    """One source database for a run. Reflect its schema, then read it under one snapshot."""

    def __init__(
        self,
        url: str,
        *,
        password: str | None = None,
        password_env: str | None = None,
        base_dir: Path | None = None,
        schema: str | None = None,
        types: Mapping[str, str] | None = None,
    ) -> None:
        try:
            parsed = make_url(url)
        except sa.exc.ArgumentError:
            raise ConfigError(
                "the source URL is not a database URL",
                hint="check [source] url in migrate.toml (SQLite paths are relative to the "
                "project folder)",
            ) from None
        if password:
            register_secret(password)
            parsed = parsed.set(password=password)
        kind = dialect_class(parsed.get_backend_name())
        parsed = kind.prepare_url(parsed, base_dir)
        self.display_url = parsed.render_as_string(hide_password=True)
        # Where the password came from: another process joining a snapshot reads it there.
        self.password_env = password_env
        self.schema = schema
        self.types = dict(types or {})  # "TABLE.COLUMN" -> the declared type to read it by
        try:
            self.engine = sa.create_engine(parsed)
        except (sa.exc.NoSuchModuleError, ImportError) as exc:
            raise ConfigError(
                f"no database driver for the source {self.display_url}",
                hint=kind.driver_hint,
            ) from exc
        self.dialect: str = self.engine.dialect.name
        self.rules: SourceDialect = dialect_for(self.engine)
        self.skipped_columns: dict[str, dict[str, str]] = {}
        self._tables: dict[str, TableInfo] = {}

    def _connect(self) -> Connection:
        self.rules.check_reachable(self.display_url)
        try:
            return self.engine.connect()
        except sa.exc.DBAPIError as exc:
            detail = first_line(exc.orig or exc)
            raise SourceError(
                f"cannot connect to the source database {self.display_url}: {detail}",
                hint="check that the database is up and reachable from here, the URL in "
                "migrate.toml [source], and the password variable it names",
            ) from exc

    def reflect(self, tables: Iterable[str] | None = None) -> SchemaInfo:
        """The named tables (all of them when None), names as the database reports them.

        Tables that do not exist are simply absent. Columns of a type no value rule covers are left
        out and listed in `skipped_columns` (table -> column -> declared type).
        """
        with self._connect() as connection:
            reflector = Reflector(connection, self.rules, schema=self.schema, types=self.types)
            try:
                schema = reflector.schema(tables)
            except sa.exc.DBAPIError as exc:
                detail = first_line(exc.orig if exc.orig is not None else exc)
                raise SourceError(
                    f"reading the schema of {self.display_url} failed: {detail}",
                    hint=_catalog_hint(detail),
                ) from exc
        for name, columns in reflector.skipped.items():
            self.skipped_columns.setdefault(name, {}).update(columns)
        for table in schema.tables.values():
            self._tables[table.name.casefold()] = table
        return schema

    def _tables_for(self, spec: ExtractSpec) -> Mapping[str, TableInfo]:
        """The reflected tables an extract reads, keyed as the spec names them."""
        names = dict.fromkeys(node.table for node in spec.nodes)
        missing = [n for n in names if n.casefold() not in self._tables]
        if missing:
            self.reflect(missing)
        found = {}
        for name in names:
            table = self._tables.get(name.casefold())
            if table is None:
                raise SourceError(
                    f"table {name} is not in the source database {self.display_url}",
                    where=f"service {spec.service}, document type {spec.doc_type}",
                    hint="the source schema changed since the mapping was checked; "
                    "run `migrate check`",
                )
            found[name] = table
        return found

    def snapshot(self) -> AbstractContextManager[Snapshot]:
        """One consistent read view for every read of a run; its `marker` goes to the ledger."""
        return open_snapshot(
            self.rules,
            self._connect,
            tables_for=self._tables_for,
            display_url=self.display_url,
            schema=self.schema,
        )

    def join(self, token: str, marker: str) -> AbstractContextManager[Snapshot]:
        """The read view another process opened (its snapshot's `token` and `marker`)."""
        return open_snapshot(
            self.rules,
            self._connect,
            tables_for=self._tables_for,
            display_url=self.display_url,
            schema=self.schema,
            join=(token, marker),
        )

    def tables(self, spec: ExtractSpec) -> Mapping[str, TableInfo]:
        """The reflected tables an extract reads (reflected now if they were not yet)."""
        return self._tables_for(spec)

    def remember(self, tables: Iterable[TableInfo]) -> None:
        """Take tables another process reflected, so reads need not reflect them again."""
        for table in tables:
            self._tables[table.name.casefold()] = table

    # -- change capture ---------------------------------------------------------------------

    def capture(self, plan: CapturePlan) -> CaptureEngine:
        """This engine's capture of `plan` (ConfigError where it is not built)."""
        return capture_engine(self.dialect, plan, schema=self.schema)

    def install_capture(self, capture: CaptureEngine) -> None:
        """Create the change log and its triggers, all or nothing (Oracle commits each DDL
        statement: an install that fails there is undone by `uninstall_capture`)."""
        self._ddl(capture.install(), "installing change capture")

    def uninstall_capture(self, capture: CaptureEngine) -> None:
        """Remove every object `install_capture` made (what is already gone is skipped)."""
        self._ddl(capture.uninstall(), "removing change capture")

    def capture_installed(self, capture: CaptureEngine) -> bool:
        if isinstance(capture, WatermarkCapture):
            return True  # nothing of it lives in the source
        sql, params = capture.log_exists()
        return bool(self._query(sql, params, "looking for the change log"))

    def pending(self, capture: CaptureEngine, since: str) -> Pending:
        """Changes logged after position `since`, as the database shows them now."""
        if isinstance(capture, WatermarkCapture):

            def fetch(table: CaptureTable, newest: Any) -> tuple[Any, Any, Any]:
                sql, params = watermark.newer_statement(self.rules, self.schema, table, newest)
                (found,) = self._query(sql, params, f"reading the watermark of {table.name}")
                return found[0], found[1], found[2]

            return watermark.pending(list(capture.plan.tables), since, fetch)
        sql, params = capture.pending(since)
        rows = self._query(sql, params, "counting the change log")
        count, oldest = rows[0]
        if isinstance(oldest, str):
            oldest = dt.datetime.fromisoformat(oldest.replace("Z", "+00:00"))
        if isinstance(oldest, dt.datetime) and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=dt.UTC)
        return Pending(int(count or 0), oldest)

    def _query(self, sql: str, params: Any, what: str) -> list[tuple[Any, ...]]:
        with self._connect() as connection:
            cursor = connection.connection.cursor()
            try:
                cursor.execute(sql, params)
                return [tuple(row) for row in cursor.fetchall()]
            except self.rules.sa.loaded_dbapi.Error as exc:
                raise SourceError(
                    f"{what} in {self.display_url} failed: {first_line(exc)}",
                    hint="check that change capture is installed (`migrate capture status`)",
                ) from exc
            finally:
                cursor.close()
                connection.rollback()

    def _ddl(self, statements: Sequence[str], what: str) -> None:
        """Run DDL in one transaction on a connection that may write (SQLite's source
        connections are read-only)."""
        self.rules.check_reachable(self.display_url)
        database = self.engine.url.database
        try:
            if self.dialect == "sqlite" and database:
                conn = sqlite3.connect(database, isolation_level=None, timeout=30)
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        for statement in statements:
                            conn.execute(statement)
                    except BaseException:
                        conn.execute("ROLLBACK")
                        raise
                    conn.execute("COMMIT")
                finally:
                    conn.close()
                return
            raw = self.engine.raw_connection()
            try:
                cursor = raw.cursor()
                for statement in statements:
                    cursor.execute(statement)
                raw.commit()
            except BaseException:
                raw.rollback()
                raise
            finally:
                raw.close()
        except (sqlite3.Error, sa.exc.DBAPIError, self.rules.sa.loaded_dbapi.Error) as exc:
            raise SourceError(
                f"{what} in {self.display_url} failed: {first_line(exc)}",
                hint="the source user needs the rights to create tables and triggers on the "
                "mapped tables (and to drop them, to uninstall)",
            ) from exc

    def close(self) -> None:
        self.engine.dispose()


def _catalog_hint(detail: str) -> str:
    """What to do, by what the database said (the driver's first line, no SQL in it)."""
    text = detail.lower()
    if "not a database" in text or "malformed" in text:
        return "the file at [source] url is not a SQLite database: check the path in migrate.toml"
    if "locked" in text or "busy" in text:
        return (
            "another process holds a lock on the source (a write in progress): wait for it to "
            "finish, then run again"
        )
    if "permission" in text or "privilege" in text or "denied" in text:
        return "the source user may not read the catalog of these tables: grant it, or use another"
    return "check that the source is reachable and its user may read the catalog of these tables"
