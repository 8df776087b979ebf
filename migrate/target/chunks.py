"""The chunk index every stored object carries, so a chunk's keys are found without listing keys."""

from __future__ import annotations

from migrate.document import Document

CHUNK_INDEX = "migrate_chunk_bin"


def chunk_term(chunk_index: int, checksum: str) -> str:
    """The chunk index's entry: the chunk's position and the document's checksum.

    A 2i range query over one chunk's prefix with return_terms gives that chunk's keys and their
    checksums, so verification never lists a bucket's keys and fetches bodies only where
    checksums differ.
    """
    return f"{chunk_index:08d}:{checksum}"


def chunk_prefix_range(chunk_index: int | None = None) -> tuple[str, str]:
    """The [start, end] terms of one chunk's entries (every entry when `chunk_index` is None)."""
    if chunk_index is None:
        return "0", "9~"
    return f"{chunk_index:08d}:", f"{chunk_index:08d}:~"


def with_chunk_index(doc: Document, chunk_index: int) -> Document:
    indexes = (*doc.indexes, (CHUNK_INDEX, (chunk_term(chunk_index, doc.checksum),)))
    return Document(
        doc.bucket_type, doc.bucket, doc.key, doc.value, tuple(sorted(indexes)), doc.checksum
    )
