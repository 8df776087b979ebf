"""The embedded target's per-document work before a write, which worker processes can do.

A batch of documents is checked (identities, index terms) and laid out as the rows its write
stores: one object row per document, and the index entries grouped by index name, so the write
hands each group to SQLite as it is, with no Python per entry on the one thread that writes.
`prepare_documents` runs in the workers that build a chunk (the pipeline asks the target for it);
`LocalTarget.write` prepares whatever arrives unprepared, so both paths store the same rows.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence
from typing import Any, cast, overload

import msgspec

from migrate.document import Document, IndexValue
from migrate.errors import TargetError

INT_MIN, INT_MAX = -(2**63), 2**63 - 1

# (bucket_type, bucket, key, checksum, indexes text, value): an object row, less its metadata.
ObjectRow = tuple[str, str, str, str, str, bytes]
# (bucket_type, bucket, index name) -> (term, key) for every entry of the batch under that name.
Entries = dict[tuple[str, str, str], list[tuple[IndexValue, str]]]


class PreparedDocuments(Sequence[Document]):
    """A checked batch of documents with distinct identities, as the rows its write stores.

    It is still a sequence of the documents (made again from the rows when read as one), so any
    target or wrapper that takes documents takes it; the embedded target writes its rows."""

    __slots__ = ("entries", "rows")

    def __init__(self, rows: list[ObjectRow], entries: Entries) -> None:
        self.rows = rows
        self.entries = entries

    def __reduce__(self) -> tuple[Any, ...]:
        return (PreparedDocuments, (self.rows, self.entries))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PreparedDocuments):
            return NotImplemented
        return self.rows == other.rows and self.entries == other.entries

    __hash__ = None  # type: ignore[assignment]

    def __len__(self) -> int:
        return len(self.rows)

    @overload
    def __getitem__(self, index: int) -> Document: ...

    @overload
    def __getitem__(self, index: slice) -> list[Document]: ...

    def __getitem__(self, index: int | slice) -> Document | list[Document]:
        if isinstance(index, slice):
            return [_document(row) for row in self.rows[index]]
        return _document(self.rows[index])

    def __iter__(self) -> Iterator[Document]:
        return map(_document, self.rows)


def _document(row: ObjectRow) -> Document:
    bucket_type, bucket, key, checksum, indexes_text, value = row
    indexes = json.loads(indexes_text)
    return Document(
        bucket_type,
        bucket,
        key,
        value,
        tuple((name, tuple(terms)) for name, terms in indexes.items()),
        checksum,
    )


def prepare_documents(documents: Sequence[Document]) -> Sequence[Document]:
    """For worker processes: the batch prepared, or the documents as they came where the write
    must see them itself (a key twice, or a document it refuses, which it then reports)."""
    try:
        prepared = prepare(documents)
    except TargetError:
        return documents
    return documents if prepared is None else prepared


def prepare(documents: Sequence[Document]) -> PreparedDocuments | None:
    """Check every document and lay the batch out as rows; None when an identity repeats (the
    write then stores the documents one by one, in order). Raises TargetError for a document
    the store cannot hold."""
    if isinstance(documents, PreparedDocuments):
        return documents
    rows: list[ObjectRow] = []
    by_bucket: dict[tuple[str, str], dict[str, list[tuple[IndexValue, str]]]] = {}
    kinds: dict[str, type] = {}  # by index name: the type its terms must have
    encode = msgspec.json.encode
    for document in documents:
        bucket_type, bucket, key = document.bucket_type, document.bucket, document.key
        groups = by_bucket.get((bucket_type, bucket))
        if groups is None:
            check_identity(bucket_type, bucket)
            groups = by_bucket[(bucket_type, bucket)] = {}
        if type(key) is not str or not key or not key.isascii():
            check_identity(bucket_type, bucket, key)
        if not isinstance(document.value, bytes):
            raise TargetError(
                f"document {bucket_type}/{bucket}/{key}: the value is "
                f"{type(document.value).__name__}, not bytes",
                hint="this is a bug in the document builder worth reporting",
            )
        indexes = _canonical_terms(document, kinds)
        if indexes is None:
            indexes = index_terms(document)
        rows.append(
            (bucket_type, bucket, key, document.checksum, encode(indexes).decode(), document.value)
        )
        for name, terms in indexes.items():
            pairs = groups.get(name)
            if pairs is None:
                pairs = groups[name] = []
            if len(terms) == 1:
                pairs.append((terms[0], key))
            else:
                pairs.extend([(term, key) for term in terms])
    if len({(row[0], row[1], row[2]) for row in rows}) != len(rows):
        return None
    entries = {
        (bucket_type, bucket, name): pairs
        for (bucket_type, bucket), groups in by_bucket.items()
        for name, pairs in groups.items()
    }
    return PreparedDocuments(rows, entries)


def _canonical_terms(
    document: Document, kinds: dict[str, type]
) -> dict[str, Sequence[IndexValue]] | None:
    """The document's indexes as they are, when they are in the stored form already (names in
    order, terms distinct, sorted and of their name's type, as the builder makes them); None
    for `index_terms` to check and mend them."""
    indexes: dict[str, Sequence[IndexValue]] = {}
    previous = ""
    for name, values in document.indexes:
        if not values:
            continue
        kind = kinds.get(name)
        if kind is None:
            kind = kinds[name] = (
                str if name.endswith("_bin") else int if name.endswith("_int") else _NoKind
            )
        if len(values) == 1:
            value = values[0]
            if type(value) is not kind or (
                kind is int and not INT_MIN <= cast(int, value) <= INT_MAX
            ):
                return None
        elif not _in_form(values, kind):
            return None
        if name <= previous:
            return None
        previous = name
        indexes[name] = values
    return indexes


class _NoKind:
    """The type no term has: a name ending in neither _bin nor _int."""


def _in_form(values: Sequence[IndexValue], kind: type) -> bool:
    """Several terms of one name as stored: of the name's type (integers within 64 bits),
    increasing."""
    if not all(type(value) is kind for value in values) or not _increasing(values):
        return False
    return kind is not int or (cast(int, values[0]) >= INT_MIN and cast(int, values[-1]) <= INT_MAX)


def check_identity(bucket_type: str, bucket: str, key: str | None = None) -> None:
    """Riak refuses empty names, and SQLite cannot store text that is not valid Unicode."""
    if _plain(bucket_type) and _plain(bucket) and (key is None or _plain(key)):
        return
    named = [("bucket type", bucket_type), ("bucket", bucket)]
    for label, text in [*named, ("key", key)] if key is not None else named:
        if not isinstance(text, str) or not text:
            raise TargetError(
                f"an empty {label} was given ({bucket_type}/{bucket}/{key})",
                hint="bucket types, buckets and keys must be non-empty text",
            )
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise TargetError(
                f"the {label} of {bucket_type!r}/{bucket!r} is not valid Unicode text",
                hint="keys are built from text columns; check the key template's columns",
            ) from exc


def _plain(text: object) -> bool:
    """Non-empty ASCII text: valid without encoding it (the common case, checked cheaply)."""
    return type(text) is str and text != "" and text.isascii()


def check_term(name: str, value: object, where: str) -> None:
    """Check that `value` has the type of index `name` (text for _bin, integers for _int)."""
    if name.endswith("_bin"):
        if isinstance(value, str):
            return
        raise TargetError(f"{where}: a _bin index takes text, not {type(value).__name__}")
    if name.endswith("_int"):
        if isinstance(value, int) and not isinstance(value, bool):
            if not INT_MIN <= value <= INT_MAX:
                raise TargetError(
                    f"{where}: an integer is beyond the 64-bit range the embedded target holds",
                    hint="use a _bin index for values this large",
                )
            return
        raise TargetError(f"{where}: an _int index takes integers, not {type(value).__name__}")
    raise TargetError(
        f"{where}: index names end in _bin or _int", hint="rename the index in the mapping file"
    )


def index_terms(document: Document) -> dict[str, Sequence[IndexValue]]:
    """Distinct, sorted terms per index name, names in order, each checked against its name's
    type. Documents from the builder are in that form already and are taken as they are."""
    indexes: dict[str, Sequence[IndexValue]] = {}
    previous = ""
    canonical = True
    for name, values in document.indexes:
        kind = str if name.endswith("_bin") else int if name.endswith("_int") else None
        for value in values:
            if type(value) is not kind or (type(value) is int and not INT_MIN <= value <= INT_MAX):
                where = f"{document.bucket_type}/{document.bucket}/{document.key}"
                check_term(name, value, f"document {where}, index {name}")
                canonical = False  # a subclass of str or int: made plain below
        if not values:
            continue
        if name <= previous or (len(values) > 1 and not _increasing(values)):
            canonical = False
        previous = name
        indexes[name] = values
    if canonical:
        return indexes
    merged: dict[str, set[IndexValue]] = {}
    for name, values in document.indexes:
        merged.setdefault(name, set()).update(
            str(value) if isinstance(value, str) else int(value) for value in values
        )
    # One index holds only text or only integers, so terms sort without a key.
    return {name: sorted(merged[name]) for name in sorted(merged) if merged[name]}


def _increasing(values: Sequence[IndexValue]) -> bool:
    return all(a < b for a, b in itertools.pairwise(values))  # type: ignore[operator]
