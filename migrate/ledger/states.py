"""Named states of runs and chunks: progress is an enum, never a free string."""

from __future__ import annotations

import enum
from typing import Any


class ChunkState(enum.Enum):
    """The phases a chunk moves through, in order; each one is a durable ledger transition."""

    PLANNED = "planned"
    EXTRACTED = "extracted"
    TRANSFORMED = "transformed"
    LOADED = "loaded"

    @property
    def rank(self) -> int:
        """Position in the pipeline, so phases compare by order rather than by name."""
        return _RANK[self]


_RANK = {state: position for position, state in enumerate(ChunkState)}


class RunStatus(enum.Enum):
    """Where a run stands as a whole."""

    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"


# The phase a chunk must have reached before each phase may be marked (or marked again).
REQUIRED_BEFORE = {
    ChunkState.EXTRACTED: ChunkState.PLANNED,
    ChunkState.TRANSFORMED: ChunkState.EXTRACTED,
    ChunkState.LOADED: ChunkState.TRANSFORMED,
}

# Chunk columns that hold the evidence of each phase.
_EVIDENCE: dict[ChunkState, tuple[str, ...]] = {
    ChunkState.PLANNED: (),
    ChunkState.EXTRACTED: ("rows", "staged_path", "staged_checksum", "snapshot"),
    ChunkState.TRANSFORMED: ("transform_fingerprint", "documents", "rejects", "doc_checksum"),
    ChunkState.LOADED: ("written", "unchanged"),
}


def cleared_after(state: ChunkState) -> dict[str, Any]:
    """Column values that erase the evidence of every phase after `state`: a chunk moved back (or
    marked again at an earlier phase) must not keep claims about work that is now stale."""
    values: dict[str, Any] = {}
    for later in ChunkState:
        if later.rank > state.rank:
            values.update({name: "{}" if name == "rows" else None for name in _EVIDENCE[later]})
    return values
