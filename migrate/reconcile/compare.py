"""Comparing a chunk's expected and actual checksums: aggregates first, then keys."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from migrate.mapping.canonical import aggregate
from migrate.reconcile.model import Difference, Kind


def same_aggregate(count: int, digest: str | None, actual: Mapping[str, str]) -> bool:
    """True when `actual` has `count` keys whose checksums aggregate to `digest`."""
    if digest is None or len(actual) != count:
        return False
    return aggregate(actual.values()) == digest


def diff_keys(
    chunk_id: str,
    expected: Mapping[str, str],
    actual: Mapping[str, str],
    probe: Callable[[str], str | None],
) -> list[Difference]:
    """Every key that differs, in key order. `probe(key)` is the checksum of the body the target
    holds (None: no object); it is asked only for expected keys the index does not list."""
    differences = []
    for key in sorted(expected.keys() | actual.keys()):
        want, have = expected.get(key), actual.get(key)
        if want is None:
            differences.append(Difference(key, Kind.EXTRA, chunk_id))
        elif have is None:
            stored = probe(key)
            if stored is None:
                differences.append(Difference(key, Kind.MISSING, chunk_id))
            else:
                reason = "index" if stored == want else "value"
                differences.append(Difference(key, Kind.CHANGED, chunk_id, reason))
        elif have != want:
            differences.append(Difference(key, Kind.CHANGED, chunk_id, "checksum"))
    return differences
