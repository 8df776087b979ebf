"""One consistent read view of the source for a whole run: chunk planning and extraction.

SQLite: one connection holding one read transaction. PostgreSQL: a REPEATABLE READ READ ONLY
transaction whose snapshot is exported, so parallel readers can share it. Oracle: every table
reference reads `AS OF SCN n`. The marker names the view, so delta catch-up starts where it ends.

Another process can read under the same view (`Snapshot.token`, `Source.join`) where the
database can prove it is the same: PostgreSQL by importing the exported snapshot (SET TRANSACTION
SNAPSHOT), SQLite in a rollback-journal mode because the first read transaction's SHARED lock keeps
every writer out until it ends, checked by the file change counter in the database header (it
changes with every commit). Other sources, and SQLite in WAL mode (each reader its own view, and no
way to share one), have no token: their chunks are read by the snapshot's own connection.
On PostgreSQL a chunk is read through COPY on the same connection, so in the same transaction
(`pgcopy`), unless a value needs the cursor path.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing, contextmanager
from operator import itemgetter
from pathlib import Path
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from migrate.errors import ConfigError, SourceError
from migrate.schema import TableInfo
from migrate.source.chunks import ChunkRange
from migrate.source.extract import BATCH_ROWS, build_table, fetch_all
from migrate.source.pgcopy import CopyFailed, CopyRead, CopyReader
from migrate.source.pgcsv import Unfit, keep_linked
from migrate.source.sql import Params, Queries, compile_statement
from migrate.spec import ExtractSpec

TablesFor = Callable[[ExtractSpec], Mapping[str, TableInfo]]


class Snapshot:
    """Reads under one consistent view; created by `Source.snapshot()`, valid inside its block."""

    def __init__(
        self,
        connection: Connection,
        marker: str,
        *,
        tables_for: TablesFor,
        display_url: str,
        scn: int | None = None,
        token: str | None = None,
    ) -> None:
        self._connection = connection
        self._cursor = connection.connection.cursor()
        self._cursor.arraysize = BATCH_ROWS
        self._tables_for = tables_for
        self._display_url = display_url
        self._scn = scn
        self._prepared: dict[ExtractSpec, Queries] = {}
        self._copy = _copy_reader(connection)
        self.marker = marker
        # What another process passes to `Source.join` to read under this same view; None
        # where the source cannot share it (see the module's notes).
        self.token = token
        self._paused = False
        # PostgreSQL (psycopg): read chunks through COPY where it stages the same values as the
        # cursor; False reads every chunk through the cursor (the tests compare the two).
        self.use_copy = self._copy is not None
        self.copy_fallbacks = 0  # chunks COPY could not stage exactly, read through the cursor

    def _queries(self, spec: ExtractSpec) -> Queries:
        """The spec's statements, prepared once per snapshot (the schema is read once)."""
        queries = self._prepared.get(spec)
        if queries is not None:
            return queries
        if not spec.primary_key:
            raise SourceError(
                f"root table {spec.root_table} has no primary key",
                where=f"service {spec.service}, document type {spec.doc_type}",
                hint="chunks are cut along the root table's primary key; add one, or use a view "
                "over a table that has one",
            )
        queries = Queries(
            spec, self._tables_for(spec), dialect=self._connection.dialect, scn=self._scn
        )
        self._prepared[spec] = queries
        return queries

    def _run(self, statement: sa.ClauseElement, what: str) -> list[tuple[Any, ...]]:
        return self._fetch(*compile_statement(statement, self._connection.dialect), what)

    def _fetch(self, sql: str, params: Params, what: str) -> list[tuple[Any, ...]]:
        try:
            return fetch_all(self._cursor, sql, params)
        except self._connection.dialect.loaded_dbapi.Error as exc:
            raise self._failed(exc, what) from exc

    def _failed(self, exc: Exception, what: str) -> SourceError:
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        return SourceError(
            f"reading {what} from {self._display_url} failed: {detail}",
            hint="check the mapping's `where` and that the source schema still matches the "
            "mapping (`migrate check`); if the database went away, run again to resume",
        )

    def plan_chunks(self, spec: ExtractSpec, chunk_size: int) -> list[ChunkRange]:
        """Ranges of `chunk_size` root rows along the primary key, covering every key, in order."""
        if chunk_size < 1:
            raise ConfigError(
                f"chunk size must be at least 1, not {chunk_size}",
                hint="set [run] chunk_size in migrate.toml",
            )
        queries = self._queries(spec)
        (nulls,) = self._run(queries.null_keys(), f"the keys of {spec.root_table}")[0]
        if nulls:
            raise SourceError(
                f"{nulls} row(s) of {spec.root_table} have a NULL in the primary key "
                f"({', '.join(spec.primary_key)}), so no chunk can hold them",
                where=f"service {spec.service}, document type {spec.doc_type}",
                hint="fill in the key of those rows, or exclude them with the mapping's `where`",
            )
        starts = [tuple(r) for r in self._run(queries.boundaries(chunk_size), spec.root_table)]
        ranges = []
        for index in range(len(starts)):
            lo = starts[index] if index else None
            hi = starts[index + 1] if index + 1 < len(starts) else None
            ranges.append(ChunkRange(index, lo, hi))
        return ranges

    def count_rows(self, spec: ExtractSpec, chunk: ChunkRange) -> int:
        """Root rows in the chunk (after `where`), for progress and estimates."""
        rows = self._fetch(*self._queries(spec).count(chunk), spec.root_table)
        return int(rows[0][0])

    def extract(self, spec: ExtractSpec, chunk: ChunkRange) -> dict[str, pa.Table]:
        """Every node's rows for the chunk, as Arrow tables of exactly the node's columns."""
        self.resume()
        queries = self._queries(spec)
        if self.use_copy and self._copy is not None and self._copy.usable():
            tables = self._extract_copy(self._copy, queries, chunk)
            if tables is not None:
                return tables
            self.copy_fallbacks += 1
        return self._extract_rows(queries, chunk)

    def _extract_copy(
        self, reader: CopyReader, queries: Queries, chunk: ChunkRange
    ) -> dict[str, pa.Table] | None:
        """The chunk through COPY; None when a value needs the cursor path (for the whole chunk:
        a child's filter compares staged values of both sides)."""
        nodes = queries.spec.nodes
        reads = [
            CopyRead(*queries.copy_rows(node, chunk), queries.selected_types(node))
            for node in nodes
        ]
        result: dict[str, pa.Table] = {}
        root_keys: list[pa.Array[Any]] = []
        staged = reader.read_all(reads)
        try:
            with closing(staged):
                for node in nodes:
                    columns = next(staged)
                    if node.parent_id is None:
                        root_keys = [columns[i] for i in queries.root_keys()]
                    elif (link := queries.filtered_by_root(node)) is not None:
                        columns = keep_linked(columns, link, root_keys)
                    width = len(node.columns)
                    names = list(node.columns)
                    result[node.node_id] = pa.Table.from_arrays(columns[:width], names=names)
        except Unfit:
            return None
        except CopyFailed as exc:
            what = f"{nodes[exc.index].table} (chunk {chunk.index})"
            raise self._failed(exc.error, what) from exc.error
        return result

    def _extract_rows(self, queries: Queries, chunk: ChunkRange) -> dict[str, pa.Table]:
        """The chunk through the driver's cursor, a Python row at a time."""
        spec = queries.spec
        result: dict[str, pa.Table] = {}
        root_keys: set[Any] = set()
        for node in spec.nodes:
            rows = self._fetch(*queries.rows(node, chunk), f"{node.table} (chunk {chunk.index})")
            link = queries.filtered_by_root(node)
            if node.parent_id is None:
                root_keys = set(map(itemgetter(*queries.root_keys()), rows))  # value or tuple
            elif link is not None:
                linked = itemgetter(*link)
                rows = [row for row in rows if linked(row) in root_keys]
            table = queries.table_info(node.table)
            columns = [table.column(name) for name in node.columns]
            types = [c.type for c in columns if c is not None]
            result[node.node_id] = build_table(rows, node, types)
        return result

    def pause(self) -> None:
        """SQLite: end the read transaction until the next read, which starts it again and proves
        by the token that the view is the same (a worker holds no lock between chunks). Only for
        a view with a token: without one, a new transaction could see newer data."""
        if self._connection.dialect.name == "sqlite" and self.token is not None:
            self._connection.connection.rollback()
            self._paused = True

    def resume(self) -> None:
        """Start the read transaction `pause` ended (a no-op when it did not); `extract` does
        this itself."""
        if not self._paused:
            return
        assert self.token is not None
        _sqlite_read(self._connection)
        _same_view(self._connection.engine, self._connection, self.token)
        self._paused = False

    def close(self) -> None:
        try:
            self._cursor.close()
            if self._copy is not None:
                self._copy.close()
        finally:
            self._connection.rollback()
            self._connection.close()


def _copy_reader(connection: Connection) -> CopyReader | None:
    """A COPY reader on the snapshot's own psycopg connection (PostgreSQL through psycopg 3)."""
    dialect = connection.dialect
    if dialect.name != "postgresql" or dialect.driver != "psycopg":
        return None
    driver: Any = connection.connection.dbapi_connection
    return CopyReader(driver)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _first(connection: Connection, sql: str) -> tuple[Any, ...]:
    cursor = connection.connection.cursor()
    try:
        cursor.execute(sql)
        row = cursor.fetchone()
        if row is None:
            raise SourceError(f"the source returned no row for {sql!r}")
        return tuple(row)
    finally:
        cursor.close()


Begun = tuple[Connection, str, int | None, str | None]  # connection, marker, SCN, token
_PG_SNAPSHOT_ID = re.compile(r"[0-9A-Fa-f]+-[0-9A-Fa-f]+(-[0-9]+)?")
_SQLITE_SHARED_MODES = ("delete", "truncate", "persist")  # rollback journals: readers lock out


def _sqlite_read(connection: Connection) -> None:
    """Start the connection's read transaction (deferred BEGIN, then a first read)."""
    cursor = connection.connection.cursor()
    try:
        cursor.execute("BEGIN")
        cursor.execute("SELECT count(*) FROM sqlite_master")
    finally:
        cursor.close()


def _sqlite_counter(engine: Engine) -> int | None:
    """The database file's change counter (header bytes 24-27), or None when it has no header."""
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    try:
        with Path(database).open("rb") as file:
            header = file.read(100)
    except OSError:
        return None
    if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
        return None
    return int.from_bytes(header[24:28], "big")


def _sqlite_token(engine: Engine, connection: Connection) -> str | None:
    """The view's token, read while the connection's read transaction holds its SHARED lock."""
    (mode,) = _first(connection, "PRAGMA journal_mode")
    (locking,) = _first(connection, "PRAGMA locking_mode")
    if str(mode).lower() not in _SQLITE_SHARED_MODES or str(locking).lower() != "normal":
        return None
    counter = _sqlite_counter(engine)
    return None if counter is None else f"sqlite:counter={counter}"


def _same_view(engine: Engine, connection: Connection, token: str) -> None:
    """Refuse a SQLite read transaction that does not see the view `token` names."""
    if _sqlite_token(engine, connection) != token:
        raise SourceError(
            f"the source changed since the snapshot was taken ({token} expected)",
            hint="something wrote to the SQLite file while the snapshot was open; run the "
            "command again",
        )


def _begin(engine: Engine, connect: Callable[[], Connection]) -> Begun:
    """A connection inside its consistent read view, the view's marker, Oracle's SCN, and the
    token another process joins the view with."""
    name = engine.dialect.name
    connection = connect()
    try:
        if name == "sqlite":
            _sqlite_read(connection)
            (version,) = _first(connection, "PRAGMA data_version")
            token = _sqlite_token(engine, connection)
            return connection, f"sqlite:data_version={version};at={_now()}", None, token
        if name == "postgresql":
            connection = connection.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
            server = connection.dialect.server_version_info or (0,)
            current = "pg_current_snapshot()" if server >= (13,) else "txid_current_snapshot()"
            exported, xids = _first(connection, f"SELECT pg_export_snapshot(), {current}::text")
            marker = f"postgresql:snapshot={exported};xids={xids}"
            return connection, marker, None, f"postgresql:{exported}"
        if name == "oracle":
            (scn,) = _first(connection, "SELECT current_scn FROM v$database")
            return connection, f"scn:{int(scn)}", int(scn), None
        if name in ("mysql", "mariadb"):
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
        return connection, f"{name}:at={_now()}", None, None
    except BaseException:
        connection.close()
        raise


def _join(engine: Engine, connect: Callable[[], Connection], token: str) -> Connection:
    """A connection inside the read view `token` names (from `_begin` in another process)."""
    name = engine.dialect.name
    kind, _, value = token.partition(":")
    if kind != name:
        raise SourceError(f"a {kind} snapshot token cannot be joined on a {name} source")
    connection = connect()
    try:
        if name == "sqlite":
            _sqlite_read(connection)
            _same_view(engine, connection, token)
            return connection
        if name == "postgresql" and _PG_SNAPSHOT_ID.fullmatch(value):
            connection = connection.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
            cursor = connection.connection.cursor()
            try:
                cursor.execute(f"SET TRANSACTION SNAPSHOT '{value}'")
            finally:
                cursor.close()
            return connection
        raise SourceError(f"not a snapshot token this toolkit made: {token!r}")
    except BaseException:
        connection.close()
        raise


@contextmanager
def open_snapshot(
    engine: Engine,
    connect: Callable[[], Connection],
    *,
    tables_for: TablesFor,
    display_url: str,
    join: tuple[str, str] | None = None,
) -> Iterator[Snapshot]:
    """A new read view, or with `join` (token, marker) the view another process opened."""
    try:
        if join is None:
            connection, marker, scn, token = _begin(engine, connect)
        else:
            token, marker = join
            connection, scn = _join(engine, connect, token), None
    except engine.dialect.loaded_dbapi.Error as exc:
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise SourceError(
            f"cannot open a consistent snapshot of {display_url}: {detail}",
            hint="on Oracle the user needs SELECT on v$database (GRANT SELECT ON v_$database) and "
            "FLASHBACK on the tables; elsewhere, check the database is reachable",
        ) from exc
    snapshot = Snapshot(
        connection, marker, tables_for=tables_for, display_url=display_url, scn=scn, token=token
    )
    try:
        yield snapshot
    finally:
        snapshot.close()
