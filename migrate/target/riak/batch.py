"""Riak's per-document work before a write, which worker processes can do: each document's
request parts (its percent-encoded path, its index and checksum header lines) are made where the
chunk is built, so the process that loads only sends them.

`plan_documents` is RiakTarget's preparer; `RiakTarget.write` plans whatever arrives unplanned
with the same function, so both paths send the same requests.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, overload

from migrate.document import Document
from migrate.errors import TargetError
from migrate.target.riak.loader import Planned
from migrate.target.riak.objects import header_block, index_headers, object_path

# (path, header lines): a document's request parts, less what each write adds (its quorum
# query, its metadata and authorization headers).
Parts = tuple[str, bytes]


class PlannedDocuments(Sequence[Document]):
    """Documents with their request parts made already; still a sequence of the documents, so
    any target or wrapper that takes documents takes it."""

    __slots__ = ("documents", "parts")

    def __init__(self, documents: list[Document], parts: list[Parts]) -> None:
        self.documents = documents
        self.parts = parts

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as plain tuples, as `TransformOutput` sends documents (a third faster than the
        Structs' own reduce)."""
        rows = [
            (d.bucket_type, d.bucket, d.key, d.value, d.indexes, d.checksum) for d in self.documents
        ]
        return (_planned_documents, (rows, self.parts))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PlannedDocuments):
            return NotImplemented
        return self.documents == other.documents and self.parts == other.parts

    __hash__ = None  # type: ignore[assignment]

    def __len__(self) -> int:
        return len(self.documents)

    @overload
    def __getitem__(self, index: int) -> Document: ...

    @overload
    def __getitem__(self, index: slice) -> list[Document]: ...

    def __getitem__(self, index: int | slice) -> Document | list[Document]:
        return self.documents[index]

    def __iter__(self) -> Iterator[Document]:
        return iter(self.documents)

    def plans(self) -> list[Planned]:
        """A fresh plan per document for one write (plans carry the write's own state)."""
        return [
            Planned(doc, path, path.encode("ascii"), headers)
            for doc, (path, headers) in zip(self.documents, self.parts, strict=True)
        ]


def _planned_documents(rows: list[tuple[Any, ...]], parts: list[Parts]) -> PlannedDocuments:
    return PlannedDocuments([Document(*row) for row in rows], parts)


def plan_documents(documents: Sequence[Document]) -> Sequence[Document]:
    """For worker processes: the documents with their request parts, or the documents as they
    came where the write must refuse one (it then reports it, as it would have)."""
    try:
        parts = [request_parts(doc) for doc in documents]
    except TargetError:
        return documents
    return PlannedDocuments(list(documents), parts)


def plans_of(documents: Sequence[Document]) -> list[Planned]:
    """The plans of one write; raises TargetError for a document Riak cannot take, before any
    request is sent."""
    if isinstance(documents, PlannedDocuments):
        return documents.plans()
    plans = []
    for doc in documents:
        path, headers = request_parts(doc)
        plans.append(Planned(doc, path, path.encode("ascii"), headers))
    return plans


def request_parts(doc: Document) -> Parts:
    """A document's path and header lines (its indexes and checksum); raises TargetError for a
    name or value Riak cannot take."""
    path = object_path(doc.bucket_type, doc.bucket, doc.key)
    headers = [*index_headers(doc), ("X-Riak-Meta-Migrate-Checksum", doc.checksum)]
    return path, header_block(headers)
