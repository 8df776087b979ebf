"""Documents and rejected rows: what transform produces and load consumes."""

from __future__ import annotations

from dataclasses import dataclass

IndexValue = str | int


@dataclass(frozen=True, slots=True)
class Document:
    """One target object: identity, canonical JSON bytes, secondary indexes and their checksum.

    `indexes` is sorted by name, each with its distinct values sorted; `checksum` is the xxh3-128
    hex digest of `value`.
    """

    bucket_type: str
    bucket: str
    key: str
    value: bytes
    indexes: tuple[tuple[str, tuple[IndexValue, ...]], ...]
    checksum: str


@dataclass(frozen=True, slots=True)
class Reject:
    """A root row that broke a rule: which row, which field, why. `key` is None when the key itself
    could not be built; `source_key` always names the root row by its primary key."""

    doc_type: str
    source_key: dict[str, str]
    key: str | None
    field: str
    reason: str


@dataclass(frozen=True, slots=True)
class BuildResult:
    documents: list[Document]
    rejects: list[Reject]
