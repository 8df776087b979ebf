"""One consistent read view of the source for a whole run: chunk planning and extraction.

How a view is begun, shared and proved is the engine's (`migrate.source.dialects`): SQLite holds one
read transaction, PostgreSQL exports its REPEATABLE READ snapshot, MariaDB proves a shared snapshot
by its binary-log position, Oracle reads every table `AS OF SCN n`. The marker names the view, so
delta catch-up starts where it ends; the token (where the engine has one) is what another process
joins it with (`Source.join`).

A chunk is read on the view's connection through the engine's bulk reader where it has one
(PostgreSQL's COPY, `pgcopy`) and where that stages the same values, else through the engine's
cursor. A chunk whose view is too old (Oracle's ORA-01555) is read again alone at a fresh read
point and listed in `reread`; a connection that breaks fails the read with `ConnectionLost`, and
nothing of the chunk is staged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import replace
from operator import itemgetter
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from migrate.errors import ConfigError, SourceError
from migrate.schema import TableInfo
from migrate.source import watermark
from migrate.source.capture import CaptureEngine, Change, WatermarkCapture
from migrate.source.chunks import ChunkRange
from migrate.source.dialects import SourceDialect, View
from migrate.source.dialects.base import first_line
from migrate.source.extract import build_table
from migrate.source.pgcopy import CopyFailed, CopyRead, CopyReader
from migrate.source.pgcsv import Unfit, keep_linked
from migrate.source.sql import (
    Params,
    Queries,
    compile_statement,
)
from migrate.spec import ExtractSpec, NodeSpec

KEY_BATCH = 500  # keys or link values per statement: well under Oracle's 1,000-item IN lists

TablesFor = Callable[[ExtractSpec], Mapping[str, TableInfo]]


class ConnectionLost(SourceError):
    """The view's connection broke mid-read: nothing of the chunk was staged. A worker joins the
    view again and reads the chunk once more; on the connection that holds the view, the view
    itself is gone."""


class _TooOld(Exception):
    """The view is too old for a statement (Oracle's ORA-01555)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class Snapshot:
    """Reads under one consistent view; created by `Source.snapshot()`, valid inside its block."""

    def __init__(
        self,
        view: View,
        rules: SourceDialect,
        *,
        tables_for: TablesFor,
        display_url: str,
        schema: str | None = None,
    ) -> None:
        self._view = view
        self._connection = view.connection
        self._rules = rules
        self._cursor = rules.cursor(view.connection)
        self._tables_for = tables_for
        self._display_url = display_url
        self._schema = schema
        self._prepared: dict[ExtractSpec, Queries] = {}
        self._copy = rules.copy_reader(view.connection)
        self.marker = view.marker
        # What another process passes to `Source.join` to read under this same view; None
        # where the source cannot share it (see `migrate.source.dialects`).
        self.token = view.token
        self._paused = False
        # PostgreSQL (psycopg): read chunks through COPY where it stages the same values as the
        # cursor; False reads every chunk through the cursor (the tests compare the two).
        self.use_copy = self._copy is not None
        self.copy_fallbacks = 0  # chunks COPY could not stage exactly, read through the cursor
        # Chunks read again at a later read point because the view was too old for them
        # (service, document type, chunk index) -> that point's marker: delta catch-up
        # must cover them from the run's marker on.
        self.reread: dict[tuple[str, str, int], str] = {}

    def _queries(self, spec: ExtractSpec, scn: int | None = None) -> Queries:
        """The spec's statements, prepared once per snapshot (the schema is read once); with
        `scn`, for one read at that point instead."""
        queries = self._prepared.get(spec) if scn is None else None
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
            spec,
            self._tables_for(spec),
            dialect=self._rules,
            scn=self._view.scn if scn is None else scn,
            schema=self._schema,
        )
        if scn is None:
            self._prepared[spec] = queries
        return queries

    def _run(self, statement: sa.ClauseElement, what: str) -> list[tuple[Any, ...]]:
        return self._fetch(*compile_statement(statement, self._rules.sa), what)

    def _fetch(self, sql: str, params: Params, what: str) -> list[tuple[Any, ...]]:
        try:
            rows = self._rules.fetch_all(self._cursor, sql, params)
        except self._rules.sa.loaded_dbapi.Error as exc:
            if self._rules.too_old(exc):
                raise _TooOld(exc) from exc
            raise self._failed(exc, what) from exc
        return rows

    def _failed(self, exc: Exception, what: str) -> SourceError:
        detail = first_line(exc)
        if self._rules.lost(exc, self._connection):
            return ConnectionLost(
                f"the connection to {self._display_url} broke while reading {what}: {detail}",
                hint="nothing of the chunk was staged; run the command again: it resumes, and "
                "reads the chunks still to read under a new snapshot",
            )
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
        try:
            (nulls,) = self._run(queries.null_keys(), f"the keys of {spec.root_table}")[0]
            starts = [tuple(r) for r in self._run(queries.boundaries(chunk_size), spec.root_table)]
        except _TooOld as exc:
            raise self._too_old(exc, f"the keys of {spec.root_table}") from exc.error
        if nulls:
            raise SourceError(
                f"{nulls} row(s) of {spec.root_table} have a NULL in the primary key "
                f"({', '.join(spec.primary_key)}), so no chunk can hold them",
                where=f"service {spec.service}, document type {spec.doc_type}",
                hint="fill in the key of those rows, or exclude them with the mapping's `where`",
            )
        ranges = []
        for index in range(len(starts)):
            lo = starts[index] if index else None
            hi = starts[index + 1] if index + 1 < len(starts) else None
            ranges.append(ChunkRange(index, lo, hi))
        return ranges

    def _too_old(self, exc: _TooOld, what: str) -> SourceError:
        return SourceError(
            f"reading {what} from {self._display_url} failed: the snapshot is too old "
            f"({first_line(exc.error)})",
            hint="the database no longer holds the undo this read needs; raise UNDO_RETENTION "
            "(or the undo tablespace) and run again",
        )

    def count_rows(self, spec: ExtractSpec, chunk: ChunkRange) -> int:
        """Root rows in the chunk (after `where`), for progress and estimates."""
        try:
            rows = self._fetch(*self._queries(spec).count(chunk), spec.root_table)
        except _TooOld as exc:
            raise self._too_old(exc, spec.root_table) from exc.error
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
        try:
            return self._extract_rows(queries, chunk)
        except _TooOld as exc:
            return self._reread(spec, chunk, exc)

    def _reread(self, spec: ExtractSpec, chunk: ChunkRange, first: _TooOld) -> dict[str, pa.Table]:
        """The chunk read again alone, at a fresh read point, and listed in `reread`."""
        what = f"chunk {chunk.index} of {spec.root_table}"
        try:
            scn = self._rules.fresh_scn(self._connection)
        except self._rules.sa.loaded_dbapi.Error as exc:
            raise self._failed(exc, what) from exc
        if scn is None:
            raise self._too_old(first, what) from first.error
        try:
            tables = self._extract_rows(self._queries(spec, scn), chunk)
        except _TooOld as exc:
            raise self._too_old(exc, what) from exc.error
        self.reread[(spec.service, spec.doc_type, chunk.index)] = f"scn:{scn}"
        return tables

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

    # -- change capture and delta ----------------------------------------------------------

    def capture_position(self, capture: CaptureEngine) -> str:
        """Where the service's change log stands in this snapshot: a delta starting here takes
        every change this snapshot does not show."""
        self.resume()
        if isinstance(capture, WatermarkCapture):
            marks = {}
            for table in capture.plan.tables:
                sql, params = watermark.marks_statement(
                    self._rules, self._schema, table, scn=self._view.scn
                )
                (count, newest), *_ = self._fetch(sql, params, f"the watermark of {table.name}")
                marks[table.name] = (int(count), newest)
            return watermark.position(marks)
        rows = self._fetch(capture.position(), (), "the change log's position")
        return capture.position_of(rows[0][0])

    def changes(self, capture: CaptureEngine, since: str) -> list[Change]:
        """Every change logged after position `since` that this snapshot shows."""
        self.resume()
        sql, params = capture.read(since)
        return [capture.change(row) for row in self._fetch(sql, params, "the change log")]

    def dirty_roots(
        self, spec: ExtractSpec, node: NodeSpec, values: Sequence[tuple[Any, ...]]
    ) -> set[tuple[Any, ...]]:
        """The keys of the roots whose documents read rows of `node` linked by these values
        (see `Queries.dirty_roots`), as the database gives them."""
        self.resume()
        queries = self._queries(spec)
        found: set[tuple[Any, ...]] = set()
        for start in range(0, len(values), KEY_BATCH):
            sql, bound = queries.dirty(node, values[start : start + KEY_BATCH])
            found.update(
                tuple(row) for row in self._fetch(sql, bound, f"the roots of {node.table}")
            )
        return found

    def existing_roots(self, spec: ExtractSpec, chunk: ChunkRange) -> list[tuple[Any, ...]]:
        """The root keys that exist in `chunk` (its range and keys), in key order, without the
        mapping's `where`, as the database gives them."""
        self.resume()
        sql, bound = self._queries(spec).existing(chunk)
        return [tuple(row) for row in self._fetch(sql, bound, f"the keys of {spec.root_table}")]

    def locate(
        self, spec: ExtractSpec, ranges: Sequence[ChunkRange], keys: Sequence[tuple[Any, ...]]
    ) -> dict[tuple[Any, ...], int]:
        """Which of `ranges` (a run's chunk plan, in order) holds each existing root key, as the
        database orders keys (its collation, not Python's): halving the plan, one query per
        half that holds some of the keys. Keys of no existing root are left out."""
        found: dict[tuple[Any, ...], int] = {}

        def search(first: int, last: int, wanted: Sequence[tuple[Any, ...]]) -> None:
            if not wanted:
                return
            span = ChunkRange(-1, ranges[first].lo, ranges[last].hi)
            present: list[tuple[Any, ...]] = []
            for start in range(0, len(wanted), KEY_BATCH):
                batch = tuple(wanted[start : start + KEY_BATCH])
                present += self.existing_roots(spec, replace(span, keys=batch))
            if first == last:
                found.update((key, ranges[first].index) for key in present)
                return
            middle = (first + last) // 2
            search(first, middle, present)
            left = {key for key, index in found.items() if first <= index <= middle}
            search(middle + 1, last, [key for key in present if key not in left])

        if ranges:
            search(0, len(ranges) - 1, list(dict.fromkeys(keys)))
        return found

    def pause(self) -> None:
        """End the read transaction until the next read where the engine proves the view again
        then (SQLite: a worker holds no lock between chunks)."""
        if not self._paused:
            self._paused = self._rules.pause(self._view)

    def resume(self) -> None:
        """Start the read transaction `pause` ended (a no-op when it did not); `extract` does
        this itself."""
        if not self._paused:
            return
        self._rules.resume(self._view)
        self._paused = False

    def close(self) -> None:
        try:
            self._cursor.close()
            if self._copy is not None:
                self._copy.close()
        finally:
            try:
                self._connection.rollback()
            finally:
                try:
                    self._connection.close()
                finally:
                    self._rules.end(self._view)


@contextmanager
def open_snapshot(
    rules: SourceDialect,
    connect: Callable[[], Connection],
    *,
    tables_for: TablesFor,
    display_url: str,
    schema: str | None = None,
    join: tuple[str, str] | None = None,
) -> Iterator[Snapshot]:
    """A new read view, or with `join` (token, marker) the view another process opened."""
    connection = connect()
    try:
        if join is None:
            view = rules.begin(connection)
        else:
            token, marker = join
            kind, _, value = token.partition(":")
            if kind != rules.token_kind or not rules.token_kind:
                raise SourceError(
                    f"a {kind} snapshot token cannot be joined on a {rules.name} source"
                )
            view = View(rules.join(connection, value), marker, token=token)
    except rules.sa.loaded_dbapi.Error as exc:
        connection.close()
        raise SourceError(
            f"cannot open a consistent snapshot of {display_url}: {first_line(exc)}",
            hint=rules.snapshot_hint,
        ) from exc
    except BaseException:
        connection.close()
        raise
    snapshot = Snapshot(view, rules, tables_for=tables_for, display_url=display_url, schema=schema)
    try:
        yield snapshot
    finally:
        snapshot.close()
