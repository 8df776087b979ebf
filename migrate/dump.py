"""`migrate dump`: what the target holds for a service, one JSON object per line."""

from __future__ import annotations

from typing import IO

import msgspec

from migrate.config import ServiceConfig
from migrate.mapping import load_mapping
from migrate.project import Project

_encode = msgspec.json.Encoder(order="sorted").encode


def dump_service(project: Project, service: ServiceConfig, out: IO[bytes]) -> int:
    """Write every stored document of the service's buckets, in (bucket_type, bucket, key) order.

    Each line is {"bucket_type","bucket","key","indexes","value"}; the value is written with the
    exact bytes the target stores, so decimals keep their digits. Returns the number of documents.
    """
    mapping = load_mapping(service.mapping)
    buckets = sorted({(doc.bucket_type, doc.bucket) for doc in mapping.documents})
    count = 0
    for bucket_type, bucket in buckets:
        for obj in project.target.iter_bucket(bucket_type, bucket):
            out.write(b'{"bucket_type":' + _encode(obj.bucket_type))
            out.write(b',"bucket":' + _encode(obj.bucket))
            out.write(b',"key":' + _encode(obj.key))
            out.write(b',"indexes":' + _encode(obj.indexes))
            out.write(b',"value":' + obj.value + b"}\n")
            count += 1
    return count
