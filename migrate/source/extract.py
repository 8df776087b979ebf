"""Rows read through the driver's own cursor, in batches, and turned into typed Arrow tables.

No SQLAlchemy result processing happens on the rows: its type processors follow SQLite's affinity
(a RAW(16) column would go through a NUMERIC processor and fail on bytes), and per-row objects cost
more than the read itself.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from migrate.errors import SourceError
from migrate.schema import ColumnType, TableInfo
from migrate.source.chunks import ChunkRange
from migrate.source.normalize import BadValue, to_arrow
from migrate.source.sql import Params
from migrate.spec import ExtractSpec, NodeSpec

BATCH_ROWS = 5000


def fetch_all(cursor: Any, sql: str, params: Params) -> list[tuple[Any, ...]]:
    """Every row of a statement, fetched `BATCH_ROWS` at a time."""
    cursor.execute(sql, params)
    rows: list[tuple[Any, ...]] = []
    while batch := cursor.fetchmany(BATCH_ROWS):
        rows.extend(batch)
    return rows


def _key_text(value: Any) -> str:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return str(value)


def _row_name(table: TableInfo, row: tuple[Any, ...]) -> str:
    if not table.primary_key:
        return "a row (the table has no primary key)"
    pairs = ", ".join(f"{k}={_key_text(v)}" for k, v in zip(table.primary_key, row, strict=True))
    return f"the row with {pairs}"


def build_table(
    rows: Sequence[tuple[Any, ...]],
    node: NodeSpec,
    columns: Sequence[ColumnType],
    table: TableInfo,
    *,
    spec: ExtractSpec,
    chunk: ChunkRange,
) -> pa.Table:
    """The node's rows as an Arrow table of exactly `node.columns`, each typed by its kind.

    Each row carries the table's primary key after the mapped columns, to name it in an error.
    """
    width = len(node.columns)
    arrays = []
    for position, (name, column) in enumerate(zip(node.columns, columns, strict=True)):
        values = [row[position] for row in rows]
        try:
            arrays.append(to_arrow(values, column))
        except BadValue as exc:
            where_row = _row_name(table, rows[exc.row][width:]) if exc.row >= 0 else "a row"
            raise SourceError(
                f"{table.name}.{name} ({column.declared}) holds a value that is not "
                f"{column.kind.value}: expected {exc.expected}, got {exc.got}, in {where_row}",
                where=f"service {spec.service}, document type {spec.doc_type}, chunk {chunk.index}",
                hint="correct the value in the source database, or read the column through a "
                "view that converts it, then run again",
            ) from None
    return pa.Table.from_arrays(arrays, names=list(node.columns))
