"""The source database of a run: its engine, its masked URL, reflection and snapshots."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, make_url

from migrate.errors import ConfigError, SourceError, register_secret
from migrate.schema import SchemaInfo, TableInfo
from migrate.source.reflect import Reflector
from migrate.source.snapshot import Snapshot, open_snapshot
from migrate.spec import ExtractSpec

_CONFIG_HINT = (
    "check [source] url in migrate.toml (SQLite paths are relative to the project folder)"
)


def _sqlite_url(url: URL, base_dir: Path | None) -> URL:
    database = url.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return url
    path = Path(database)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return url.set(database=str(path))


def _sqlite_reader(dbapi_connection: Any, _record: object) -> None:
    """Every SQLite source connection is read-only: the source is never written. (Not memory
    mapped: mapped pages count as the process's resident memory, which would then grow with the
    source file up to the map's size.)"""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA query_only = ON")
    finally:
        cursor.close()


class Source:
    """One source database for a run. Reflect its schema, then read it under one snapshot."""

    def __init__(
        self,
        url: str,
        *,
        password: str | None = None,
        password_env: str | None = None,
        base_dir: Path | None = None,
    ) -> None:
        try:
            parsed = make_url(url)
        except sa.exc.ArgumentError:
            raise ConfigError("the source URL is not a database URL", hint=_CONFIG_HINT) from None
        if password:
            register_secret(password)
            parsed = parsed.set(password=password)
        if parsed.get_backend_name() == "sqlite":
            parsed = _sqlite_url(parsed, base_dir)
        self.display_url = parsed.render_as_string(hide_password=True)
        # Where the password came from: another process joining a snapshot reads it there.
        self.password_env = password_env
        try:
            self.engine = sa.create_engine(parsed)
        except (sa.exc.NoSuchModuleError, ImportError) as exc:
            raise ConfigError(
                f"no database driver for the source {self.display_url}",
                hint="install the driver for this URL (oracle+oracledb: `pip install oracledb`; "
                "postgresql+psycopg: `pip install 'psycopg[binary]'`)",
            ) from exc
        self.dialect: str = self.engine.dialect.name
        if self.dialect == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_reader)
        self.skipped_columns: dict[str, dict[str, str]] = {}
        self._tables: dict[str, TableInfo] = {}

    def _connect(self) -> Connection:
        database = self.engine.url.database
        is_file = (
            bool(database) and database != ":memory:" and not str(database).startswith("file:")
        )
        if self.dialect == "sqlite" and is_file and not Path(str(database)).is_file():
            raise SourceError(
                f"the source database file does not exist: {self.display_url}",
                hint=_CONFIG_HINT,
            )
        try:
            return self.engine.connect()
        except sa.exc.DBAPIError as exc:
            detail = (str(exc.orig).strip().splitlines() or [type(exc.orig).__name__])[0][:300]
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
            reflector = Reflector(connection)
            try:
                schema = reflector.schema(tables)
            except sa.exc.DBAPIError as exc:
                raise SourceError(
                    f"reading the schema of {self.display_url} failed",
                    hint="check that the source user may read the catalog of these tables",
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
            self.engine,
            self._connect,
            tables_for=self._tables_for,
            display_url=self.display_url,
        )

    def join(self, token: str, marker: str) -> AbstractContextManager[Snapshot]:
        """The read view another process opened (its snapshot's `token` and `marker`)."""
        return open_snapshot(
            self.engine,
            self._connect,
            tables_for=self._tables_for,
            display_url=self.display_url,
            join=(token, marker),
        )

    def tables(self, spec: ExtractSpec) -> Mapping[str, TableInfo]:
        """The reflected tables an extract reads (reflected now if they were not yet)."""
        return self._tables_for(spec)

    def remember(self, tables: Iterable[TableInfo]) -> None:
        """Take tables another process reflected, so reads need not reflect them again."""
        for table in tables:
            self._tables[table.name.casefold()] = table

    def close(self) -> None:
        self.engine.dispose()
