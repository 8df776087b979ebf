"""`migrate dump`: what the target holds for a service, one JSON object per line."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

import msgspec

from migrate.config import ServiceConfig
from migrate.project import Project
from migrate.target import Target
from migrate.target.base import StoredObject
from migrate.target.chunks import CHUNK_INDEX, chunk_prefix_range

_encode = msgspec.json.Encoder(order="sorted").encode


def dump_service(project: Project, service: ServiceConfig, out: IO[bytes]) -> int:
    """Write every document the service stored, bucket by bucket, chunk by chunk, key by key.

    Keys are found through the chunk index that every loaded object carries (never by listing a
    bucket's keys), so this works the same on the embedded target and on Riak. Each line is
    {"bucket_type","bucket","key","indexes","value"}; the value is written with the exact bytes the
    target stores, so decimals keep their digits; the toolkit's own `migrate_*` indexes are left
    out. Returns the number of documents.
    """
    mapping = project.mapping(service)
    buckets = sorted({(doc.bucket_type, doc.bucket) for doc in mapping.documents})
    count = 0
    for bucket_type, bucket in buckets:
        for obj in _stored(project.target, bucket_type, bucket):
            indexes = {k: v for k, v in obj.indexes.items() if not k.startswith("migrate_")}
            out.write(b'{"bucket_type":' + _encode(obj.bucket_type))
            out.write(b',"bucket":' + _encode(obj.bucket))
            out.write(b',"key":' + _encode(obj.key))
            out.write(b',"indexes":' + _encode(indexes))
            out.write(b',"value":' + obj.value + b"}\n")
            count += 1
    return count


def _stored(target: Target, bucket_type: str, bucket: str) -> Iterator[StoredObject]:
    """The bucket's objects in (chunk, key) order, one chunk's keys in memory at a time."""
    start, end = chunk_prefix_range()
    chunk: str | None = None
    keys: list[str] = []
    for term, key in target.index_terms(bucket_type, bucket, CHUNK_INDEX, start, end):
        prefix = str(term).split(":", 1)[0]
        if prefix != chunk:
            yield from _fetch(target, bucket_type, bucket, keys)
            chunk, keys = prefix, []
        keys.append(key)
    yield from _fetch(target, bucket_type, bucket, keys)


def _fetch(
    target: Target, bucket_type: str, bucket: str, keys: list[str]
) -> Iterator[StoredObject]:
    for key in sorted(set(keys)):
        obj = target.get(bucket_type, bucket, key)
        if obj is not None:
            yield obj
