"""Rows read through the driver's own cursor turned into typed Arrow tables.

No SQLAlchemy result processing happens on the rows: its type processors follow SQLite's affinity
(a RAW(16) column would go through a NUMERIC processor and fail on bytes), and per-row objects cost
more than the read itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from migrate.schema import ColumnType
from migrate.source.normalize import BadValue, to_arrow
from migrate.spec import FLAWS_COLUMN, NodeSpec


def build_table(
    rows: Sequence[tuple[Any, ...]],
    node: NodeSpec,
    columns: Sequence[ColumnType],
) -> pa.Table:
    """The node's rows as an Arrow table of exactly `node.columns`, each typed by its kind, and
    after them, when any value broke its column's rule, the `FLAWS_COLUMN` naming each row's
    failures (column, declared type, expected and found kind; never the value). Those values are
    staged as NULL; the builder rejects every document their rows would go into."""
    width = len(node.columns)
    by_column: list[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else [()] * width
    arrays = []
    flaws: dict[int, list[str]] = {}
    for values, name, column in zip(by_column, node.columns, columns, strict=False):
        bad: dict[int, BadValue] = {}
        arrays.append(to_arrow(values, column, bad))
        for row, exc in bad.items():
            flaws.setdefault(row, []).append(
                f"column {name} ({column.declared}) holds a value that is not "
                f"{column.kind.value}: expected {exc.expected}, got {exc.got}"
            )
    names = list(node.columns)
    if flaws:
        texts = ["; ".join(flaws[row]) if row in flaws else None for row in range(len(rows))]
        arrays.append(pa.array(texts, pa.string()))
        names.append(FLAWS_COLUMN)
    return pa.Table.from_arrays(arrays, names=names)
