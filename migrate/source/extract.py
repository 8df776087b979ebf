"""Rows read through the driver's own cursor turned into typed Arrow tables.

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
from migrate.spec import ExtractSpec, NodeSpec


def _key_text(value: Any) -> str:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return str(value)


def _row_name(table: TableInfo, key: Sequence[Any]) -> str:
    if not table.primary_key:
        return "a row (the table has no primary key)"
    pairs = ", ".join(f"{k}={_key_text(v)}" for k, v in zip(table.primary_key, key, strict=True))
    return f"the row with {pairs}"


def build_table(
    rows: Sequence[tuple[Any, ...]],
    node: NodeSpec,
    columns: Sequence[ColumnType],
    table: TableInfo,
    keys: Sequence[int],
    *,
    spec: ExtractSpec,
    chunk: ChunkRange,
) -> pa.Table:
    """The node's rows as an Arrow table of exactly `node.columns`, each typed by its kind.

    `keys` are the positions of the table's primary key in a row (after the mapped columns when
    the node does not read them), to name a row in an error.
    """
    width = len(node.columns)
    by_column: list[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else [()] * width
    arrays = []
    for values, name, column in zip(by_column, node.columns, columns, strict=False):
        try:
            arrays.append(to_arrow(values, column))
        except BadValue as exc:
            row = rows[exc.row] if exc.row >= 0 else None
            where_row = "a row" if row is None else _row_name(table, [row[i] for i in keys])
            raise SourceError(
                f"{table.name}.{name} ({column.declared}) holds a value that is not "
                f"{column.kind.value}: expected {exc.expected}, got {exc.got}, in {where_row}",
                where=f"service {spec.service}, document type {spec.doc_type}, chunk {chunk.index}",
                hint="correct the value in the source database, or read the column through a "
                "view that converts it, then run again",
            ) from None
    return pa.Table.from_arrays(arrays, names=list(node.columns))
