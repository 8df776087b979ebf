"""What a reconciliation finds: per chunk, per document type, per service. Plain values, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path


class Kind(StrEnum):
    MISSING = "missing"  # in the source, not in the target
    EXTRA = "extra"  # in the target, not in the source
    CHANGED = "changed"  # in both, with different checksums


class Against(StrEnum):
    SOURCE = "source"
    STAGING = "staging"


@dataclass(frozen=True, slots=True)
class Difference:
    """One key that differs. `reason` says how it was found: "checksum" (the index term differs),
    "value" (the stored body differs), "index" (the body is right but its index entry is not)."""

    key: str
    kind: Kind
    chunk_id: str
    reason: str = ""
    expected_value: str | None = None  # only with --show-values
    actual_value: str | None = None  # only with --show-values


@dataclass(frozen=True, slots=True)
class ChunkOutcome:
    chunk_id: str
    index: int
    expected: int
    actual: int
    skipped_equal: bool
    differences: tuple[Difference, ...] = ()
    lo: str | None = None  # the chunk's key bounds (JSON), so repair can rebuild it
    hi: str | None = None

    @property
    def equal(self) -> bool:
        return not self.differences

    def count(self, kind: Kind) -> int:
        return sum(1 for d in self.differences if d.kind is kind)


@dataclass(frozen=True, slots=True)
class DocTypeResult:
    doc_type: str
    bucket_type: str
    bucket: str
    chunks: tuple[ChunkOutcome, ...]

    @property
    def differences(self) -> list[Difference]:
        return [d for c in self.chunks for d in c.differences]

    @property
    def equal(self) -> bool:
        return all(c.equal for c in self.chunks)

    def counts(self) -> dict[str, int]:
        """expected/actual/equal/missing/extra/changed documents and compared/skipped/different
        chunks."""
        kinds = {k.value: sum(c.count(k) for c in self.chunks) for k in Kind}
        expected = sum(c.expected for c in self.chunks)
        return {
            "expected": expected,
            "actual": sum(c.actual for c in self.chunks),
            "equal": expected - kinds["missing"] - kinds["changed"],
            **kinds,
            "chunks_compared": len(self.chunks),
            "chunks_skipped_equal": sum(1 for c in self.chunks if c.skipped_equal),
            "chunks_different": sum(1 for c in self.chunks if not c.equal),
        }


@dataclass(frozen=True, slots=True)
class Options:
    """How to reconcile. `sample` is a percentage (1.0 = 1%) or None for every key."""

    dry_run: bool = False
    against: Against = Against.SOURCE
    sample: float | None = None
    deep: bool = False
    workers: int = 0  # build processes; 0: the project's [run] workers, else one per core
    show_values: bool = False
    chunk_ids: frozenset[str] | None = None  # only these chunks (repair's re-check)


@dataclass(slots=True)
class ServiceResult:
    service: str
    run_id: str | None
    against: Against
    sample: float | None
    deep: bool
    snapshot: str
    started_at: datetime
    seconds: float
    doc_types: list[DocTypeResult] = field(default_factory=list)
    verification_id: str | None = None
    differences_path: Path | None = None

    @property
    def equal(self) -> bool:
        return all(d.equal for d in self.doc_types)

    @property
    def outcome(self) -> str:
        return "equal" if self.equal else "different"

    def counts(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for doc in self.doc_types:
            for name, value in doc.counts().items():
                total[name] = total.get(name, 0) + value
        return total
