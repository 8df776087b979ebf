"""Comparing a chunk's expected and actual checksums: aggregates first, then keys."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

from migrate.reconcile.model import Difference, Kind

# Checksums of the bodies the target holds for some keys (None: no object), read in one go.
Probe = Callable[[Collection[str]], Mapping[str, str | None]]


def same_aggregate(
    count: int, digest: str | None, actual_count: int, actual_digest: str | None
) -> bool:
    """True when both sides have as many keys and their checksums aggregate alike."""
    return digest is not None and count == actual_count and digest == actual_digest


def diff_keys(
    chunk_id: str,
    expected: Mapping[str, str],
    actual: Mapping[str, str],
    probe: Probe,
    *,
    bodies: Mapping[str, str | None] | None = None,
) -> list[Difference]:
    """Every key that differs, in key order. `probe` reads the bodies of the expected keys the
    index does not list (all at once, so they can be fetched in parallel), to tell a missing
    object from one whose index entry is wrong. With `bodies` (--deep: the checksums of the
    bodies of the listed keys) a listed key is judged by its body and its index entry both."""
    unlisted = [key for key in expected if key not in actual]
    stored = dict(probe(unlisted)) if unlisted else {}
    if bodies is not None:
        stored.update(bodies)
    differences = []
    for key in sorted(expected.keys() | actual.keys()):
        want, have = expected.get(key), actual.get(key)
        if want is None:
            differences.append(Difference(key, Kind.EXTRA, chunk_id))
        elif have is None or bodies is not None:
            body = stored[key]
            if body is None:
                differences.append(Difference(key, Kind.MISSING, chunk_id))
            elif body != want:
                differences.append(Difference(key, Kind.CHANGED, chunk_id, "value"))
            elif have != want:
                differences.append(Difference(key, Kind.CHANGED, chunk_id, "index"))
        elif have != want:
            differences.append(Difference(key, Kind.CHANGED, chunk_id, "checksum"))
    return differences
