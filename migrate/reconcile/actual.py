"""The actual side: what the target holds for a chunk, read through the chunk index.

Every loaded object carries `migrate_chunk_bin` = "<chunk index>:<checksum>", so one index range
query per chunk (with its terms) gives the chunk's keys and checksums. Bucket keys are never listed;
bodies are fetched only to double-check a key the index lacks, or every body with --deep.

The index reads are I/O: `Prefetcher` runs them in a few threads, ahead of the chunks being built,
so a chunk's actual side is usually ready when its expected side is.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from migrate.mapping.canonical import aggregate, checksum
from migrate.reconcile.sample import in_sample
from migrate.target import Target
from migrate.target.chunks import CHUNK_INDEX, chunk_prefix_range

# A key indexed twice in one chunk with different checksums (siblings, or a stale entry): no
# checksum equals it, so the key is reported changed.
CONFLICT = "conflict"


@dataclass(frozen=True, slots=True)
class ActualChunk:
    """{key: checksum} of one chunk as the index lists it, and their aggregate (None when a term
    is not a well-formed checksum, so only a key-by-key comparison can judge the chunk)."""

    checksums: dict[str, str]
    digest: str | None


def chunk_checksums(target: Target, bucket_type: str, bucket: str, index: int) -> dict[str, str]:
    """{key: checksum} of one chunk, from the index terms."""
    start, end = chunk_prefix_range(index)
    found: dict[str, str] = {}
    for term, key in target.index_terms(bucket_type, bucket, CHUNK_INDEX, start, end):
        digest = str(term).partition(":")[2]
        if found.setdefault(key, digest) != digest:
            found[key] = CONFLICT
    return found


def read_chunk(
    target: Target, bucket_type: str, bucket: str, index: int, sample: float | None
) -> ActualChunk:
    """One chunk's actual side, limited to the sample's keys."""
    found = chunk_checksums(target, bucket_type, bucket, index)
    if sample is not None:
        found = {k: v for k, v in found.items() if in_sample(k, sample)}
    try:
        digest: str | None = aggregate(found.values())
    except ValueError:
        digest = None
    return ActualChunk(found, digest)


class Prefetcher:
    """Reads the chunks' actual sides in `threads` threads, at most `ahead` chunks in advance of
    the one asked for; `take` must be called in the chunks' order."""

    def __init__(
        self,
        target: Target,
        bucket_type: str,
        bucket: str,
        indexes: Sequence[int],
        *,
        sample: float | None,
        threads: int,
        ahead: int,
    ) -> None:
        self._read = (target, bucket_type, bucket)
        self._pending: Iterator[int] = iter(indexes)
        self._sample = sample
        self._ahead = max(1, ahead)
        self._pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="reconcile-read")
        self._futures: dict[int, Future[ActualChunk]] = {}
        self._fill(None)

    def take(self, index: int) -> ActualChunk:
        """The actual side of chunk `index` (waiting for it), with the next ones under way."""
        self._fill(index)
        future = self._futures.pop(index, None)
        if future is None:
            raise KeyError(f"chunk {index} is not among the chunks to read, or read already")
        self._fill(None)
        return future.result()

    def _fill(self, wanted: int | None) -> None:
        """Start reads until `ahead` are under way and chunk `wanted` is among them."""
        while len(self._futures) < self._ahead or (
            wanted is not None and wanted not in self._futures
        ):
            following = next(self._pending, None)
            if following is None:
                return
            target, bucket_type, bucket = self._read
            self._futures[following] = self._pool.submit(
                read_chunk, target, bucket_type, bucket, following, self._sample
            )

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
