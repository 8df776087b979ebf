"""The actual side: what the target holds for a chunk, read through the chunk index.

Every loaded object carries `migrate_chunk_bin` = "<chunk index>:<checksum>", so one index range
query per chunk (with its terms) gives the chunk's keys and checksums. Bucket keys are never listed;
bodies are fetched only to double-check a key the index lacks, or every body with --deep.
"""

from __future__ import annotations

from collections.abc import Iterator

from migrate.mapping.canonical import checksum
from migrate.target import Target
from migrate.target.chunks import CHUNK_INDEX, chunk_prefix_range


def chunk_checksums(target: Target, bucket_type: str, bucket: str, index: int) -> dict[str, str]:
    """{key: checksum} of one chunk, from the index terms."""
    start, end = chunk_prefix_range(index)
    return {
        key: str(term).split(":", 1)[1]
        for term, key in target.index_terms(bucket_type, bucket, CHUNK_INDEX, start, end)
    }


def leftovers(
    target: Target, bucket_type: str, bucket: str, after: int
) -> Iterator[tuple[int, str, str]]:
    """(chunk index, key, checksum) of entries beyond chunk `after`: an older, longer plan's."""
    start = f"{after + 1:08d}:"
    _, end = chunk_prefix_range()
    for term, key in target.index_terms(bucket_type, bucket, CHUNK_INDEX, start, end):
        position, _, digest = str(term).partition(":")
        yield int(position), key, digest


def stored_checksum(target: Target, bucket_type: str, bucket: str, key: str) -> str | None:
    """The checksum of the body the target holds (None when it holds no object)."""
    stored = target.get(bucket_type, bucket, key)
    return None if stored is None else checksum(stored.value)


def stored_value(target: Target, bucket_type: str, bucket: str, key: str) -> str | None:
    stored = target.get(bucket_type, bucket, key)
    return None if stored is None else stored.value.decode("utf-8", errors="replace")
