"""Where each service stands: the weekend board. From the ledger, and for a service with change
capture, the changes its source has logged since the last delta (the lag); a source that cannot
be reached leaves the lag unknown, never the board."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from migrate.errors import MigrateError
from migrate.ledger import ChunkState, Ledger, RunStatus, VerificationRecord
from migrate.project import Project


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    service: str
    phase: str
    run_id: str | None = None
    run_status: RunStatus | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    snapshot: str | None = None
    # The snapshots the run's chunks were read under: more than one after a run resumed under a
    # new snapshot (see `migrate.pipeline`).
    snapshots: tuple[str, ...] = ()
    chunks_total: int = 0
    chunks_by_state: dict[str, int] = field(default_factory=dict)
    documents: int = 0
    rejects: int = 0
    next_step: str = ""
    verification: VerificationRecord | None = None
    cutover: str | None = None  # the cutover phase, once the service is loaded
    pending: int | None = None  # changes logged since the last delta (None: unknown or none)
    oldest: datetime | None = None  # when the oldest of them was logged

    def lag_text(self) -> str:
        if self.pending is None:
            return "-"
        if not self.pending or self.oldest is None:
            return "0"
        age = (datetime.now(UTC) - self.oldest).total_seconds()
        return f"{self.pending:,} ({age:.0f} s)"

    def verification_text(self) -> str:
        """The last verification for people: outcome, against what, when."""
        v = self.verification
        if v is None:
            return "-"
        sample = f" {v.sample}" if v.sample else ""
        return f"{v.outcome} vs {v.against}{sample} at {v.finished_at:%Y-%m-%d %H:%M}Z"

    def as_json(self) -> dict[str, object]:
        return {
            "service": self.service,
            "phase": self.phase,
            "run_id": self.run_id,
            "run_status": self.run_status.value if self.run_status else None,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "snapshot": self.snapshot,
            "snapshots": list(self.snapshots),
            "chunks": {"total": self.chunks_total, **self.chunks_by_state},
            "documents": self.documents,
            "rejects": self.rejects,
            "next_step": self.next_step,
            "cutover_phase": self.cutover,
            "lag": {
                "pending": self.pending,
                "oldest_pending_at": self.oldest.isoformat() if self.oldest else None,
            },
            "last_verification": (
                None
                if self.verification is None
                else {
                    "verification_id": self.verification.verification_id,
                    "outcome": self.verification.outcome,
                    "against": self.verification.against,
                    "sample": self.verification.sample,
                    "finished_at": self.verification.finished_at.isoformat(),
                    "counts": self.verification.counts,
                }
            ),
        }


def project_status(project: Project) -> list[ServiceStatus]:
    """Every configured service's state, in cutover order."""
    return [
        _with_cutover(project, service_status(project.ledger, s.name))
        for s in project.config.select([])
    ]


def _with_cutover(project: Project, status: ServiceStatus) -> ServiceStatus:
    """The status with its cutover phase, its lag and, once the cutover began, its next step."""
    from migrate.capture import status as capture_status
    from migrate.cutover import current_phase, next_step

    phase = current_phase(project, status.service)
    if phase is None:
        return status
    changed = replace(status, cutover=phase.value, phase=phase.value)
    if project.ledger.phase(status.service) is not None:
        changed = replace(changed, next_step=next_step(phase, status.service))
    if project.config.service(status.service).capture is None:
        return changed
    try:
        lag = capture_status(project, status.service)
    except MigrateError:
        return changed
    return replace(changed, pending=lag.pending, oldest=lag.oldest)


def service_status(ledger: Ledger, service: str) -> ServiceStatus:
    status = _run_status(ledger, service)
    verification = ledger.latest_verification(service)
    if verification is None:
        return status
    next_step = status.next_step
    if status.run_status is RunStatus.COMPLETE and not status.rejects:
        if verification.outcome == "different":
            next_step = f"migrate repair {service} (the last reconciliation found differences)"
        elif verification.against == "staging":
            next_step = f"migrate reconcile {service} (prove it against the source as it is now)"
        else:
            next_step = f"verified against the source; reconcile {service} again after changes"
    return replace(status, verification=verification, next_step=next_step)


def _run_status(ledger: Ledger, service: str) -> ServiceStatus:
    run = ledger.latest_run(service)
    if run is None:
        return ServiceStatus(service, "not started", next_step=f"migrate run {service}")
    chunks = ledger.chunks(run.run_id)
    states = Counter(c.state.value for c in chunks)
    loaded = [c for c in chunks if c.state is ChunkState.LOADED]
    documents = sum(c.documents or 0 for c in loaded)
    rejects = sum(c.rejects or 0 for c in chunks)
    if run.status is RunStatus.COMPLETE:
        phase = "loaded"
        next_step = f"migrate dump {service} to inspect; rejects: {rejects}"
        if rejects:
            next_step = f"read the run's rejects.jsonl ({rejects} rows rejected)"
    elif run.status is RunStatus.FAILED:
        phase = "load stopped"
        next_step = f"migrate run {service} (resumes run {run.run_id})"
    else:
        phase = "loading"
        next_step = f"wait, or if no migrate process is running: migrate run {service} (resumes)"
    return ServiceStatus(
        service=service,
        phase=phase,
        run_id=run.run_id,
        run_status=run.status,
        started_at=run.started_at,
        finished_at=run.finished_at,
        snapshot=run.snapshot or None,
        snapshots=tuple(sorted({c.snapshot for c in chunks if c.snapshot})),
        chunks_total=len(chunks),
        chunks_by_state={state.value: states.get(state.value, 0) for state in ChunkState},
        documents=documents,
        rejects=rejects,
        next_step=next_step,
    )
