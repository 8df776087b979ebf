"""Documents and rejected rows: what transform produces and load consumes."""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

IndexValue = str | int


class Document(msgspec.Struct, frozen=True, gc=False):
    """One target object: identity, canonical JSON bytes, secondary indexes and their checksum.

    `indexes` is sorted by name, each with its distinct values sorted; `checksum` is the xxh3-128
    hex digest of `value`.

    A frozen msgspec Struct rather than a frozen dataclass: every document is made about three
    times (built, given its chunk index entry, made again from tuples on the loader's side of the
    process pool), and a Struct is made in a tenth of the time. It holds only text, bytes and
    tuples of them, so it can never be part of a reference cycle and stays out of the cyclic
    garbage collector.
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
    # The root row as the ledger's register names it (`DocumentBuilder.source_key_texts`).
    row: str = ""


@dataclass(frozen=True, slots=True)
class Claim:
    """One built document's claim on its key, as the ledger registers it for the run."""

    key: str
    source_key: str  # the root row: a JSON array of its key columns' text forms
    checksum: str


@dataclass(frozen=True, slots=True)
class BuildResult:
    """A chunk's documents and rejects, both in root primary-key order; `source_keys[i]` names
    the root row of `documents[i]` (a JSON array of its key columns' text forms)."""

    documents: list[Document]
    rejects: list[Reject]
    source_keys: list[str]
    # Documents withdrawn because other rows render their key (`migrate.mapping.collisions`).
    collided: list[Claim] = field(default_factory=list)
