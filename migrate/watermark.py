"""Watermark capture: which documents changed, found by comparing rows, never by trusting times.

A table's last-modified column says when a row last changed, but not in commit order: on
PostgreSQL and Oracle a transaction that set its rows' times early can commit after a delta
read "everything newer than T", and a delete leaves no row to be newer at all. So a delta here
never asks "what is newer than the last position". It reads, chunk by chunk under one snapshot,
the key, link and last-modified columns of every row each document is built from (the mapping's
own extract, narrowed to those columns: `digest_spec`), and folds them into one digest per root
(`chunk_digests`). A root whose digest differs from the one recorded when its document was last
built, a root that is new, and a root the register knows that the chunk no longer holds are
rebuilt (or deleted) exactly as a trigger-logged change would be.

The digest of a root is the sum, modulo 2**128, of a 128-bit hash of each row its document reads
(the root row, every embedded row at any depth, every lookup row), each with its node, so rows
can arrive in any order, a row moved to another parent changes both parents, and a lookup row
used by many documents changes each of them. A last-modified column that a writer forgets to
set hides that writer's updates (only what the narrowed read sees is compared); the cutover's
verification, a full reconciliation against the source, still catches them.

Digests are recorded per chunk in the ledger: by the run, under its snapshot, before any chunk
is read (`record_baseline`), so a document is never built from rows older than its digest; and
by each delta, under its snapshot, taking effect when the delta completes. The price is a read of
those columns of every table on every delta; an idle delta is not free, as a trigger-logged one
is (see the README's capture modes).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa
import xxhash

from migrate.ledger import ChunkRecord, Ledger
from migrate.mapping import DocPlan
from migrate.register import arrow_key_texts, key_texts
from migrate.schema import TableInfo
from migrate.source import ChunkRange, Snapshot
from migrate.source.capture import CapturePlan
from migrate.spec import ExtractSpec, NodeSpec

_MASK = (1 << 128) - 1
Key = tuple[Any, ...]


def digest_spec(
    spec: ExtractSpec, plan: CapturePlan, tables: Mapping[str, TableInfo]
) -> ExtractSpec:
    """The document type's extract narrowed to what tells a row apart and when it changed: per
    node, its table's primary key (or, without one, the columns the mapping reads), its
    last-modified column, and the columns that link it to its parent and its children to it."""
    nodes: list[NodeSpec] = []
    for node in spec.nodes:
        info = _table(tables, node.table)
        captured = plan.table(node.table)
        wanted = list(spec.primary_key) if node.parent_id is None else []
        wanted += list(info.primary_key) or list(node.columns)
        if captured is not None and captured.watermark:
            wanted.append(captured.watermark)
        wanted += [child for child, _parent in node.link]
        wanted += [
            parent
            for other in spec.nodes
            if other.parent_id == node.node_id
            for _, parent in other.link
        ]
        columns: list[str] = []
        for name in wanted:
            column = info.column(name)
            exact = column.name if column is not None else name
            if exact not in columns:
                columns.append(exact)
        nodes.append(replace(node, columns=tuple(columns)))
    return replace(spec, nodes=tuple(nodes))


def narrowed(
    plans: Sequence[DocPlan],
    capture: CapturePlan,
    tables_of: Callable[[ExtractSpec], Mapping[str, TableInfo]],
) -> dict[str, ExtractSpec]:
    """`digest_spec` of each document type, by name."""
    return {d.name: digest_spec(d.extract, capture, tables_of(d.extract)) for d in plans}


def _table(tables: Mapping[str, TableInfo], name: str) -> TableInfo:
    for key, info in tables.items():
        if key.casefold() == name.casefold():
            return info
    raise KeyError(name)


def chunk_digests(
    doc: DocPlan, narrow: ExtractSpec, tables: Mapping[str, pa.Table]
) -> dict[str, int]:
    """Each root's digest (see the module's notes), by the register's name of the root."""
    root = narrow.root
    root_rows = _rows(tables[root.node_id], root)
    texts = root_texts(doc, tables[root.node_id])
    sums = [0] * len(root_rows)
    rows_of: dict[str, list[tuple[Any, ...]]] = {root.node_id: root_rows}
    owners: dict[str, list[tuple[int, ...]]] = {root.node_id: [(i,) for i in range(len(root_rows))]}
    for at, row in enumerate(root_rows):
        sums[at] = _hash(root.node_id, row)
    for node in narrow.nodes[1:]:
        assert node.parent_id is not None
        parent = narrow.node(node.parent_id)
        theirs = [parent.columns.index(_exact(parent, p)) for _, p in node.link]
        ours = [node.columns.index(_exact(node, c)) for c, _ in node.link]
        linked: dict[tuple[Any, ...], set[int]] = {}
        for row, roots in zip(rows_of[parent.node_id], owners[parent.node_id], strict=True):
            value = tuple(row[i] for i in theirs)
            if None not in value:
                linked.setdefault(value, set()).update(roots)
        rows = _rows(tables[node.node_id], node)
        found: list[tuple[int, ...]] = []
        for row in rows:
            roots = tuple(sorted(linked.get(tuple(row[i] for i in ours), ())))
            if roots:
                digest = _hash(node.node_id, row)
                for owner in roots:
                    sums[owner] = (sums[owner] + digest) & _MASK
            found.append(roots)
        rows_of[node.node_id] = rows
        owners[node.node_id] = found
    return dict(zip(texts, sums, strict=True))


def _exact(node: NodeSpec, name: str) -> str:
    for column in node.columns:
        if column.casefold() == name.casefold():
            return column
    raise KeyError(name)


def _rows(table: pa.Table, node: NodeSpec) -> list[tuple[Any, ...]]:
    columns = [table.column(name).to_pylist() for name in node.columns]
    return list(zip(*columns, strict=True)) if columns else []


def _hash(node_id: str, row: tuple[Any, ...]) -> int:
    return int(xxhash.xxh3_128_intdigest(repr((node_id, row)).encode("utf-8", "surrogatepass")))


def root_texts(doc: DocPlan, table: pa.Table) -> list[str]:
    """The register's names of a table's root rows (its primary-key columns, found by name)."""
    columns = {name.casefold(): table.column(name).combine_chunks() for name in table.column_names}
    return arrow_key_texts(doc, columns, table.num_rows)


def encode(digests: Mapping[str, int]) -> bytes:
    text = json.dumps(
        {k: format(v, "032x") for k, v in sorted(digests.items())}, separators=(",", ":")
    )
    return zlib.compress(text.encode("utf-8", "surrogatepass"))


def decode(body: bytes) -> dict[str, int]:
    data = json.loads(zlib.decompress(body).decode("utf-8", "surrogatepass"))
    return {k: int(v, 16) for k, v in data.items()}


@dataclass(frozen=True, slots=True)
class Compared:
    """One chunk held against its recorded digests: the roots to rebuild (as the database
    gives their keys), the register's names of those gone, and the chunk's digests now."""

    present: list[Key]
    gone: list[str]
    digests: dict[str, int] | None  # None: read at another point, keep what is recorded

    @property
    def changed(self) -> int:
        return len(self.present) + len(self.gone)


def read_digests(
    snapshot: Snapshot, doc: DocPlan, narrow: ExtractSpec, chunk: ChunkRange
) -> dict[str, int] | None:
    """The chunk's digests under the snapshot; None where the chunk had to be read at a later
    point than the snapshot (an Oracle view too old): such digests could postdate rows read
    under the snapshot, and no digest is safer than one too new."""
    key = (narrow.service, narrow.doc_type, chunk.index)
    before = key in snapshot.reread
    tables = snapshot.extract(narrow, chunk)
    if not before and key in snapshot.reread:
        del snapshot.reread[key]  # not a chunk of the run's: nothing for delta to cover
        return None
    return chunk_digests(doc, narrow, tables)


class Digests:
    """A run's digests, read and compared under one snapshot (a run's or a delta's)."""

    def __init__(
        self,
        snapshot: Snapshot,
        ledger: Ledger,
        run_id: str,
        plans: Mapping[str, DocPlan],
        narrowed: Mapping[str, ExtractSpec],
    ) -> None:
        self.snapshot = snapshot
        self.ledger = ledger
        self.run_id = run_id
        self.plans = plans
        self.narrowed = narrowed

    def _read(self, chunk: ChunkRecord) -> tuple[ChunkRange, dict[str, int] | None]:
        bounds = ChunkRange.from_bounds_json(chunk.index, chunk.lo, chunk.hi)
        doc = self.plans[chunk.doc_type]
        return bounds, read_digests(self.snapshot, doc, self.narrowed[chunk.doc_type], bounds)

    def record_baseline(self, chunks: Sequence[ChunkRecord]) -> int:
        """Record the digests of the run's chunks that have none, before any of them is read
        (see the module's notes): a document is then never built from rows older than its
        digest; a chunk read later, after an interruption, only makes the first delta rebuild
        more. How many chunks got digests."""
        have = set(self.ledger.digests(self.run_id))
        bodies: dict[str, bytes] = {}
        for chunk in chunks:
            if chunk.chunk_id not in have:
                _bounds, found = self._read(chunk)
                if found is not None:
                    bodies[chunk.chunk_id] = encode(found)
        self.ledger.store_digests(self.run_id, bodies)
        return len(bodies)

    def compare(self, chunk: ChunkRecord, recorded: Mapping[str, int] | None) -> Compared:
        """The chunk's roots that changed since their digests were recorded (every root, with
        none recorded), new roots, and roots the register holds that the chunk lost."""
        doc = self.plans[chunk.doc_type]
        bounds, now = self._read(chunk)
        before = dict(recorded or {})
        known = set(before) | self.ledger.registered_roots(self.run_id, chunk.chunk_id)
        if now is None:  # read at another point: every root of the chunk is rebuilt
            changed = None
        else:
            changed = {text for text, digest in now.items() if before.get(text) != digest}
            changed |= known - set(now)
            if not changed:
                return Compared([], [], now)
        existing = self.snapshot.existing_roots(doc.extract, bounds)
        names = dict(zip(key_texts(doc, existing), existing, strict=True))
        if changed is None:
            changed = set(names) | known
        present = [names[text] for text in sorted(changed) if text in names]
        gone = sorted(text for text in changed if text not in names)
        return Compared(present, gone, now)


__all__ = [
    "Compared",
    "Digests",
    "chunk_digests",
    "decode",
    "digest_spec",
    "encode",
    "narrowed",
    "read_digests",
    "root_texts",
]
