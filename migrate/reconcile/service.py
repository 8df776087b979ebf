"""Reconciling a service: expected checksums against what the target holds, chunk by chunk.

One source snapshot serves the whole reconciliation. Expected sides are built where a run's
chunks are (`[run] executor`: this machine's processes, or a Dask cluster's workers). Without
--dry-run the result is recorded in the ledger (per chunk) with an owner-only differences file
that `repair` reads; with --dry-run nothing is written anywhere.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec

from migrate.config import ServiceConfig
from migrate.errors import VerificationError
from migrate.events import EventSink, ServiceFinished, ServiceStarted, ignore
from migrate.executor import is_remote
from migrate.files import private_dir, private_writer
from migrate.ledger import ChunkVerification, RunRecord
from migrate.ledger.leases import LeaseHeld
from migrate.ledger.verifications import new_verification_id
from migrate.mapping import DocPlan
from migrate.mapping.collisions import describe_row
from migrate.processes import warm_up
from migrate.project import Project, actor
from migrate.reconcile.check import DocCheck
from migrate.reconcile.collisions import KeyTracker
from migrate.reconcile.expected import Builders, ChunkRef, open_builders
from migrate.reconcile.model import Against, Kind, Options, ServiceResult
from migrate.reconcile.sample import sample_label
from migrate.register import Register
from migrate.source import Snapshot
from migrate.source.shared import SharedView, share_view


def reconcile_services(
    project: Project,
    names: Sequence[str] = (),
    options: Options | None = None,
    *,
    on_event: EventSink = ignore,
) -> list[ServiceResult]:
    """Reconcile the named services (all, in cutover order, when none are named); progress is
    reported per chunk to `on_event`."""
    options = options or Options()
    services = project.config.select(list(names))
    for service in services:  # keys in flight would read as differences
        held = project.ledger.lease(service.name)
        if held is not None:
            raise LeaseHeld(
                held, why=": a reconciliation now would report the documents in flight as changed"
            )
    workers = _workers(project, options)
    if workers > 1 and not is_remote(project.config):
        warm_up()  # the workers' imports overlap reflection and planning
    with open_builders(project.config, workers) as builders:
        return [
            reconcile_service(project, s, options, builders=builders, on_event=on_event)
            for s in services
        ]


def reconcile_service(
    project: Project,
    service: ServiceConfig,
    options: Options | None = None,
    *,
    builders: Builders | None = None,
    on_event: EventSink = ignore,
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
    if options.against is Against.STAGING and run is not None and changed_by_deltas(project, run):
        raise VerificationError(
            f"{service.name}'s staged rows predate the deltas applied since its run",
            hint=f"verify against the source: migrate reconcile {service.name}",
        )
    with contextlib.ExitStack() as stack:
        if builders is None:
            builders = stack.enter_context(
                open_builders(project.config, _workers(project, options))
            )
        snapshot: Snapshot | None = None
        view: SharedView | None = None
        if options.against is Against.SOURCE:
            snapshot = stack.enter_context(project.source.snapshot())
            if builders.workers > 1:
                specs = [d.extract for d in plan.doc_types]
                view = share_view(project.source, snapshot, specs)
                if view is not None and not builders.shares(view):
                    view = None  # this process reads every chunk; the tasks carry the rows
        marker = snapshot.marker if snapshot else (run.snapshot if run else "")
        tracker = KeyTracker() if snapshot is not None else None
        known = None
        if snapshot is None and run is not None:  # staging: the load's register knows them
            plans = {d.name: d for d in plan.doc_types}
            register = Register(project.ledger, run.run_id, plans, lambda _chunk, _rejects: None)
            known = register.known
        work = [(doc, _chunk_refs(project, run, doc, snapshot, options)) for doc in plan.doc_types]
        run_id = run.run_id if run else "-"
        total = sum(len(refs) for _, refs in work)
        on_event(ServiceStarted(service.name, run_id, False, total, 0, action="reconcile"))
        checkers = []
        for doc, refs in work:
            checker = DocCheck(
                project,
                service,
                plan,
                doc,
                snapshot=snapshot,
                options=options,
                view=view,
                tracker=tracker,
                known=known,
                on_event=on_event,
            )
            checker.run(refs, builders)
            checkers.append(checker)
        if tracker is not None:
            recheck_collisions(checkers, tracker)
        doc_types = [checker.result() for checker in checkers]
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
        rejects_accepted=options.accept_rejects,
    )
    if not options.dry_run:
        _record(project, result)
    on_event(
        ServiceFinished(
            service.name,
            run_id,
            result.counts().get("expected", 0),
            0,
            result.seconds,
            action="reconcile",
        )
    )
    return result


def recheck_collisions(checkers: list[DocCheck], tracker: KeyTracker) -> None:
    """Check again, knowing them, the chunks holding a key another chunk holds too: each such
    chunk is built here once to learn its rows' keys, then once more knowing the collisions."""
    clashes = tracker.clashes()
    if not clashes:
        return
    affected = [(c, p) for c in checkers for p in sorted(clashes.get(c.doc.name, ()))]
    owners: dict[tuple[str, str, str], list[tuple[DocCheck, int, str]]] = {}
    for checker, position in affected:
        result = checker.build_here(position)
        pairs = zip(result.documents, result.source_keys, strict=True)
        found = [(d.key, source_key) for d, source_key in pairs]
        found += [(claim.key, claim.source_key) for claim in result.collided]
        for key, source_key in found:
            identity = (checker.doc.bucket_type, checker.doc.bucket, key)
            owners.setdefault(identity, []).append((checker, position, source_key))
    known: dict[tuple[int, int], dict[str, list[str]]] = {}
    for (_bt, _bucket, key), rows in owners.items():
        if len({(id(c), p) for c, p, _ in rows}) < 2:
            continue
        for checker, position, _ in rows:
            others = [
                describe_row(c.doc.extract.primary_key, s, c.refs[p].chunk_id)
                for c, p, s in rows
                if (c, p) != (checker, position)
            ]
            known.setdefault((id(checker), position), {})[key] = others
    for checker, position in affected:
        found_known = known.get((id(checker), position))
        if found_known:
            checker.recheck(position, found_known)


def changed_by_deltas(project: Project, run: RunRecord) -> bool:
    """Whether deltas rebuilt documents of the run since it staged its chunks."""
    return any(d.run_id == run.run_id and d.roots for d in project.ledger.deltas(run.service))


def _workers(project: Project, options: Options) -> int:
    """Build processes: as asked, else the project's [run] workers, else one per core."""
    return options.workers or project.config.run.workers or os.cpu_count() or 1


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
    if result.rejects_accepted and counts.get("rejected"):
        counts["rejects_accepted"] = counts["rejected"]
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
