"""The cutover weekend, one service at a time: phases, the gates between them, and their audit.

Each service moves through `Phase`s; `STEPS` is the one table of which step is allowed from
which phase and where it leads. A step that a gate refuses changes nothing but the audit log,
says which condition failed and what to run, and exits 1. Every step holds the service's lease,
and writes its phase and its audit row (who, when, the command, the evidence) in one ledger
transaction.

Gates beyond the table: `sync` proves no change is left (a delta, then an empty change log);
`verify` is a recorded full reconciliation against the source; `switch` needs a passing verify
recorded after the freeze, no source change since it, and every service before it in
`[cutover] order` switched (unless `--out-of-order`, which is recorded). `rollback` is refused
once a service is switched: from then on the target is the system of record, and going back is
a decision for the service owner and the cutover lead (the runbook says how).
"""

from __future__ import annotations

import enum
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from migrate.capture import require as require_capture
from migrate.capture import status as capture_status
from migrate.config import ServiceConfig
from migrate.delta import DeltaReport, delta_service, delta_services, unapplied_changes
from migrate.errors import VerificationError
from migrate.events import EventSink, ignore
from migrate.ledger import RunStatus
from migrate.project import Project, actor


class Phase(enum.Enum):
    LOADED = "loaded"
    SYNCING = "syncing"
    FROZEN = "frozen"
    SYNCED = "synced"
    VERIFIED = "verified"
    SWITCHED = "switched"
    ROLLED_BACK = "rolled-back"


_P = Phase
# step -> (the phases it may start from, the phase it leads to)
STEPS: dict[str, tuple[frozenset[Phase], Phase]] = {
    "delta": (frozenset({_P.LOADED, _P.SYNCING, _P.ROLLED_BACK}), _P.SYNCING),
    "freeze": (frozenset({_P.LOADED, _P.SYNCING, _P.ROLLED_BACK}), _P.FROZEN),
    "sync": (frozenset({_P.FROZEN, _P.SYNCED, _P.VERIFIED}), _P.SYNCED),
    "verify": (frozenset({_P.SYNCED}), _P.VERIFIED),
    "switch": (frozenset({_P.VERIFIED}), _P.SWITCHED),
    "rollback": (frozenset({_P.FROZEN, _P.SYNCED, _P.VERIFIED}), _P.ROLLED_BACK),
}
CUTOVER_STEPS = ("freeze", "sync", "verify", "switch", "rollback")


@dataclass(frozen=True, slots=True)
class StepResult:
    service: str
    step: str
    before: Phase | None
    after: Phase
    evidence: dict[str, Any]
    seconds: float
    delta: DeltaReport | None = None


class GateRefused(VerificationError):
    """A cutover gate refused a step (exit 1): the condition that failed and what to run."""


def current_phase(project: Project, service: str) -> Phase | None:
    """The service's phase: as recorded, else `loaded` once a run completed, else None."""
    record = project.ledger.phase(service)
    if record is not None:
        return Phase(record.phase)
    run = project.ledger.latest_run(service)
    if run is not None and run.status is RunStatus.COMPLETE:
        return Phase.LOADED
    return None


def next_step(phase: Phase | None, service: str) -> str:
    """The next safe step from a phase, as a command."""
    steps = {
        None: f"migrate run {service}",
        Phase.LOADED: f"migrate delta {service} (catch up), then migrate cutover {service} freeze",
        Phase.SYNCING: f"migrate delta {service}, or migrate cutover {service} freeze",
        Phase.ROLLED_BACK: f"migrate delta {service}, or migrate cutover {service} freeze",
        Phase.FROZEN: f"migrate cutover {service} sync",
        Phase.SYNCED: f"migrate cutover {service} verify",
        Phase.VERIFIED: f"migrate cutover {service} switch",
        Phase.SWITCHED: "done: the target is the system of record",
    }
    return steps[phase]


class Cutover:
    """The steps of one service, each under its lease (see the module's notes)."""

    def __init__(self, project: Project, name: str, *, command: str) -> None:
        self.project = project
        self.service: ServiceConfig = project.config.service(name)
        self.name = name
        self.command = command

    def step(self, step: str, **options: Any) -> StepResult:
        with self.project.hold([self.name], self.command):
            started = time.monotonic()
            before = current_phase(self.project, self.name)
            allowed, after = STEPS[step]
            if before not in allowed:
                self._refuse(step, before, self._phase_reason(step, before))
            handler = getattr(self, f"_{step}")
            outcome: tuple[Phase, dict[str, Any], DeltaReport | None] = handler(
                before, after, **options
            )
            reached, evidence, delta = outcome
            seconds = time.monotonic() - started
            self._record(step, before, reached, evidence, seconds)
            return StepResult(self.name, step, before, reached, evidence, seconds, delta)

    # -- the steps -------------------------------------------------------------------------------

    def _freeze(
        self, before: Phase | None, after: Phase
    ) -> tuple[Phase, dict[str, Any], DeltaReport | None]:
        engine = require_capture(self.project, self.service)
        with self.project.source.snapshot() as snapshot:
            position = snapshot.capture_position(engine)
        return after, {"position_at_freeze": position, "frozen_at": _now()}, None

    def _sync(
        self, before: Phase | None, after: Phase
    ) -> tuple[Phase, dict[str, Any], DeltaReport | None]:
        report = delta_service(self.project, self.service)
        left = capture_status(self.project, self.name)
        if left.pending:
            self._refuse(
                "sync",
                before,
                f"{left.pending} change(s) reached the source during the sync: it is not read-only",
                hint=f"stop every writer of the tables {self.name} reads, then "
                f"`migrate cutover {self.name} sync` again",
                evidence={"delta": report.as_json()},
            )
        evidence = {"delta": report.as_json(), "position": left.position, "pending": 0}
        return after, evidence, report

    def _verify(
        self, before: Phase | None, after: Phase, *, accept_rejects: bool = False
    ) -> tuple[Phase, dict[str, Any], DeltaReport | None]:
        from migrate.reconcile import Against, Options, reconcile_service
        from migrate.reconcile.report import render_json

        waiting = capture_status(self.project, self.name)
        if waiting.pending:
            self._refuse(
                "verify",
                before,
                f"{waiting.pending} change(s) reached the source since the sync",
                hint=f"`migrate cutover {self.name} sync` again, then verify",
            )
        options = Options(against=Against.SOURCE, accept_rejects=accept_rejects)
        result = reconcile_service(self.project, self.service, options)
        report = render_json([result])
        evidence = {
            "verification_id": result.verification_id,
            "outcome": result.outcome,
            "counts": result.counts(),
            "report_sha256": hashlib.sha256(report.encode()).hexdigest(),
            "rejects_accepted": accept_rejects,
            "position": waiting.position,
        }
        if not result.equal:
            self._refuse(
                "verify",
                before,
                f"the reconciliation found differences ({_counts_text(result.counts())})",
                hint=f"`migrate reconcile {self.name}` names them; `migrate repair {self.name}`, "
                f"then sync and verify again (rejected rows: fix them, or accept them with "
                f"--accept-rejects)",
                evidence=evidence,
            )
        return after, evidence, None

    def _switch(
        self, before: Phase | None, after: Phase, *, out_of_order: bool = False
    ) -> tuple[Phase, dict[str, Any], DeltaReport | None]:
        record = self.project.ledger.phase(self.name)
        verified = record.detail if record is not None else {}
        verification_id = verified.get("verification_id")
        latest = self.project.ledger.latest_verification(self.name)
        if latest is None or latest.verification_id != verification_id or latest.outcome != "equal":
            self._refuse(
                "switch",
                before,
                "the last recorded verification is not the passing one of this cutover",
                hint=f"`migrate cutover {self.name} verify`",
            )
        waiting = capture_status(self.project, self.name)
        pending = waiting.pending or unapplied_changes(self.project, self.service)
        if pending:
            self._set(Phase.FROZEN, {"reason": "changes after verify"})
            self._refuse(
                "switch",
                before,
                f"{pending} change(s) reached the source after the verification",
                hint=f"the service is back to frozen: `migrate cutover {self.name} sync`, then "
                "verify, then switch",
            )
        earlier = self._unswitched_before()
        if earlier and not out_of_order:
            self._refuse(
                "switch",
                before,
                f"services before {self.name} in [cutover] order are not switched: "
                + ", ".join(earlier),
                hint="switch them first, or pass --out-of-order (recorded) if the cutover lead "
                "decided so",
            )
        evidence = {
            "verification_id": verification_id,
            "out_of_order": bool(earlier) and out_of_order,
            "not_switched_before": earlier,
            "switched_at": _now(),
        }
        return after, evidence, None

    def _rollback(
        self, before: Phase | None, after: Phase
    ) -> tuple[Phase, dict[str, Any], DeltaReport | None]:
        evidence = {
            "from": before.value if before else None,
            "note": "back to syncing: writers may resume on the source; run delta to catch up, "
            "freeze again when ready",
        }
        return after, evidence, None

    # -- helpers ---------------------------------------------------------------------------------

    def _unswitched_before(self) -> list[str]:
        order = self.project.config.cutover_order
        if self.name not in order:
            return []
        return [
            other
            for other in order[: order.index(self.name)]
            if current_phase(self.project, other) is not Phase.SWITCHED
        ]

    def _phase_reason(self, step: str, phase: Phase | None) -> str:
        if phase is None:
            return f"{self.name} is not loaded yet"
        if step == "rollback" and phase is Phase.SWITCHED:
            return (
                f"{self.name} is switched: the target is now the system of record; going back "
                "to the legacy source is a decision for the service owner and the cutover lead "
                "(see the runbook's rollback section)"
            )
        allowed = ", ".join(sorted(p.value for p in STEPS[step][0]))
        return f"{step} needs {self.name} to be {allowed}, and it is {phase.value}"

    def _refuse(
        self,
        step: str,
        phase: Phase | None,
        reason: str,
        *,
        hint: str | None = None,
        evidence: Mapping[str, Any] | None = None,
    ) -> None:
        self.project.ledger.record_audit(
            actor=actor(),
            service=self.name,
            action=f"cutover.{step}.refused",
            detail={
                "command": self.command,
                "phase": phase.value if phase else None,
                "reason": reason,
                **({"evidence": dict(evidence)} if evidence else {}),
            },
        )
        raise GateRefused(
            f"{self.name}: {step} refused: {reason}",
            hint=hint or f"next safe step: {next_step(phase, self.name)}",
        )

    def _set(self, phase: Phase, detail: Mapping[str, Any]) -> None:
        self.project.ledger.set_phase(self.name, phase.value, detail)

    def _record(
        self,
        step: str,
        before: Phase | None,
        after: Phase,
        evidence: Mapping[str, Any],
        seconds: float,
    ) -> None:
        ledger = self.project.ledger
        with ledger.together():
            ledger.set_phase(self.name, after.value, evidence)
            ledger.record_audit(
                actor=actor(),
                service=self.name,
                action=f"cutover.{step}",
                detail={
                    "command": self.command,
                    "from": before.value if before else None,
                    "to": after.value,
                    "seconds": round(seconds, 3),
                    "evidence": dict(evidence),
                },
            )


def run_deltas(
    project: Project,
    names: tuple[str, ...] | list[str] = (),
    *,
    command: str = "migrate delta",
    on_event: EventSink = ignore,
) -> list[DeltaReport]:
    """`migrate delta`: refused once a service is frozen or switched; a loaded (or rolled-back)
    service it catches up becomes syncing."""
    targets = list(names) or [s.name for s in project.config.select([]) if s.capture is not None]
    for service in targets:
        refuse_delta(project, service)
    reports = delta_services(project, targets, command=command, on_event=on_event)
    for report in reports:
        record_delta_phase(project, report.service, report)
    return reports


def record_delta_phase(project: Project, service: str, report: DeltaReport) -> None:
    """A delta outside the cutover moves a loaded (or rolled-back) service to syncing."""
    phase = current_phase(project, service)
    if phase in (Phase.LOADED, Phase.ROLLED_BACK):
        project.ledger.set_phase(service, Phase.SYNCING.value, {"delta_id": report.delta_id})


def refuse_delta(project: Project, service: str) -> None:
    """A plain delta is refused once the source is frozen (the cutover's sync applies the last
    changes, with its proof) and after the switch."""
    phase = current_phase(project, service)
    if phase is None or phase in STEPS["delta"][0]:
        return
    if phase is Phase.SWITCHED:
        hint = "the service is switched: the source is no longer its system of record"
    else:
        hint = f"the source is frozen: `migrate cutover {service} sync` applies the last changes"
    project.ledger.record_audit(
        actor=actor(),
        service=service,
        action="delta.refused",
        detail={"phase": phase.value, "reason": hint},
    )
    raise GateRefused(f"{service}: delta refused in phase {phase.value}", hint=hint)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _counts_text(counts: Mapping[str, int]) -> str:
    kinds = ("missing", "extra", "changed", "rejected")
    return ", ".join(f"{counts.get(k, 0)} {k}" for k in kinds)
