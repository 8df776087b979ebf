"""The naive migration script of issue 5 goal 4, the baseline `migrate run` is measured against.

What a team writes first: read each root row with SQLAlchemy Core, query its children (embeds and
lookups, nested) row by row for that parent, build dicts, `json.dumps` each document and write it
into a SQLite file one INSERT at a time. One commit per document does not finish in any useful
time, so it commits every `COMMIT_EVERY` documents. It reads the same tables and columns as the
compiled mappings (their ExtractSpecs), but applies no value rules: it only does less.

It is too slow for the whole demo, so each service is measured on a bounded count and time and the
rate over all services is what the whole demo would take at those per-service rates.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from migrate.spec import ExtractSpec, NodeSpec

COMMIT_EVERY = 1000


@dataclass(frozen=True, slots=True)
class ServiceRate:
    """What the naive script did for one service within its bounds."""

    service: str
    documents: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.documents / self.seconds if self.seconds else 0.0


def mixed_rate(rates: Sequence[ServiceRate], totals: dict[str, int]) -> float:
    """Documents/s over the whole demo: all its documents over the time each service's documents
    would take at the rate measured for that service (a harmonic mean weighted by the mix)."""
    seconds = sum(totals[r.service] / r.rate for r in rates if r.rate)
    return sum(totals[r.service] for r in rates) / seconds if seconds else 0.0


class _Node:
    """One table of the tree with its per-parent query."""

    def __init__(self, spec: NodeSpec, children: list[_Node]) -> None:
        self.spec = spec
        self.children = children
        linked = [parent for child in children for _, parent in child.spec.link]
        self.columns = list(dict.fromkeys([*spec.columns, *linked]))
        table = sa.table(spec.table, *(sa.column(c) for c in self.columns))
        query = sa.select(*(table.c[c] for c in self.columns))
        for own, _parent in spec.link:
            query = query.where(table.c[own] == sa.bindparam(f"p_{own}"))
        self.query = query
        self.name = spec.node_id.rsplit(".", 1)[-1]

    def params(self, parent: dict[str, Any]) -> dict[str, Any]:
        return {f"p_{own}": parent[theirs] for own, theirs in self.spec.link}


def _tree(spec: ExtractSpec) -> _Node:
    def build(node: NodeSpec) -> _Node:
        below = [build(n) for n in spec.nodes if n.parent_id == node.node_id]
        return _Node(node, below)

    return build(spec.root)


def _document(connection: Connection, node: _Node, row: dict[str, Any]) -> dict[str, Any]:
    document = dict(row)
    for child in node.children:
        found = connection.execute(child.query, child.params(row))
        document[child.name] = [
            _document(connection, child, dict(r._mapping)) for r in found.fetchall()
        ]
    return document


def migrate_naively(
    source_url: str,
    specs: Sequence[ExtractSpec],
    output: Path,
    *,
    max_documents: int,
    max_seconds: float,
) -> ServiceRate:
    """Migrate up to `max_documents` documents of one service (for at most about `max_seconds`)
    into the SQLite file `output`; the count and the seconds it took."""
    if not specs:
        raise ValueError("no document types to migrate")
    engine = sa.create_engine(source_url)
    out = sqlite3.connect(output)
    written = 0
    started = time.perf_counter()
    try:
        out.execute("CREATE TABLE IF NOT EXISTS docs (doc_type TEXT, key TEXT, body TEXT)")
        with engine.connect() as connection:
            for spec in specs:
                root = _tree(spec)
                query = root.query
                if spec.where:
                    query = query.where(sa.text(spec.where))
                for row in connection.execute(query):
                    values = dict(row._mapping)
                    body = json.dumps(_document(connection, root, values), default=str)
                    key = ":".join(str(values[c]) for c in spec.primary_key)
                    out.execute("INSERT INTO docs VALUES (?, ?, ?)", (spec.doc_type, key, body))
                    written += 1
                    if written % COMMIT_EVERY == 0:
                        out.commit()
                    if written >= max_documents or time.perf_counter() - started > max_seconds:
                        break
                else:
                    continue
                break
        out.commit()
    finally:
        out.close()
        engine.dispose()
    return ServiceRate(specs[0].service, written, time.perf_counter() - started)
