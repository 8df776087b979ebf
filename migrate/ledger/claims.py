"""The register of each run's documents: which root row renders which key, from which chunk.

Every loaded chunk registers each of its root rows, in the transaction that records its
transform: `live` with the key and checksum of its document, `collided` when its key is also
rendered by another row (its document withdrawn), or `rejected` when it broke another rule. A
chunk's documents, rejects and aggregate checksum can therefore always be counted again from the
register (`tally`), which is how later corrections (a collision found by a later chunk, a delta)
keep the chunk's record exact.

Two chunks that register one key collide: the register reports it to the chunk loading second,
which rejects its rows and withdraws the first chunk's (marked `collided` in the same
transaction; the caller recounts that chunk and deletes its document from the target). Rows of an
older mapping (another transform fingerprint) never collide with newer ones. Delta replaces the
rows of the roots it rebuilt (`replace_roots`), and learns from it which withdrawn rows are left
alone on their key (`released`): they must be built and written again.
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

LIVE, COLLIDED, REJECTED = "live", "collided", "rejected"


def identity(bucket_type: str, bucket: str, key: str) -> str:
    """A fixed-width name for a document's identity, indexed in place of the key itself."""
    data = "\x00".join((bucket_type, bucket, key)).encode("utf-8", "surrogatepass")
    return str(xxhash.xxh3_128_hexdigest(data))


@dataclass(frozen=True, slots=True)
class Registered:
    """A registered root row."""

    chunk_id: str
    doc_type: str
    source_key: str
    bucket_type: str
    bucket: str
    key: str
    checksum: str
    state: str

    @property
    def collided(self) -> bool:
        return self.state == COLLIDED


@dataclass(frozen=True, slots=True)
class Registration:
    """What registering rows found: per key of theirs that other rows also render, those rows;
    those rows that were live until now (now `collided`: the caller recounts their chunks and
    deletes their documents); the documents the replaced rows rendered before that nothing renders
    now (the caller deletes them); and withdrawn rows now alone on their key (`released`: the
    caller builds and writes them again)."""

    others: dict[str, list[Registered]]
    newly_collided: list[Registered]
    vanished: list[tuple[str, str, str]]
    released: list[Registered]


@dataclass(frozen=True, slots=True)
class Tally:
    """A chunk counted from the register: its live documents' checksums, and its rejects."""

    checksums: list[str]
    rejects: int


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
        rejected: Sequence[str] = (),
    ) -> Registration:
        """Replace the chunk's registered rows with `claims` (built under `fingerprint`; those
        whose key is in `collided` withdrawn) and the `rejected` rows (source keys)."""
        d = t.documents
        where = [d.c.run_id == run_id, d.c.chunk_id == chunk_id]
        with self._write(f"registering the documents of {chunk_id}") as conn:
            return self._replace(
                conn,
                where,
                run_id,
                chunk_id,
                doc_type,
                (bucket_type, bucket),
                claims,
                fingerprint,
                collided,
                rejected,
            )

    def replace_roots(
        self,
        run_id: str,
        chunk_id: str,
        doc_type: str,
        *,
        bucket_type: str,
        bucket: str,
        roots: Sequence[str],
        claims: Sequence[Claim],
        fingerprint: str,
        collided: set[str] | frozenset[str] = frozenset(),
        rejected: Sequence[str] = (),
    ) -> Registration:
        """Replace the registered rows of the document type's `roots` (source keys) with their
        new `claims` and `rejected` rows, in chunk `chunk_id` (a delta's rebuild). A root in
        `roots` with neither is gone from the source (or left out by the mapping's `where`)."""
        d = t.documents
        with self._write(f"registering rebuilt documents of {chunk_id}") as conn:
            registration = Registration({}, [], [], [])
            for start in range(0, len(roots), _BATCH):
                batch = list(roots[start : start + _BATCH])
                wanted = set(batch)
                where = [d.c.run_id == run_id, d.c.doc_type == doc_type, d.c.source_key.in_(batch)]
                found = self._replace(
                    conn,
                    where,
                    run_id,
                    chunk_id,
                    doc_type,
                    (bucket_type, bucket),
                    [c for c in claims if c.source_key in wanted],
                    fingerprint,
                    collided,
                    [r for r in rejected if r in wanted],
                )
                registration = _merged(registration, found)
            return registration

    def _replace(  # noqa: PLR0917 (one private step shared by the two public forms)
        self,
        conn: sa.Connection,
        where: list[Any],
        run_id: str,
        chunk_id: str,
        doc_type: str,
        bucket: tuple[str, str],
        claims: Sequence[Claim],
        fingerprint: str,
        collided: set[str] | frozenset[str],
        rejected: Sequence[str],
    ) -> Registration:
        d = t.documents
        before = [_registered(row) for row in conn.execute(sa.select(d).where(*where))]
        conn.execute(d.delete().where(*where))
        rows = [
            _row(run_id, chunk_id, doc_type, bucket, c.source_key, c.key, c.checksum, fingerprint,
                 COLLIDED if c.key in collided else LIVE)
            for c in claims
        ]  # fmt: skip
        rows += [
            _row(run_id, chunk_id, doc_type, bucket, source_key, "", "", fingerprint, REJECTED)
            for source_key in rejected
        ]
        if rows:
            conn.execute(d.insert(), rows)
        mine = {identity(*bucket, c.key) for c in claims}
        others = {
            key: [o for o in found if (o.chunk_id, o.source_key) not in _keys_of(claims, chunk_id)]
            for key, found in self._others(conn, run_id, mine, fingerprint).items()
        }
        others = {key: found for key, found in others.items() if found}
        fresh = [o for found in others.values() for o in found if o.state == LIVE]
        if fresh:
            self._mark(conn, run_id, fresh, COLLIDED)
        if others:  # this chunk's rows of those keys are withdrawn too
            mine_clashing = [c for c in claims if c.key in others]
            conn.execute(
                d.update()
                .where(
                    d.c.run_id == run_id,
                    d.c.doc_type == doc_type,
                    d.c.source_key.in_(sorted({c.source_key for c in mine_clashing})),
                    d.c.ident.in_(sorted({identity(*bucket, c.key) for c in mine_clashing})),
                )
                .values(state=COLLIDED)
            )
        now = {c.key for c in claims}
        gone = [r for r in before if r.key and r.key not in now]
        vanished = self._vanished(conn, run_id, gone, fingerprint)
        released = self._released(conn, run_id, [r for r in gone if r.state == COLLIDED])
        return Registration(others, fresh, vanished, released)

    def tally(self, run_id: str, chunk_id: str) -> Tally:
        """The chunk's live checksums and rejects, counted from the register."""
        d = t.documents
        query = sa.select(d.c.state, d.c.checksum).where(
            d.c.run_id == run_id, d.c.chunk_id == chunk_id
        )
        with self._write(f"counting the register of {chunk_id}") as conn:
            rows = conn.execute(query).all()
        return Tally(
            [checksum for state, checksum in rows if state == LIVE],
            sum(1 for state, _ in rows if state != LIVE),
        )

    def roots(self, run_id: str, doc_type: str, source_keys: Sequence[str]) -> list[Registered]:
        """The registered rows of these roots (source keys) of the document type."""
        d = t.documents
        found: list[Registered] = []
        with self._write("reading the register") as conn:
            for start in range(0, len(source_keys), _BATCH):
                batch = list(source_keys[start : start + _BATCH])
                query = sa.select(d).where(
                    d.c.run_id == run_id, d.c.doc_type == doc_type, d.c.source_key.in_(batch)
                )
                found += [_registered(row) for row in conn.execute(query)]
        return found

    def collisions_of(self, run_id: str, chunk_id: str) -> dict[str, list[Registered]]:
        """Per key the chunk registered that rows of other chunks also render, those rows."""
        d = t.documents
        with self._write(f"reading the key collisions of {chunk_id}") as conn:
            mine = conn.execute(
                sa.select(d.c.ident, d.c.fingerprint, d.c.source_key).where(
                    d.c.run_id == run_id, d.c.chunk_id == chunk_id, d.c.state != REJECTED
                )
            ).all()
            if not mine:
                return {}
            fingerprint = mine[0][1]
            found = self._others(conn, run_id, {row[0] for row in mine}, fingerprint)
        return {
            key: [o for o in rows if o.chunk_id != chunk_id]
            for key, rows in found.items()
            if any(o.chunk_id != chunk_id for o in rows)
        }

    def collided_chunks(self, run_id: str) -> set[str]:
        """The run's chunks with a row withdrawn for a collision."""
        if self.version < 3:  # read as it is, from before the register
            return set()
        d = t.documents
        query = (
            sa.select(d.c.chunk_id)
            .where(d.c.run_id == run_id, d.c.state == COLLIDED)
            .group_by(d.c.chunk_id)
        )
        return {row[0] for row in self._read(query, "reading the run's key collisions")}

    def collided_keys(self, run_id: str, chunk_id: str) -> set[str]:
        """The keys of the chunk's rows withdrawn for a collision, as registered now (read in the
        caller's transaction, when there is one)."""
        d = t.documents
        query = sa.select(d.c.key).where(
            d.c.run_id == run_id, d.c.chunk_id == chunk_id, d.c.state == COLLIDED
        )
        with self._write(f"reading the key collisions of {chunk_id}") as conn:
            return set(conn.execute(query).scalars())

    def registered(self, run_id: str, chunk_id: str) -> list[Registered]:
        """A chunk's registered rows, in the order they were registered."""
        d = t.documents
        query = sa.select(d).where(d.c.run_id == run_id, d.c.chunk_id == chunk_id).order_by(d.c.id)
        rows = self._read(query, f"reading the register of {chunk_id}")
        return [_registered(row) for row in rows]

    def registered_roots(self, run_id: str, chunk_id: str) -> set[str]:
        """The source keys of a chunk's registered rows."""
        d = t.documents
        query = sa.select(d.c.source_key).where(d.c.run_id == run_id, d.c.chunk_id == chunk_id)
        return {row[0] for row in self._read(query, f"reading the register of {chunk_id}")}

    # -- helpers ---------------------------------------------------------------------------------

    @staticmethod
    def _others(
        conn: sa.Connection, run_id: str, idents: set[str], fingerprint: str
    ) -> dict[str, list[Registered]]:
        """Every registered row (any chunk, any root) rendering one of `idents` under the same
        fingerprint, by key."""
        d = t.documents
        rows: list[sa.Row[Any]] = []
        ordered = sorted(idents)
        for start in range(0, len(ordered), _BATCH):
            # Sorted here, not by the database: with an ORDER BY on (chunk, id), SQLite's
            # planner walks the run's whole (run, chunk) index instead of looking the keys up.
            query = sa.select(d).where(
                d.c.run_id == run_id,
                d.c.ident.in_(ordered[start : start + _BATCH]),
                d.c.fingerprint == fingerprint,
                d.c.state != REJECTED,
            )
            rows += conn.execute(query).all()
        found: dict[str, list[Registered]] = {}
        for row in sorted(rows, key=lambda r: (r._mapping["chunk_id"], r._mapping["id"])):
            registered = _registered(row)
            found.setdefault(registered.key, []).append(registered)
        return {key: same for key, same in found.items() if len(same) > 1}

    @staticmethod
    def _mark(conn: sa.Connection, run_id: str, rows: Sequence[Registered], state: str) -> None:
        d = t.documents
        for row in rows:
            conn.execute(
                d.update()
                .where(
                    d.c.run_id == run_id,
                    d.c.chunk_id == row.chunk_id,
                    d.c.source_key == row.source_key,
                    d.c.ident == identity(row.bucket_type, row.bucket, row.key),
                )
                .values(state=state)
            )

    @staticmethod
    def _vanished(
        conn: sa.Connection, run_id: str, gone: Sequence[Registered], fingerprint: str
    ) -> list[tuple[str, str, str]]:
        """Keys replaced rows rendered and render no more, which no live row built under
        `fingerprint` keeps as a document."""
        by_ident = {identity(r.bucket_type, r.bucket, r.key): r for r in gone}
        if not by_ident:
            return []
        d = t.documents
        kept = conn.execute(
            sa.select(d.c.ident).where(
                d.c.run_id == run_id,
                d.c.ident.in_(sorted(by_ident)),
                d.c.fingerprint == fingerprint,
                d.c.state == LIVE,
            )
        ).scalars()
        for ident in kept:
            by_ident.pop(ident, None)
        return sorted((r.bucket_type, r.bucket, r.key) for r in by_ident.values())

    @staticmethod
    def _released(conn: sa.Connection, run_id: str, gone: Sequence[Registered]) -> list[Registered]:
        """Withdrawn rows left alone on a key that a replaced row rendered before."""
        d = t.documents
        released: list[Registered] = []
        for row in gone:
            rest = [
                _registered(found)
                for found in conn.execute(
                    sa.select(d).where(
                        d.c.run_id == run_id,
                        d.c.ident == identity(row.bucket_type, row.bucket, row.key),
                        d.c.state != REJECTED,
                    )
                )
            ]
            if len(rest) == 1 and rest[0].state == COLLIDED:
                released.append(rest[0])
        return released


_BATCH = 500  # values per IN list


def _keys_of(claims: Sequence[Claim], chunk_id: str) -> set[tuple[str, str]]:
    return {(chunk_id, c.source_key) for c in claims}


def _merged(a: Registration, b: Registration) -> Registration:
    others = dict(a.others)
    for key, rows in b.others.items():
        others.setdefault(key, []).extend(rows)
    return Registration(
        others,
        [*a.newly_collided, *b.newly_collided],
        [*a.vanished, *b.vanished],
        [*a.released, *b.released],
    )


def _row(  # noqa: PLR0917 (one row's columns, in table order)
    run_id: str,
    chunk_id: str,
    doc_type: str,
    bucket: tuple[str, str],
    source_key: str,
    key: str,
    checksum: str,
    fingerprint: str,
    state: str,
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "chunk_id": chunk_id,
        "doc_type": doc_type,
        "source_key": source_key,
        "bucket_type": bucket[0],
        "bucket": bucket[1],
        "key": key,
        "ident": identity(bucket[0], bucket[1], key),
        "checksum": checksum,
        "state": state,
        "fingerprint": fingerprint,
    }


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
        state=m["state"],
    )
