"""The Target protocol: what every target adapter offers the pipeline."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from migrate.document import Document, IndexValue


@dataclass(frozen=True, slots=True)
class StoredObject:
    """One object as the target holds it."""

    bucket_type: str
    bucket: str
    key: str
    value: bytes
    indexes: dict[str, list[IndexValue]] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WriteStats:
    """What a write did: documents stored, and documents already stored byte-for-byte (skipped)."""

    written: int
    unchanged: int


class Target(Protocol):
    """A document store with bucket types, buckets, keys, secondary indexes and user metadata.

    Writes are idempotent: writing a document that is already stored with the same checksum costs no
    write, and writing it again never makes a second copy.
    """

    @property
    def display_url(self) -> str:
        """The URL with any secret masked, for messages."""
        ...

    def preparer(self) -> Callable[[Sequence[Document]], Sequence[Document]] | None:
        """A pure function, picklable by name, that the worker processes building a chunk apply
        to its documents: it does the target's own per-document work there and gives the same
        documents back in a form `write` takes with less work on the thread that loads. None
        where `write` takes documents as they are built."""
        ...

    def write(
        self,
        documents: Sequence[Document],
        *,
        meta: Mapping[str, str],
        first_load: bool = False,
    ) -> WriteStats:
        """Store every document (`meta` as user metadata); return once all are durable.

        `first_load`: the ledger has never seen these documents loaded (no earlier write of
        them can have begun, but an interrupted try of this same write), so a target may store
        them without first asking what it holds; the result must be the same either way."""
        ...

    def get(self, bucket_type: str, bucket: str, key: str) -> StoredObject | None: ...

    def delete(self, bucket_type: str, bucket: str, key: str) -> bool:
        """Delete one object; True when it existed."""
        ...

    def iter_bucket(self, bucket_type: str, bucket: str) -> Iterator[StoredObject]:
        """Every object of a bucket in key order (code point). Embedded target and tests only."""
        ...

    def query_index(
        self,
        bucket_type: str,
        bucket: str,
        name: str,
        value: IndexValue,
        end: IndexValue | None = None,
    ) -> list[str]:
        """Keys whose index `name` equals `value`, or lies in [value, end] when `end` is given."""
        ...

    def index_terms(
        self, bucket_type: str, bucket: str, name: str, start: IndexValue, end: IndexValue
    ) -> Iterator[tuple[IndexValue, str]]:
        """(term, key) pairs with the term in [start, end], in (term, key) order, streamed."""
        ...

    def close(self) -> None: ...
