"""Locks that keep a run exact when many processes, on many hosts, load its chunks at once.

A local run has one loader thread, and a SQLite ledger one writer at a time, so neither lock is
needed there and both cost nothing on SQLite. On a PostgreSQL ledger shared by the workers of a
distributed executor:

- `claim_chunk`: one attempt at a chunk at a time. Dask runs a chunk again when its worker dies,
  and a worker it only lost touch with may still be at work: the second attempt waits for the
  first to end (or for its connection to drop, which releases the lock), then reads what the
  ledger recorded and goes on from there, so two attempts never stage, record or write one
  chunk together. A session lock, held on a connection of its own for the chunk's length.
- `lock_register`: one chunk registering its documents at a time, across the run. Two chunks
  rendering one key, registered at once under READ COMMITTED, would each miss the other's rows;
  serialised, the second always sees the first (`migrate.register`). A transaction lock, held
  until the caller's transaction ends.

PostgreSQL keeps the two-key and the one-key forms of advisory locks apart, so a chunk's claim
can never be mistaken for a register lock.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import AbstractContextManager

import sqlalchemy as sa
import xxhash

from migrate.ledger.engine import translate_errors


def _signed(value: int, bits: int) -> int:
    """An unsigned hash as the signed integer PostgreSQL's lock functions take."""
    half = 1 << (bits - 1)
    return value - (1 << bits) if value >= half else value


def chunk_keys(run_id: str, chunk_id: str) -> tuple[int, int]:
    """The two-key advisory lock of a chunk of a run."""
    digest = xxhash.xxh3_64_intdigest(f"{run_id}\x00{chunk_id}".encode())
    return _signed(digest >> 32, 32), _signed(digest & 0xFFFFFFFF, 32)


def register_key(run_id: str) -> int:
    """The one-key advisory lock of a run's register."""
    return _signed(xxhash.xxh3_64_intdigest(f"register\x00{run_id}".encode()), 64)


class LockStore:
    """The ledger's locks across processes (mixed into the Ledger)."""

    display_url: str
    _engine: sa.Engine

    def _write(self, action: str) -> AbstractContextManager[sa.Connection]:
        raise NotImplementedError  # the Ledger provides it

    @property
    def shared(self) -> bool:
        """Whether processes on other hosts can share this ledger (PostgreSQL, not a file)."""
        return self._engine.dialect.name == "postgresql"

    @contextlib.contextmanager
    def claim_chunk(self, run_id: str, chunk_id: str) -> Iterator[None]:
        """Hold the chunk's claim while the block runs (waiting for another holder to end)."""
        if not self.shared:
            yield
            return
        first, second = chunk_keys(run_id, chunk_id)
        with translate_errors(self.display_url, f"claiming {chunk_id}"):
            conn = self._engine.connect()
        try:
            with translate_errors(self.display_url, f"claiming {chunk_id}"):
                conn.execute(sa.select(sa.func.pg_advisory_lock(first, second)))
                conn.commit()  # the session keeps the lock; no transaction stays open
            yield
        finally:
            try:
                conn.execute(sa.select(sa.func.pg_advisory_unlock(first, second)))
                conn.commit()
            except sa.exc.SQLAlchemyError:
                conn.invalidate()  # a broken session released its locks with it
            finally:
                conn.close()

    def lock_register(self, run_id: str) -> None:
        """Take the run's register lock in the caller's transaction (`Ledger.together`)."""
        if not self.shared:
            return
        with self._write(f"locking the register of run {run_id}") as conn:
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(register_key(run_id))))


__all__ = ["LockStore", "chunk_keys", "register_key"]
