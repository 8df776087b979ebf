"""Small questions asked of the source outside a run: by `check` (is the `where` valid SQL, is a
link indexed, how many children can one parent have, how long are unbounded values), by
`scaffold` (foreign keys) and by `preview` (which root row renders a key; a range holding exactly
that row).

Every statement here is bounded: the `where` check runs the chunk-planning statement under a
predicate that is always false (the database parses and plans it and reads no row), and the
statistics read at most `SAMPLE_ROWS` rows of a table. This module works on `Source` and
`Snapshot` from inside their package (their connection, statement runner and SCN).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from migrate.errors import SourceError
from migrate.schema import TableInfo, TableLinks, ValueKind
from migrate.source.chunks import Bound, ChunkRange
from migrate.source.engine import Source
from migrate.source.reflect import Reflector
from migrate.source.snapshot import Snapshot
from migrate.source.sql import Compiled, Queries, SourceTable, bound_values, range_predicate
from migrate.spec import ExtractSpec

SAMPLE_ROWS = 100_000  # rows a statistic reads at most; a larger table is sampled


def links(source: Source, tables: Iterable[str], *, indexes: bool = True) -> dict[str, TableLinks]:
    """Foreign keys and (unless not wanted) indexes of the named tables, by the name the
    database reports."""
    with source._connect() as connection:
        try:
            reflector = Reflector(connection, source.rules, schema=source.schema)
            return reflector.links(tables, indexes=indexes)
        except sa.exc.DBAPIError as exc:
            raise _catalog_failed(source, exc) from exc


def _catalog_failed(source: Source, exc: sa.exc.DBAPIError) -> SourceError:
    return SourceError(
        f"reading the keys and indexes of {source.display_url} failed: {_detail(exc)}",
        hint="check that the source user may read the catalog of these tables",
    )


def _detail(exc: BaseException) -> str:
    error = getattr(exc, "orig", None) or exc
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]


def where_problem(source: Source, spec: ExtractSpec, tables: Mapping[str, TableInfo]) -> str | None:
    """Why the database refuses the document type's `where`, or None when it takes it.

    The chunk-planning statement itself is run (so the `where` is compiled exactly as `run` will
    compile it), under a predicate that is always false: parsed and planned, no row read.
    """
    if not spec.where or not spec.where.strip():
        return None
    with source._connect() as connection:
        queries = Queries(spec, tables, dialect=source.rules, schema=source.schema)
        boundaries = queries.boundaries(1).where(sa.false())
        try:
            connection.execute(boundaries).fetchall()
        except sa.exc.DBAPIError as exc:
            connection.rollback()
            return _detail(exc)
    return None


def _table(info: TableInfo, scn: int | None = None, schema: str | None = None) -> SourceTable:
    columns: list[sa.ColumnClause[Any]] = [sa.column(c.name) for c in info.columns]
    return SourceTable(info.name, *columns, scn=scn, schema=schema)


def _sampled(
    connection: Connection, info: TableInfo, columns: Sequence[str], schema: str | None
) -> sa.Subquery:
    """The table's `columns`, all of its rows or, on a table with more than `SAMPLE_ROWS`, the
    first `SAMPLE_ROWS` the database gives."""
    table = _table(info, schema=schema)
    picked = [table.c[_name(info, name)] for name in columns]
    bounded = sa.select(sa.literal(1)).select_from(table).limit(SAMPLE_ROWS + 1).subquery()
    count = connection.execute(sa.select(sa.func.count()).select_from(bounded)).scalar_one()
    statement = sa.select(*picked).select_from(table)
    if count > SAMPLE_ROWS:
        statement = statement.limit(SAMPLE_ROWS)
    return statement.subquery("mig_sample")


def largest_child_count(source: Source, info: TableInfo, link: Sequence[str]) -> int:
    """The most rows of `info` that share one value of the `link` columns (one GROUP BY,
    sampled on a large table): the most children one parent has."""
    with source._connect() as connection:
        sample = _sampled(connection, info, link, source.schema)
        keys = [sample.c[_name(info, name)] for name in link]
        counts = (
            sa.select(sa.func.count().label("n"))
            .select_from(sample)
            .where(*(key.is_not(None) for key in keys))
            .group_by(*keys)
            .subquery("mig_counts")
        )
        largest = connection.execute(sa.select(sa.func.max(counts.c.n))).scalar_one()
    return int(largest or 0)


def longest_values(source: Source, info: TableInfo, columns: Sequence[str]) -> dict[str, int]:
    """The longest value of each named column, in characters (text) or bytes (binary), over the
    table or its sample: for columns whose declared type sets no bound."""
    if not columns:
        return {}
    dialect = source.dialect
    with source._connect() as connection:
        sample = _sampled(connection, info, columns, source.schema)
        measures: list[ColumnElement[Any]] = []
        for name in columns:
            column = info.column(name)
            value: ColumnElement[Any] = sample.c[_name(info, name)]
            kind = column.type.kind if column is not None else ValueKind.STRING
            if dialect == "postgresql" and kind is ValueKind.JSON:
                value = sa.cast(value, sa.Text)
            if dialect == "oracle" and kind is ValueKind.BINARY:
                measure = sa.func.dbms_lob.getlength(value)
            else:
                measure = sa.func.length(value)
            measures.append(sa.func.max(measure))
        row = connection.execute(sa.select(*measures)).one()
    return {name: int(value or 0) for name, value in zip(columns, row, strict=True)}


# -- preview: a root row, and a chunk range holding only it ---------------------------------


def root_keys_where(
    snapshot: Snapshot, spec: ExtractSpec, info: TableInfo, equal: Mapping[str, Any], limit: int
) -> list[Bound]:
    """Primary keys (as the driver gives them) of at most `limit` root rows whose named columns
    equal the given values and that the document type's `where` keeps, in key order."""
    table = _table(info, snapshot._view.scn, snapshot._schema)
    pk = [table.c[_name(info, k)] for k in spec.primary_key]
    where: list[ColumnElement[bool]] = [table.c[_name(info, c)] == v for c, v in equal.items()]
    if spec.where and spec.where.strip():
        where.append(sa.literal_column(f"({spec.where})", sa.Boolean))
    statement = sa.select(*pk).select_from(table).where(*where).order_by(*pk).limit(limit)
    return [tuple(row) for row in snapshot._run(statement, f"the keys of {info.name}")]


def row_range(snapshot: Snapshot, spec: ExtractSpec, info: TableInfo, key: Bound) -> ChunkRange:
    """A chunk range holding the root row with primary key `key` and no other: from the key to
    the next one in the table's key order."""
    table = _table(info, snapshot._view.scn, snapshot._schema)
    pk = [table.c[_name(info, k)] for k in spec.primary_key]
    start = ChunkRange(0, key, None)
    statement = (
        sa.select(*pk).select_from(table).where(*range_predicate(pk, start)).order_by(*pk).limit(2)
    )
    sql, params = Compiled(statement, snapshot._connection.dialect).bind(bound_values(start))
    rows = snapshot._fetch(sql, params, f"the keys of {info.name}")
    after = [tuple(row) for row in rows if tuple(row) != tuple(key)]
    return ChunkRange(0, key, after[0] if after else None)


def _name(info: TableInfo, name: str) -> str:
    column = info.column(name)
    return column.name if column is not None else name
