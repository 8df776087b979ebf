"""Reconciling a service: expected checksums against what the target holds, chunk by chunk.

One source snapshot serves the whole reconciliation. Without --dry-run the result is recorded in
the ledger (per chunk) with an owner-only differences file that `repair` reads; with --dry-run
nothing is written anywhere.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime

import msgspec

from migrate.config import ServiceConfig
from migrate.document import Document
from migrate.errors import VerificationError
from migrate.files import private_dir, private_writer
from migrate.ledger import ChunkVerification, RunRecord
from migrate.ledger.verifications import new_verification_id
from migrate.mapping import DocPlan, ServicePlan
from migrate.mapping.canonical import aggregate
from migrate.project import Project, actor
from migrate.reconcile.actual import chunk_checksums, leftovers, stored_checksum, stored_value
from migrate.reconcile.compare import diff_keys, same_aggregate
from migrate.reconcile.expected import (
    BuildTask,
    ChunkRef,
    build_in_order,
    builders,
    source_tables,
    staged_tables,
)
from migrate.reconcile.model import (
    Against,
    ChunkOutcome,
    Difference,
    DocTypeResult,
    Kind,
    Options,
    ServiceResult,
)
from migrate.reconcile.sample import in_sample, sample_label
from migrate.source import Snapshot

_PROBE_THREADS = 16


def reconcile_services(
    project: Project, names: Sequence[str] = (), options: Options | None = None
) -> list[ServiceResult]:
    """Reconcile the named services (all, in cutover order, when none are named)."""
    options = options or Options()
    services = project.config.select(list(names))
    with builders(options.workers) as pool:
        return [reconcile_service(project, s, options, pool=pool) for s in services]


def reconcile_service(
    project: Project,
    service: ServiceConfig,
    options: Options | None = None,
    *,
    pool: ProcessPoolExecutor | None = None,
) -> ServiceResult:
    """Reconcile one service; recorded in the ledger unless `options.dry_run`."""
    options = options or Options()
    started_at = datetime.now(UTC)
    clock = time.monotonic()
    plan = project.plan(service)
    run = project.ledger.latest_run(service.name)
    if options.against is Against.STAGING and run is None:
        raise VerificationError(
            f"{service.name} never ran, so nothing is staged to verify against",
            hint=f"verify against the source: migrate reconcile {service.name}",
        )
    with contextlib.ExitStack() as stack:
        snapshot: Snapshot | None = None
        if options.against is Against.SOURCE:
            snapshot = stack.enter_context(project.source.snapshot())
        marker = snapshot.marker if snapshot else (run.snapshot if run else "")
        doc_types = []
        for doc in plan.doc_types:
            refs = _chunk_refs(project, run, doc, snapshot, options)
            checker = _DocCheck(project, service, plan, doc, snapshot=snapshot, options=options)
            doc_types.append(checker.run(refs, pool))
    result = ServiceResult(
        service=service.name,
        run_id=run.run_id if run else None,
        against=options.against,
        sample=options.sample,
        deep=options.deep,
        snapshot=marker,
        started_at=started_at,
        seconds=time.monotonic() - clock,
        doc_types=doc_types,
    )
    if not options.dry_run:
        _record(project, result)
    return result


def _chunk_refs(
    project: Project,
    run: RunRecord | None,
    doc: DocPlan,
    snapshot: Snapshot | None,
    options: Options,
) -> list[ChunkRef]:
    """The latest run's chunks of `doc`; planned now (not recorded) when it has none."""
    refs: list[ChunkRef] = []
    if run is not None:
        refs = [
            ChunkRef(c.chunk_id, c.doc_type, c.index, c.lo, c.hi, c)
            for c in project.ledger.chunks(run.run_id, doc.name)
        ]
    if not refs and snapshot is not None:
        for r in snapshot.plan_chunks(doc.extract, project.config.run.chunk_size):
            lo, hi = r.bounds_json()
            refs.append(ChunkRef(f"{doc.name}:{r.index:05d}", doc.name, r.index, lo, hi))
    if options.chunk_ids is not None:
        refs = [r for r in refs if r.chunk_id in options.chunk_ids]
    return refs


class _DocCheck:
    """One document type's chunks: build expected, read actual, compare."""

    def __init__(
        self,
        project: Project,
        service: ServiceConfig,
        plan: ServicePlan,
        doc: DocPlan,
        *,
        snapshot: Snapshot | None,
        options: Options,
    ) -> None:
        self.project = project
        self.service = service
        self.plan = plan
        self.doc = doc
        self.snapshot = snapshot
        self.options = options
        self.target = project.target
        self.schema = project.schema()
        self.use_aggregates = options.sample is None and not options.deep
        self.actual: dict[str, dict[str, str]] = {}
        self._last_expected: set[str] = set()

    def run(self, refs: list[ChunkRef], pool: ProcessPoolExecutor | None) -> DocTypeResult:
        outcomes: list[ChunkOutcome] = []
        expected_keys: set[str] = set()
        in_flight = max(2, 2 * self.options.workers)
        with ThreadPoolExecutor(_PROBE_THREADS) as probes:
            for ref, documents in build_in_order(refs, self._task, pool, in_flight=in_flight):
                outcome = self._compare(ref, documents, probes)
                expected_keys.update(self._last_expected)
                outcomes.append(outcome)
        last = max((r.index for r in refs), default=-1)
        chunk_ids = self.options.chunk_ids
        if chunk_ids is None or any(int(c.rsplit(":", 1)[1]) > last for c in chunk_ids):
            outcomes.extend(self._leftovers(last, expected_keys))
        return DocTypeResult(self.doc.name, self.doc.bucket_type, self.doc.bucket, tuple(outcomes))

    def _task(self, ref: ChunkRef) -> BuildTask | None:
        """Read the chunk's actual side; the build task of its expected side, or None when the
        ledger's aggregate already proves it (verification against staging)."""
        actual = chunk_checksums(self.target, self.doc.bucket_type, self.doc.bucket, ref.index)
        if self.options.sample is not None:
            actual = {k: v for k, v in actual.items() if in_sample(k, self.options.sample)}
        self.actual[ref.chunk_id] = actual
        if self.snapshot is None:
            record = ref.record
            if (
                self.use_aggregates
                and record is not None
                and same_aggregate(record.documents or 0, record.doc_checksum, actual)
            ):
                return None
            tables = staged_tables(self.service.name, ref)
        else:
            tables = source_tables(self.snapshot, self.plan, ref)
        return BuildTask(
            str(self.service.mapping),
            self.project.config.target.bucket_type,
            self.plan.fingerprint,
            self.schema,
            self.doc.name,
            tables,
            self.project.config.run.max_document_bytes,
        )

    def _compare(
        self, ref: ChunkRef, documents: list[Document] | None, probes: ThreadPoolExecutor
    ) -> ChunkOutcome:
        actual = self.actual.pop(ref.chunk_id)
        bt, bucket = self.doc.bucket_type, self.doc.bucket
        if documents is None:  # proven equal by the ledger's aggregate
            self._last_expected = set(actual)
            return ChunkOutcome(
                ref.chunk_id, ref.index, len(actual), len(actual), True, (), ref.lo, ref.hi
            )
        sample = self.options.sample
        by_key = {d.key: d for d in documents if in_sample(d.key, sample)}
        expected = {key: d.checksum for key, d in by_key.items()}
        self._last_expected = set(expected)
        if self.options.deep:
            keys = sorted(actual)
            found = probes.map(lambda k: stored_checksum(self.target, bt, bucket, k), keys)
            actual = {k: c for k, c in zip(keys, found, strict=True) if c is not None}
        elif self.use_aggregates and same_aggregate(
            len(expected), aggregate(expected.values()), actual
        ):
            return ChunkOutcome(
                ref.chunk_id, ref.index, len(expected), len(actual), True, (), ref.lo, ref.hi
            )
        differences = diff_keys(
            ref.chunk_id, expected, actual, lambda k: stored_checksum(self.target, bt, bucket, k)
        )
        if self.options.show_values:
            differences = [self._with_values(d, by_key) for d in differences]
        return ChunkOutcome(
            ref.chunk_id,
            ref.index,
            len(expected),
            len(actual),
            False,
            tuple(differences),
            ref.lo,
            ref.hi,
        )

    def _with_values(self, difference: Difference, by_key: dict[str, Document]) -> Difference:
        if difference.kind is not Kind.CHANGED:
            return difference
        document = by_key[difference.key]
        stored = stored_value(self.target, self.doc.bucket_type, self.doc.bucket, difference.key)
        return replace(
            difference, expected_value=document.value.decode("utf-8"), actual_value=stored
        )

    def _leftovers(self, last: int, expected_keys: set[str]) -> list[ChunkOutcome]:
        """Keys indexed under chunks beyond the plan (an older, longer plan): extra, unless the
        key is expected in a planned chunk (that chunk's check reports it)."""
        found: dict[int, list[str]] = {}
        for index, key, _ in leftovers(self.target, self.doc.bucket_type, self.doc.bucket, last):
            if in_sample(key, self.options.sample) and key not in expected_keys:
                found.setdefault(index, []).append(key)
        outcomes = []
        for index, keys in sorted(found.items()):
            chunk_id = f"{self.doc.name}:{index:05d}"
            extra = tuple(Difference(k, Kind.EXTRA, chunk_id) for k in sorted(keys))
            outcomes.append(ChunkOutcome(chunk_id, index, 0, len(keys), False, extra))
        return outcomes


# -- recording -----------------------------------------------------------------------------------


def _record(project: Project, result: ServiceResult) -> None:
    """Ledger rows (verification, chunks, audit) and the owner-only differences file."""
    finished = datetime.now(UTC)
    verification_id = new_verification_id(finished)
    folder = private_dir(project.config.work_dir / result.service / "reconcile")
    path = folder / f"{verification_id}.json"
    with private_writer(path) as handle:
        handle.write(msgspec.json.encode(differences_document(result, verification_id)))
    chunks = [
        ChunkVerification(
            verification_id,
            c.chunk_id,
            "equal" if c.equal else "different",
            c.count(Kind.MISSING),
            c.count(Kind.EXTRA),
            c.count(Kind.CHANGED),
        )
        for doc in result.doc_types
        for c in doc.chunks
    ]
    counts = result.counts()
    project.ledger.record_verification(
        verification_id=verification_id,
        service=result.service,
        run_id=result.run_id,
        started_at=result.started_at,
        finished_at=finished,
        against=result.against.value,
        sample=sample_label(result.sample),
        outcome=result.outcome,
        counts=counts,
        snapshot=result.snapshot,
        actor=actor(),
        differences_path=str(path),
        chunks=chunks,
    )
    project.ledger.record_audit(
        actor=actor(),
        service=result.service,
        action=f"reconcile.{result.outcome}",
        detail={
            "verification_id": verification_id,
            "run_id": result.run_id,
            "against": result.against.value,
            "sample": sample_label(result.sample),
            "counts": counts,
        },
    )
    result.verification_id = verification_id
    result.differences_path = path


def differences_document(result: ServiceResult, verification_id: str) -> dict[str, object]:
    """What repair needs: per document type and chunk, the chunk's bounds and keys by kind."""
    return {
        "verification_id": verification_id,
        "service": result.service,
        "run_id": result.run_id,
        "against": result.against.value,
        "document_types": [
            {
                "document_type": doc.doc_type,
                "bucket_type": doc.bucket_type,
                "bucket": doc.bucket,
                "chunks": [
                    {
                        "chunk_id": c.chunk_id,
                        "index": c.index,
                        "lo": c.lo,
                        "hi": c.hi,
                        **{k.value: [d.key for d in c.differences if d.kind is k] for k in Kind},
                    }
                    for c in doc.chunks
                    if not c.equal
                ],
            }
            for doc in result.doc_types
        ],
    }
