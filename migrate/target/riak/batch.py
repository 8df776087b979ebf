"""Riak's per-document work before a write, which worker processes can do: each document's
request parts (its percent-encoded path, its index and checksum header lines) are made where the
chunk is built, so the process that loads only sends them.

`plan_documents` is RiakTarget's preparer; `RiakTarget.write` plans whatever arrives unplanned
with the same function, so both paths send the same requests.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any, overload

from migrate.document import Document
from migrate.errors import TargetError
from migrate.target.riak.client import segment
from migrate.target.riak.loader import Planned
from migrate.target.riak.objects import INDEX_NAME, header_block, index_headers, object_path

# What `index_headers` refuses in a text index value, in one scan: a comma or a control
# character anywhere, white space at either end.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f,]|^\s|\s$")

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
    planner = Planner()
    try:
        parts = [planner.parts(doc) for doc in documents]
    except TargetError:
        return documents
    return PlannedDocuments(list(documents), parts)


class Planner:
    """`request_parts` for the documents of one batch, which share a few buckets and index
    names: each bucket's path prefix and each index name's check and header prefix are made
    once, and a text value takes one scan for anything Riak's HTTP API would split, strip or
    refuse. Anything that scan finds, and any other doubt, goes to `request_parts` itself, which
    refuses it with its own message; held equal to it by a property test. About 4.7 us a
    document instead of 6.6 (the bench's shop customers: three indexes and the chunk index)."""

    __slots__ = ("_names", "_prefixes")

    def __init__(self) -> None:
        self._prefixes: dict[tuple[str, str], str] = {}
        self._names: dict[str, tuple[bool, str]] = {}  # index name: (integer, header prefix)

    def parts(self, doc: Document) -> Parts:
        bucket = (doc.bucket_type, doc.bucket)
        prefix = self._prefixes.get(bucket)
        if prefix is None:
            if not doc.bucket_type or not doc.bucket:
                return request_parts(doc)
            prefix = f"/types/{segment(doc.bucket_type)}/buckets/{segment(doc.bucket)}/keys/"
            self._prefixes[bucket] = prefix
        if not doc.key:
            return request_parts(doc)
        lines = []
        for name, values in doc.indexes:
            known = self._names.get(name)
            if known is None:
                if not INDEX_NAME.match(name):
                    return request_parts(doc)
                known = self._names[name] = (name.endswith("_int"), f"X-Riak-Index-{name}: ")
            integer, head = known
            if integer:
                if any(type(value) is not int for value in values):
                    return request_parts(doc)  # bool, int subclasses, text: its own checks
                texts = [str(value) for value in values]
            else:
                texts = [str(value) for value in values]
                if any(not text or _UNSAFE.search(text) for text in texts):
                    return request_parts(doc)
            if texts:
                lines.append(f"{head}{', '.join(texts)}\r\n")
        lines.append(f"X-Riak-Meta-Migrate-Checksum: {doc.checksum}\r\n")
        return prefix + segment(doc.key), "".join(lines).encode("utf-8")


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
