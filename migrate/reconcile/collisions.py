"""Key collisions across chunks, found while reconciling against the source.

The load finds them in the ledger's register; a reconciliation against the source proves the
source as it is now, so it finds them itself: every chunk's keys are noted (as 64-bit hashes in
Arrow arrays, a dozen bytes a key), and a key noted by two chunks, or two document types writing
one bucket, is a collision whose chunks are checked again knowing it (`DocCheck.recheck`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as _compute
import xxhash

pc: Any = _compute  # pyarrow-stubs cannot follow a chain of compute calls


@dataclass(slots=True)
class KeyTracker:
    """Notes (document type, chunk position, key, whether the chunk still expects it)."""

    _doc_types: list[str] = field(default_factory=list)
    _hashes: list[pa.Array[Any]] = field(default_factory=list)
    _owners: list[pa.Array[Any]] = field(default_factory=list)  # (doc type, chunk) as one int
    _live: list[pa.Array[Any]] = field(default_factory=list)

    def note(
        self,
        doc_type: str,
        bucket: tuple[str, str],
        position: int,
        *,
        live: Iterable[str],
        withdrawn: Iterable[str],
    ) -> None:
        """A chunk's keys in `bucket` (bucket type, bucket): `live` ones it expects,
        `withdrawn` ones it rejected for a collision it already knew."""
        if doc_type not in self._doc_types:
            self._doc_types.append(doc_type)
        owner = self._doc_types.index(doc_type) << 32 | position
        prefix = f"{bucket[0]}\x00{bucket[1]}\x00"
        hashes = [_hash(prefix + key) for key in live]
        kept = len(hashes)
        hashes += [_hash(prefix + key) for key in withdrawn]
        if not hashes:
            return
        self._hashes.append(pa.array(hashes, pa.uint64()))
        self._owners.append(pa.array([owner] * len(hashes), pa.int64()))
        self._live.append(pa.array([True] * kept + [False] * (len(hashes) - kept)))

    def clashes(self) -> dict[str, set[int]]:
        """Per document type, the positions of its chunks holding a key another chunk (of any
        document type sharing its bucket) holds too, where some chunk still expects that key."""
        if not self._hashes:
            return {}
        table = pa.table(
            {
                "h": pa.concat_arrays(self._hashes),
                "o": pa.concat_arrays(self._owners),
                "live": pa.concat_arrays(self._live),
            }
        )
        grouped = table.group_by("h").aggregate([("o", "count_distinct"), ("live", "any")])
        clashing = grouped.filter(
            pc.and_(pc.greater(grouped["o_count_distinct"], 1), grouped["live_any"])
        )
        if clashing.num_rows == 0:
            return {}
        rows = table.filter(pc.is_in(table["h"], value_set=clashing["h"]))
        found: dict[str, set[int]] = {}
        owners = {int(owner) for owner in rows["o"].to_pylist() if owner is not None}
        for owner in owners:
            doc_type = self._doc_types[owner >> 32]
            found.setdefault(doc_type, set()).add(owner & 0xFFFFFFFF)
        return found


def _hash(text: str) -> int:
    return int(xxhash.xxh3_64_intdigest(text.encode("utf-8", "surrogatepass")))
