"""Watermark capture's statements and positions: per table, its row count and newest
last-modified value.

A watermark position says where the source stood, not what changed: a transaction that commits
after a position was read, with a last-modified value older than the newest one then seen, is
not "newer" than the position. So a position only feeds `capture status` (changes pending, the
oldest one's age) and the cutover's gates; what a delta rebuilds is found by comparing each
root's rows with what the last delta saw (`migrate.watermark`), which no commit order can fool.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import quoted_name

from migrate.errors import SourceError
from migrate.source.capture import CaptureTable, Pending
from migrate.source.chunks import _decode, _encode
from migrate.source.dialects import SourceDialect
from migrate.source.sql import Compiled, Params, SourceTable

PREFIX = "wm:"

# A table's count and newest value, as the driver gave the value.
Marks = tuple[int, Any]


def _table(
    dialect: SourceDialect, schema: str | None, table: CaptureTable, scn: int | None
) -> tuple[sa.TableClause, sa.ColumnClause[Any]]:
    exact = bool(dialect.sa.requires_name_normalize)  # Oracle: names as the catalog has them

    def name(text: str) -> str:
        return quoted_name(text, True) if exact else text

    assert table.watermark is not None
    column: sa.ColumnClause[Any] = sa.column(name(table.watermark))
    clause = SourceTable(name(table.name), column, scn=scn, schema=name(schema) if schema else None)
    return clause, column


def marks_statement(
    dialect: SourceDialect, schema: str | None, table: CaptureTable, *, scn: int | None = None
) -> tuple[str, Params]:
    """The table's row count and newest last-modified value (as of `scn` on Oracle)."""
    clause, column = _table(dialect, schema, table, scn)
    statement = sa.select(sa.func.count(), sa.func.max(column)).select_from(clause)
    return Compiled(statement, dialect.sa).bind({})


def newer_statement(
    dialect: SourceDialect, schema: str | None, table: CaptureTable, newest: Any
) -> tuple[str, Params]:
    """The table's row count, and how many of its rows (and the oldest of their values) are
    newer than `newest` (every row with a value, when the position saw none)."""
    clause, column = _table(dialect, schema, table, None)
    condition = column.is_not(None) if newest is None else column > sa.bindparam("newest")
    newer = sa.case((condition, 1), else_=0)
    oldest = sa.func.min(sa.case((condition, column), else_=None))
    statement = sa.select(sa.func.count(), sa.func.sum(newer), oldest).select_from(clause)
    return Compiled(statement, dialect.sa).bind({} if newest is None else {"newest": newest})


def position(marks: Mapping[str, Marks]) -> str:
    data = {table: [count, _encode(newest)] for table, (count, newest) in sorted(marks.items())}
    return PREFIX + json.dumps(data, separators=(",", ":"), sort_keys=True)


def read_position(text: str) -> dict[str, Marks]:
    if not text.startswith(PREFIX):
        raise SourceError(
            f"not a watermark position: {text[:40]!r}",
            hint="the service's capture mode changed since its run: "
            "`migrate run SERVICE --fresh` records a new position",
        )
    data = json.loads(text[len(PREFIX) :])
    return {table: (int(count), _decode(newest)) for table, (count, newest) in data.items()}


def pending(
    tables: list[CaptureTable],
    since: str,
    fetch: Callable[[CaptureTable, Any], tuple[Any, Any, Any]],
) -> Pending:
    """What changed since the position, as far as counts and last-modified values tell, per
    table: the rows newer than the newest then seen, or the rows come or gone by the count,
    whichever is more. Zero when nothing changed, but for an update committed late with an
    older value: the delta (and the cutover's switch) finds that too, by comparing rows."""
    then = read_position(since)
    count_all = 0
    oldest: dt.datetime | None = None
    for table in tables:
        count_then, newest = then.get(table.name, (0, None))
        count_now, newer, first = fetch(table, newest)
        newer = int(newer or 0)
        count_all += max(newer, abs(int(count_now) - count_then))
        at = as_time(first)
        if at is not None and (oldest is None or at < oldest):
            oldest = at
    return Pending(count_all, oldest)


def as_time(value: Any) -> dt.datetime | None:
    """A last-modified value as an aware time (naive ones taken as UTC), when it is one."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    return None


__all__ = [
    "PREFIX",
    "as_time",
    "marks_statement",
    "newer_statement",
    "pending",
    "position",
    "read_position",
]
