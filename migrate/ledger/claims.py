"""The register of each run's documents: which root row renders which key, from which chunk.

Every loaded chunk registers the key of every document it built (those withdrawn because other
rows render the same key included), in the same transaction that records its transform. Two
chunks (or two document types writing one bucket) that register one key collide: the register
says so to the chunk loading second, which rejects its rows, and hands back the first chunk's
rows, which the caller withdraws from that chunk (its counts and checksum amended in the same
transaction, its document deleted from the target). Delta uses the register to find a root's
document, and the old key of a root whose key changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
import xxhash

from migrate.document import Claim
from migrate.ledger import schema as t


def identity(bucket_type: str, bucket: str, key: str) -> str:
    """A fixed-width name for a document's identity, indexed in place of the key itself."""
    data = "\x00".join((bucket_type, bucket, key)).encode("utf-8", "surrogatepass")
    return str(xxhash.xxh3_128_hexdigest(data))


@dataclass(frozen=True, slots=True)
class Registered:
    """A registered document of another chunk that renders one of a chunk's keys."""

    chunk_id: str
    doc_type: str
    source_key: str
    bucket_type: str
    bucket: str
    key: str
    checksum: str
    collided: bool  # already withdrawn from its chunk (an earlier collision)


@dataclass(frozen=True, slots=True)
class Registration:
    """What registering a chunk's documents found: per key of the chunk that other chunks also
    render, those chunks' rows; those rows that were not withdrawn yet (now marked so: the caller
    amends their chunks and deletes their documents from the target); and the documents the
    chunk's rows rendered before (an older mapping) that nothing renders now (the caller deletes
    them from the target)."""

    others: dict[str, list[Registered]]
    newly_collided: list[Registered]
    vanished: list[tuple[str, str, str]]


class ClaimStore:
    """The document register of the Ledger (mixed into it; uses its transactions)."""

    display_url: str
    version: int

    def _write(self, action: str) -> AbstractContextManager[sa.Connection]:
        raise NotImplementedError  # the Ledger provides it

    def _read(self, query: sa.Select[Any], action: str) -> list[sa.Row[Any]]:
        raise NotImplementedError  # the Ledger provides it

    def register_documents(
        self,
        run_id: str,
        chunk_id: str,
        doc_type: str,
        *,
        bucket_type: str,
        bucket: str,
        claims: Sequence[Claim],
        fingerprint: str,
        collided: set[str] | frozenset[str] = frozenset(),
    ) -> Registration:
        """Replace the chunk's registered documents with `claims`, built under `fingerprint`
        (`collided` keys registered as withdrawn), and report every other chunk's row built
        under the same fingerprint that renders one of its keys."""
        d = t.documents
        with self._write(f"registering the documents of {chunk_id}") as conn:
            before = conn.execute(
                sa.select(d.c.bucket_type, d.c.bucket, d.c.key, d.c.ident).where(
                    d.c.run_id == run_id, d.c.chunk_id == chunk_id
                )
            ).all()
            conn.execute(d.delete().where(d.c.run_id == run_id, d.c.chunk_id == chunk_id))
            if claims:
                conn.execute(
                    d.insert(),
                    [
                        {
                            "run_id": run_id,
                            "chunk_id": chunk_id,
                            "doc_type": doc_type,
                            "source_key": claim.source_key,
                            "bucket_type": bucket_type,
                            "bucket": bucket,
                            "key": claim.key,
                            "ident": identity(bucket_type, bucket, claim.key),
                            "checksum": claim.checksum,
                            "collided": claim.key in collided,
                            "fingerprint": fingerprint,
                        }
                        for claim in claims
                    ],
                )
            others = self._others(conn, run_id, chunk_id)
            fresh = [o for found in others.values() for o in found if not o.collided]
            if fresh:
                conn.execute(
                    d.update()
                    .where(
                        d.c.run_id == run_id,
                        d.c.chunk_id.in_(sorted({o.chunk_id for o in fresh})),
                        d.c.ident.in_(
                            sorted({identity(o.bucket_type, o.bucket, o.key) for o in fresh})
                        ),
                    )
                    .values(collided=True)
                )
            if others:  # this chunk's rows of those keys are withdrawn too
                conn.execute(
                    d.update()
                    .where(
                        d.c.run_id == run_id,
                        d.c.chunk_id == chunk_id,
                        d.c.ident.in_(sorted({identity(bucket_type, bucket, k) for k in others})),
                    )
                    .values(collided=True)
                )
            vanished = self._vanished(conn, run_id, before, {c.key for c in claims}, fingerprint)
        return Registration(others, fresh, vanished)

    @staticmethod
    def _vanished(
        conn: sa.Connection,
        run_id: str,
        before: Sequence[Any],
        now: set[str],
        fingerprint: str,
    ) -> list[tuple[str, str, str]]:
        """Keys the chunk's rows rendered before and render no more, which no row built under
        `fingerprint` keeps as a document."""
        gone = {row.ident: row for row in before if row.key not in now}
        if not gone:
            return []
        d = t.documents
        kept = conn.execute(
            sa.select(d.c.ident).where(
                d.c.run_id == run_id,
                d.c.ident.in_(sorted(gone)),
                d.c.fingerprint == fingerprint,
                d.c.collided.is_(False),
            )
        ).scalars()
        for ident in kept:
            gone.pop(ident, None)
        return sorted((row.bucket_type, row.bucket, row.key) for row in gone.values())

    def collisions_of(self, run_id: str, chunk_id: str) -> dict[str, list[Registered]]:
        """Per key the chunk registered that another chunk also renders, those chunks' rows."""
        with self._write(f"reading the key collisions of {chunk_id}") as conn:
            return self._others(conn, run_id, chunk_id)

    def collided_chunks(self, run_id: str) -> set[str]:
        """The run's chunks with a document withdrawn for a collision with another chunk."""
        if self.version < 3:  # read as it is, from before the register
            return set()
        d = t.documents
        query = (
            sa.select(d.c.chunk_id)
            .where(d.c.run_id == run_id, d.c.collided.is_(True))
            .group_by(d.c.chunk_id)
        )
        return {row[0] for row in self._read(query, "reading the run's key collisions")}

    def registered(self, run_id: str, chunk_id: str) -> list[Registered]:
        """A chunk's registered documents, in the order they were registered."""
        d = t.documents
        query = sa.select(d).where(d.c.run_id == run_id, d.c.chunk_id == chunk_id).order_by(d.c.id)
        rows = self._read(query, f"reading the register of {chunk_id}")
        return [_registered(row) for row in rows]

    @staticmethod
    def _others(conn: sa.Connection, run_id: str, chunk_id: str) -> dict[str, list[Registered]]:
        mine = t.documents.alias("mine")
        other = t.documents.alias("other")
        query = (
            sa.select(mine.c.key.label("mine_key"), other)
            .join(
                other,
                sa.and_(
                    other.c.run_id == mine.c.run_id,
                    other.c.ident == mine.c.ident,
                    other.c.chunk_id != mine.c.chunk_id,
                    other.c.fingerprint == mine.c.fingerprint,
                ),
            )
            .where(mine.c.run_id == run_id, mine.c.chunk_id == chunk_id)
            .order_by(other.c.chunk_id, other.c.id)
        )
        found: dict[str, list[Registered]] = {}
        seen: set[tuple[str, int]] = set()
        for row in conn.execute(query):
            key, other_id = row._mapping["mine_key"], row._mapping["id"]
            if (key, other_id) in seen:  # two rows of this chunk render the key
                continue
            seen.add((key, other_id))
            found.setdefault(key, []).append(_registered(row))
        return found


def _registered(row: sa.Row[Any]) -> Registered:
    m = row._mapping
    return Registered(
        chunk_id=m["chunk_id"],
        doc_type=m["doc_type"],
        source_key=m["source_key"],
        bucket_type=m["bucket_type"],
        bucket=m["bucket"],
        key=m["key"],
        checksum=m["checksum"],
        collided=bool(m["collided"]),
    )
