"""A service's runbook as the ledger has lived it: each step of the cutover rehearsal, done or
pending, when it was last done and how long it took. A rehearsal's timings are the timed plan of
the real weekend."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from migrate.cutover import current_phase, next_step
from migrate.ledger import RunStatus
from migrate.project import Project


@dataclass(frozen=True, slots=True)
class RunbookStep:
    number: int
    command: str
    purpose: str
    done: bool
    at: datetime | None  # when it was last done
    seconds: float | None  # how long it took then
    times: int  # how often it was done

    def as_json(self) -> dict[str, Any]:
        return {
            "step": self.number,
            "command": self.command,
            "purpose": self.purpose,
            "done": self.done,
            "at": self.at.isoformat() if self.at else None,
            "seconds": None if self.seconds is None else round(self.seconds, 3),
            "times": self.times,
        }


def runbook(project: Project, service: str) -> tuple[list[RunbookStep], str]:
    """The service's steps, and the next safe one."""
    project.config.service(service)
    audit = project.ledger.audit_log(service)
    steps: list[RunbookStep] = []

    def from_audit(command: str, purpose: str, action: str) -> None:
        rows = [row for row in audit if row["action"] == action]
        last = rows[-1] if rows else None
        seconds = last["detail"].get("seconds") if last else None
        steps.append(
            RunbookStep(
                len(steps) + 1,
                command,
                purpose,
                bool(rows),
                last["at"] if last else None,
                seconds,
                len(rows),
            )
        )

    from_audit(
        f"migrate capture install {service}", "record every change the mapping reads",
        "capture.install",
    )  # fmt: skip
    run = project.ledger.latest_run(service)
    complete = run is not None and run.status is RunStatus.COMPLETE
    steps.append(
        RunbookStep(
            len(steps) + 1,
            f"migrate run {service}",
            "bulk load from one snapshot, verified against staging",
            complete,
            run.finished_at if run and complete else None,
            (run.finished_at - run.started_at).total_seconds()
            if run and complete and run.finished_at
            else None,
            1 if complete else 0,
        )
    )
    deltas = [
        d for d in project.ledger.deltas(service) if run is not None and d.run_id == run.run_id
    ]
    done = [d for d in deltas if d.status is RunStatus.COMPLETE and d.finished_at]
    last = done[-1] if done else None
    steps.append(
        RunbookStep(
            len(steps) + 1,
            f"migrate delta {service}",
            "catch up with the source (repeat until the weekend)",
            bool(done),
            last.finished_at if last else None,
            (last.finished_at - last.started_at).total_seconds()
            if last and last.finished_at
            else None,
            len(done),
        )
    )
    for step, purpose in (
        ("freeze", "the source is read-only for the service from now"),
        ("sync", "the final delta, proving no change is left"),
        ("verify", "a full reconciliation against the source, recorded"),
        ("switch", "the target becomes the system of record"),
    ):
        from_audit(f"migrate cutover {service} {step}", purpose, f"cutover.{step}")
    return steps, next_step(current_phase(project, service), service)
