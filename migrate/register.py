"""The loader's side of key collisions across chunks: the ledger's register of a run's documents.

A chunk's build rejects the rows of a collision it can see (inside the chunk, or known to the
register when the build was asked). When its documents are recorded, the loader registers them;
a key another chunk also renders (a collision nobody saw yet) makes the loader build the chunk
again knowing it, withdraw the other chunk's row (its counts and checksum amended, its reject
added to its reject file, its document deleted from the target), all in the transaction that
records this chunk's transform. So no row of a collision is ever written, or silently kept.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from migrate.document import Reject
from migrate.ledger import ChunkState, Ledger
from migrate.ledger.claims import Registered
from migrate.mapping import DocPlan
from migrate.mapping.canonical import aggregate
from migrate.mapping.collisions import COLLISION_FIELD, describe_row, source_key_dict
from migrate.source.normalize import to_arrow
from migrate.source.types import arrow_type
from migrate.transform import TransformOutput

Known = dict[str, list[str]]  # key -> the other rows that render it, described


@dataclass(frozen=True, slots=True)
class Settled:
    """A chunk's output once registered: rebuilt when the register found collisions its build
    did not know, the documents to delete from the target (keys now collided, and keys its rows
    rendered under an older mapping that nothing renders now), and how many rows of other chunks
    were withdrawn now."""

    output: TransformOutput
    deletions: list[tuple[str, str, str]]
    withdrawn: int


class Register:
    """One service run's document register, as the loader and the transform see it."""

    def __init__(
        self,
        ledger: Ledger,
        run_id: str,
        plans: dict[str, DocPlan],
        add_rejects: Callable[[str, list[Reject]], None],
        *,
        shared: bool = False,
    ) -> None:
        """`shared`: other processes register chunks of the run at the same time, so what this
        one knows of its collisions is never taken as the whole story (the ledger is asked)."""
        self.ledger = ledger
        self.run_id = run_id
        self.plans = plans
        self.add_rejects = add_rejects  # chunk id, rejects to append to its reject file
        self.shared = shared
        self._collided = set() if shared else ledger.collided_chunks(run_id)

    def known(self, chunk_id: str) -> Known | None:
        """What the chunk's build must know: its keys that rows of other chunks render."""
        if self.shared:
            if not self.ledger.collided_keys(self.run_id, chunk_id):
                return None
        elif chunk_id not in self._collided:
            return None
        return describe(self.ledger.collisions_of(self.run_id, chunk_id), self.plans)

    def settle(
        self,
        chunk_id: str,
        doc: DocPlan,
        output: TransformOutput,
        *,
        fingerprint: str,
        rebuild: Callable[[Known], TransformOutput],
    ) -> Settled:
        """Register the chunk's documents (inside the caller's ledger transaction)."""
        found = self.ledger.register_documents(
            self.run_id,
            chunk_id,
            doc.name,
            bucket_type=doc.bucket_type,
            bucket=doc.bucket,
            claims=output.claims,
            fingerprint=fingerprint,
            collided=output.collided,
            rejected=rejected_rows(output.rejects),
        )
        if not found.others:
            return Settled(output, found.vanished, 0)
        self._collided.add(chunk_id)
        if not set(found.others) <= output.collided:
            output = rebuild(describe(found.others, self.plans))
        mine = {c.key: c.source_key for c in output.claims if c.key in found.others}
        by_chunk: dict[str, list[Registered]] = {}
        for row in found.newly_collided:
            by_chunk.setdefault(row.chunk_id, []).append(row)
        for other_chunk, rows in by_chunk.items():
            self._withdraw(other_chunk, rows, chunk_id, doc, mine=mine, others=found.others)
        deletions = sorted(
            {(o.bucket_type, o.bucket, o.key) for r in found.others.values() for o in r}
            | set(found.vanished)
        )
        return Settled(output, deletions, len(found.newly_collided))

    def _withdraw(
        self,
        chunk_id: str,
        rows: Sequence[Registered],
        by_chunk: str,
        by_doc: DocPlan,
        *,
        mine: dict[str, str],
        others: dict[str, list[Registered]],
    ) -> None:
        """Take rows of another chunk out of its recorded documents: a later chunk renders their
        keys too. A chunk not transformed yet learns it from the register when it is.

        A withdrawn row's reject names every other row the register knows renders its key (this
        chunk's, and other chunks' registered before), as a build told of them would: so a
        collision of two rows reads the same whichever chunk was registered first (many workers
        register in any order). A third row registered later is not added to the reason."""
        self._collided.add(chunk_id)
        record = self.ledger.chunk(self.run_id, chunk_id)
        if record.state.rank < ChunkState.TRANSFORMED.rank or record.doc_checksum is None:
            return
        note = f"{len(rows)} document(s) withdrawn: chunk {by_chunk} renders their keys too"
        recount(self.ledger, self.run_id, chunk_id, note)
        names = _key_names(self.plans, record.doc_type)
        rejects = []
        for row in rows:
            described = [describe_row(by_doc.extract.primary_key, mine[row.key], by_chunk)]
            described += [
                describe_row(_key_names(self.plans, o.doc_type), o.source_key, o.chunk_id)
                for o in others.get(row.key, ())
                if (o.chunk_id, o.source_key) != (row.chunk_id, row.source_key)
            ]
            rejects.append(
                Reject(
                    record.doc_type,
                    source_key_dict(names, row.source_key),
                    row.key,
                    COLLISION_FIELD,
                    f"key collision: {len(described) + 1} rows render this document key; the "
                    f"others are {'; '.join(described)}",
                    row.source_key,
                )
            )
        self.add_rejects(chunk_id, rejects)


def rejected_rows(rejects: Sequence[Reject]) -> list[str]:
    """The rows of rejects other than collisions (whose rows are registered as withdrawn)."""
    return [r.row for r in rejects if r.field != COLLISION_FIELD and r.row]


def recount(ledger: Ledger, run_id: str, chunk_id: str, note: str) -> None:
    """Set a chunk's documents, rejects and aggregate checksum to what the register counts."""
    tally = ledger.tally(run_id, chunk_id)
    ledger.amend_documents(
        run_id,
        chunk_id,
        documents=len(tally.checksums),
        rejects=tally.rejects,
        doc_checksum=aggregate(tally.checksums),
        note=note,
    )


def describe(others: dict[str, list[Registered]], plans: dict[str, DocPlan]) -> Known:
    """Registered rows of other chunks as a build is told about them: `A=1, B=x (chunk c)`."""
    return {
        key: [describe_row(_key_names(plans, o.doc_type), o.source_key, o.chunk_id) for o in rows]
        for key, rows in others.items()
    }


def _key_names(plans: dict[str, DocPlan], doc_type: str) -> tuple[str, ...]:
    plan = plans.get(doc_type)
    return plan.extract.primary_key if plan is not None else ()


def key_texts(doc: DocPlan, keys: Sequence[tuple[Any, ...]]) -> list[str]:
    """The register's names (source-key texts) of these root keys, as the database gives them:
    the keys staged through the same normalisers as a chunk's, then the builder's text forms."""
    if not keys:
        return []
    root = doc.builder._root
    at = {name.casefold(): i for i, name in enumerate(doc.extract.primary_key)}
    columns: dict[str, pa.Array[Any]] = {}
    for name in root.spec.columns:
        info = root.table.column(name)
        if info is not None and name.casefold() in at:
            i = at[name.casefold()]
            columns[name.casefold()] = to_arrow([key[i] for key in keys], info.type, {})
    return arrow_key_texts(doc, columns, len(keys))


def arrow_key_texts(doc: DocPlan, columns: Mapping[str, pa.Array[Any]], rows: int) -> list[str]:
    """The register's names of `rows` root rows whose key columns are staged already
    (`columns`, by case-folded name; any other column of the root is not needed)."""
    root = doc.builder._root
    arrays = []
    for name in root.spec.columns:
        found = columns.get(name.casefold())
        if found is None:
            info = root.table.column(name)
            assert info is not None
            found = pa.array([None] * rows, type=arrow_type(info.type))
        arrays.append(found)
    table = pa.Table.from_arrays(arrays, names=list(root.spec.columns))
    return doc.builder.source_key_texts({root.spec.node_id: table})
