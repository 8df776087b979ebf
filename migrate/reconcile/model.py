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
class Rejected:
    """A source row that makes no document: it breaks a rule (a bad value, a missing code, a key
    other rows render too...). Rejected rows are differences until they are fixed or accepted."""

    chunk_id: str
    key: str | None  # None when the key itself could not be rendered
    source_key: dict[str, str]
    field: str
    reason: str


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
    rejected: tuple[Rejected, ...] = ()

    @property
    def equal(self) -> bool:
        """The target holds exactly the documents expected (rejected rows are counted apart)."""
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
    def rejected(self) -> list[Rejected]:
        return [r for c in self.chunks for r in c.rejected]

    @property
    def equal(self) -> bool:
        """The target holds exactly the documents expected (see `ServiceResult.equal` for the
        verdict that counts rejected rows)."""
        return all(c.equal for c in self.chunks)

    def counts(self) -> dict[str, int]:
        """expected/actual/equal/missing/extra/changed documents, rejected source rows, and
        compared/skipped/different chunks."""
        kinds = {k.value: sum(c.count(k) for c in self.chunks) for k in Kind}
        expected = sum(c.expected for c in self.chunks)
        return {
            "expected": expected,
            "actual": sum(c.actual for c in self.chunks),
            "equal": expected - kinds["missing"] - kinds["changed"],
            **kinds,
            "rejected": sum(len(c.rejected) for c in self.chunks),
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
    # Rejected source rows do not fail the verification (recorded as accepted, with who).
    accept_rejects: bool = False


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
    rejects_accepted: bool = False

    @property
    def rejected(self) -> int:
        return sum(len(d.rejected) for d in self.doc_types)

    @property
    def equal(self) -> bool:
        """The verdict: the target holds exactly what is expected, and no source row is
        rejected (or the rejected ones were accepted)."""
        matches = all(d.equal for d in self.doc_types)
        return matches and (self.rejects_accepted or self.rejected == 0)

    @property
    def outcome(self) -> str:
        return "equal" if self.equal else "different"

    def counts(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for doc in self.doc_types:
            for name, value in doc.counts().items():
                total[name] = total.get(name, 0) + value
        return total
