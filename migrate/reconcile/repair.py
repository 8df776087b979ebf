"""Repair: re-load exactly the keys the last recorded reconciliation found missing or changed,
delete the extra ones, then reconcile those chunks again (recorded)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migrate.errors import VerificationError
from migrate.events import ChunkFinished, EventSink, ServiceFinished, ServiceStarted, ignore
from migrate.project import Project, actor
from migrate.reconcile.expected import BuildTask, ChunkRef, build_chunk, source_tables
from migrate.reconcile.model import Options, ServiceResult
from migrate.reconcile.service import reconcile_service
from migrate.target.chunks import with_chunk_index


@dataclass(frozen=True, slots=True)
class RepairReport:
    service: str
    verification_id: str | None  # the verification repaired (None: nothing recorded to repair)
    written: int
    deleted: int
    check: ServiceResult | None  # the reconciliation of the repaired chunks


def repair_service(
    project: Project,
    name: str,
    *,
    on_event: EventSink = ignore,
    command: str = "migrate repair",
) -> RepairReport:
    """Repair `name` from its last recorded reconciliation, holding its lease; progress per
    chunk to `on_event`."""
    with project.hold([name], command):
        return _repair(project, name, on_event)


def _repair(project: Project, name: str, on_event: EventSink) -> RepairReport:
    service = project.config.service(name)
    ledger = project.ledger
    latest = ledger.latest_verification(name, with_differences=True)
    if latest is None:
        raise VerificationError(
            f"{name} has no recorded reconciliation to repair from",
            hint=f"run `migrate reconcile {name}` (without --dry-run) first",
        )
    if latest.outcome == "equal":
        return RepairReport(name, latest.verification_id, 0, 0, None)
    document = _read_differences(Path(latest.differences_path or ""), name)
    plan = project.plan(service)
    target = project.target
    written = deleted = 0
    chunk_ids: set[str] = set()
    total = sum(len(entry["chunks"]) for entry in document["document_types"])
    run_id = latest.run_id or "-"
    on_event(ServiceStarted(name, run_id, False, total, 0, action="repair"))
    started = time.monotonic()
    with project.source.snapshot() as snapshot:
        for doc_entry in document["document_types"]:
            doc = plan.doc_type(doc_entry["document_type"])
            for chunk in doc_entry["chunks"]:
                chunk_ids.add(chunk["chunk_id"])
                before = written + deleted
                for key in chunk["extra"]:
                    deleted += int(
                        target.delete(doc_entry["bucket_type"], doc_entry["bucket"], key)
                    )
                wanted = set(chunk["missing"]) | set(chunk["changed"])
                if not wanted or chunk["lo"] is None:
                    on_event(
                        ChunkFinished(name, chunk["chunk_id"], written + deleted - before, 0, 0, 0)
                    )
                    continue
                ref = ChunkRef(
                    chunk["chunk_id"], doc.name, chunk["index"], chunk["lo"], chunk["hi"]
                )
                task = BuildTask(
                    str(service.mapping),
                    project.config.target.bucket_type,
                    plan.fingerprint,
                    project.schema(),
                    doc.name,
                    source_tables(snapshot, plan, ref),
                    project.config.run.max_document_bytes,
                )
                documents = [
                    with_chunk_index(d, ref.index)
                    for d in build_chunk(task, plan).documents
                    if d.key in wanted
                ]
                meta = {"migrate-run": latest.run_id or "repair", "migrate-chunk": ref.chunk_id}
                stats = target.write(documents, meta=meta)
                written += stats.written
                on_event(
                    ChunkFinished(
                        name, chunk["chunk_id"], len(documents), stats.written, stats.unchanged, 0
                    )
                )
    ledger.record_audit(
        actor=actor(),
        service=name,
        action="repair",
        detail={"verification_id": latest.verification_id, "written": written, "deleted": deleted},
    )
    seconds = time.monotonic() - started
    on_event(ServiceFinished(name, run_id, written + deleted, 0, seconds, action="repair"))
    check = reconcile_service(
        project, service, Options(chunk_ids=frozenset(chunk_ids)), on_event=on_event
    )
    return RepairReport(name, latest.verification_id, written, deleted, check)


def _read_differences(path: Path, service: str) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise VerificationError(
            f"{service}: the differences file of the last reconciliation ({path}) is unreadable",
            hint=f"run `migrate reconcile {service}` again, then `migrate repair {service}`",
        ) from exc
    return data
