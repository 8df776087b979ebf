"""Riak objects as HTTP headers: paths, index and metadata headers, and reading them back.

Pure functions shared by the write engine (`loader`) and the reads (`store`). Everything a
document would send is validated here before any request, so a bad index value refuses the whole
write up front instead of failing half-way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from migrate.document import Document, IndexValue
from migrate.errors import TargetError
from migrate.target.riak.answers import Reply
from migrate.target.riak.client import segment

CHECKSUM_META = "migrate-checksum"
JSON_TYPE = "application/json; charset=utf-8"
INDEX_NAME = re.compile(r"^[a-z0-9_]+_(bin|int)$")
_META_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SPLIT_OR_STRIPPED = re.compile(r",|^\s|\s$")


def missing(reply: Reply, url: str, path: str) -> bool:
    """True for Riak's 404 "not found" of an object; a 404 for another reason is an error."""
    if reply.status != 404:
        return False
    text = reply.body.decode("utf-8", errors="replace").strip()
    if text and text != "not found":
        raise TargetError(
            f"Riak at {url} answered 404 to {path}: {text[:200]}",
            hint="create and activate the bucket type (riak admin bucket-type create/activate)",
        )
    return True


def object_path(bucket_type: str, bucket: str, key: str) -> str:
    if not key or not bucket or not bucket_type:
        raise TargetError(f"empty bucket type, bucket or key in {bucket_type}/{bucket}/{key}")
    return f"/types/{segment(bucket_type)}/buckets/{segment(bucket)}/keys/{segment(key)}"


def meta_headers(meta: Mapping[str, str]) -> list[tuple[str, str]]:
    headers = []
    for name, value in meta.items():
        if not _META_NAME.match(name) or name.lower() == CHECKSUM_META:
            raise TargetError(
                f"metadata name {name!r} cannot be sent to Riak",
                hint="use letters, digits and '-'; migrate-checksum is set by the target itself",
            )
        if _CONTROL.search(str(value)):
            raise TargetError(f"metadata {name} holds control characters")
        headers.append((f"X-Riak-Meta-{name}", str(value)))
    return headers


def index_headers(doc: Document) -> list[tuple[str, str]]:
    """One `X-Riak-Index-NAME` header per index, its values comma-separated as Riak splits them."""
    headers = []
    for name, values in doc.indexes:
        where = _Where(doc, name)
        if not INDEX_NAME.match(name):
            raise TargetError(f"{where}: not a Riak index name", hint="end it in _bin or _int")
        texts = []
        for value in values:
            if name.endswith("_int"):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise TargetError(f"{where}: an entry is not an integer")
                texts.append(str(value))
                continue
            text = str(value)
            if not text or _SPLIT_OR_STRIPPED.search(text):
                raise TargetError(
                    f"{where}: an entry has a comma or leading/trailing spaces, which Riak's HTTP "
                    "API would split or strip",
                    hint="derive the index from a column without commas, or normalise it",
                )
            if _CONTROL.search(text):
                raise TargetError(f"{where}: an entry holds control characters")
            texts.append(text)
        if texts:
            headers.append((f"X-Riak-Index-{name}", ", ".join(texts)))
    return headers


class _Where:
    """The document and index an error names, rendered only when there is an error."""

    __slots__ = ("doc", "name")

    def __init__(self, doc: Document, name: str) -> None:
        self.doc, self.name = doc, name

    def __str__(self) -> str:
        doc = self.doc
        return f"document {doc.bucket_type}/{doc.bucket}/{doc.key}, index {self.name}"


def parse_headers(reply: Reply) -> tuple[dict[str, list[IndexValue]], dict[str, str]]:
    indexes: dict[str, list[IndexValue]] = {}
    meta: dict[str, str] = {}
    for name, value in reply.headers.items():
        if name.startswith("x-riak-index-"):
            index = name[len("x-riak-index-") :]
            parts = [p.strip() for p in value.split(",") if p.strip()]
            entries: list[IndexValue] = []
            entries += [int(p) for p in parts] if index.endswith("_int") else parts
            indexes[index] = ordered(entries)
        elif name.startswith("x-riak-meta-"):
            meta[name[len("x-riak-meta-") :]] = value
    return dict(sorted(indexes.items())), meta


def is_current(head: Reply, doc: Document) -> bool:
    """True when the stored object has the document's checksum and exactly its indexes."""
    if head.header("x-riak-meta-migrate-checksum") != doc.checksum:
        return False
    stored, _ = parse_headers(head)
    wanted = {
        name: ordered(values if name.endswith("_int") else [str(v) for v in values])
        for name, values in doc.indexes
        if values
    }
    return stored == wanted


def ordered(values: Sequence[IndexValue]) -> list[IndexValue]:
    """Distinct entries in order: integers numerically, then text by code point."""
    ints = sorted({v for v in values if isinstance(v, int)})
    texts = sorted({v for v in values if isinstance(v, str)})
    return [*ints, *texts]


def header_block(headers: Sequence[tuple[str, str]]) -> bytes:
    """Header lines as sent on the wire (values UTF-8, as `RiakHTTP` sends them)."""
    return "".join(f"{name}: {value}\r\n" for name, value in headers).encode("utf-8")
