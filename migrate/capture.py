"""A service's change capture as a command sees it: install, status, uninstall, and the check
that `run` and `delta` make before they rely on it.

The capture records every table the service's mapping reads (see `migrate.source.capture`); what
it records is fingerprinted in the ledger, so a mapping that later reads other tables, or links
them otherwise, is told to reinstall it instead of silently missing changes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from migrate.config import ServiceConfig
from migrate.errors import ConfigError, VerificationError
from migrate.ledger.cutover import CaptureRecord
from migrate.project import Project, actor
from migrate.schema import TableInfo
from migrate.source.capture import CaptureEngine, CapturePlan, WatermarkCapture, capture_plan


@dataclass(frozen=True, slots=True)
class CaptureStatus:
    service: str
    mode: str | None  # as configured
    installed: bool
    current: bool  # what is installed records what the mapping reads now
    tables: tuple[str, ...]
    position: str | None  # where the next delta starts
    pending: int | None  # changes logged after it
    oldest: dt.datetime | None  # when the oldest of them was logged

    def lag_seconds(self, now: dt.datetime | None = None) -> float | None:
        if self.oldest is None:
            return None
        return ((now or dt.datetime.now(dt.UTC)) - self.oldest).total_seconds()

    def as_json(self) -> dict[str, object]:
        lag = self.lag_seconds()
        return {
            "service": self.service,
            "mode": self.mode,
            "installed": self.installed,
            "current": self.current,
            "tables": list(self.tables),
            "position": self.position,
            "pending": self.pending,
            "oldest_pending_at": self.oldest.isoformat() if self.oldest else None,
            "lag_seconds": None if lag is None else round(lag, 3),
        }


def plan_of(project: Project, service: ServiceConfig) -> CapturePlan:
    """What the service's capture must record, for its mapping as it is now."""
    if service.capture is None:
        raise ConfigError(
            f"{service.name} has no change capture configured",
            where=str(project.config.path),
            hint=f'set capture = "triggers" under [services.{service.name}] in migrate.toml',
        )
    plan = project.plan(service)
    tables: dict[str, TableInfo] = {}
    for doc in plan.doc_types:
        tables.update(project.source.tables(doc.extract))
    specs = [doc.extract for doc in plan.doc_types]
    return capture_plan(
        service.name, service.capture, specs, tables, watermark=service.watermark_column
    )


def engine_of(project: Project, service: ServiceConfig) -> CaptureEngine:
    return project.source.capture(plan_of(project, service))


def require(project: Project, service: ServiceConfig) -> CaptureEngine:
    """The installed, current capture of the service, or an error (exit 2) saying what to run."""
    engine = engine_of(project, service)
    record = project.ledger.capture_record(service.name)
    if record is None or not _installed(project, engine, record):
        raise ConfigError(
            f"{service.name} has capture = {service.capture!r} but its change capture is not "
            "installed",
            hint=f"run `migrate capture install {service.name}` before the bulk run (then "
            f"`migrate run {service.name} --fresh` if it already ran)",
        )
    if record.fingerprint != engine.plan.fingerprint():
        raise ConfigError(
            f"{service.name}'s change capture records other tables or columns than its mapping "
            "reads now",
            hint=f"the mapping changed since `migrate capture install {service.name}`: "
            f"uninstall and install it again, then `migrate run {service.name} --fresh`",
        )
    return engine


def install(project: Project, name: str, *, command: str) -> CaptureStatus:
    """Install the service's capture (log table and triggers), holding its lease. Installing a
    capture that is already there and current changes nothing."""
    service = project.config.service(name)
    with project.hold([name], command):
        engine = engine_of(project, service)
        record = project.ledger.capture_record(name)
        there = _installed(project, engine, record)
        if there and record is not None and record.fingerprint == engine.plan.fingerprint():
            return status(project, name)
        if there:
            raise VerificationError(
                f"{name} already has a change capture installed, for "
                + ("another mapping" if record is not None else "no run this ledger knows"),
                hint=f"`migrate capture uninstall {name}` first (its pending changes are lost; "
                f"then `migrate run {name} --fresh`)",
            )
        project.source.install_capture(engine)
        project.ledger.record_capture(
            name,
            mode=engine.plan.mode,
            plan=engine.plan.to_json(),
            fingerprint=engine.plan.fingerprint(),
            actor=actor(),
        )
        project.ledger.record_audit(
            actor=actor(),
            service=name,
            action="capture.install",
            detail={
                "command": command,
                "mode": engine.plan.mode,
                "tables": [t.name for t in engine.plan.tables],
            },
        )
        return status(project, name)


def uninstall(project: Project, name: str, *, command: str) -> CaptureStatus:
    """Remove every object the capture made, and the ledger's record of it."""
    service = project.config.service(name)
    with project.hold([name], command):
        record = project.ledger.capture_record(name)
        plan = (
            CapturePlan.from_json(record.plan) if record is not None else plan_of(project, service)
        )
        engine = project.source.capture(plan)
        project.source.uninstall_capture(engine)
        project.ledger.forget_capture(name)
        project.ledger.record_audit(
            actor=actor(),
            service=name,
            action="capture.uninstall",
            detail={"command": command, "tables": [t.name for t in plan.tables]},
        )
        return status(project, name)


def status(project: Project, name: str) -> CaptureStatus:
    """What is installed for the service, and the changes waiting for its next delta."""
    service = project.config.service(name)
    if service.capture is None:
        return CaptureStatus(name, None, False, False, (), None, None, None)
    engine = engine_of(project, service)
    record = project.ledger.capture_record(name)
    installed = _installed(project, engine, record)
    current = record is not None and record.fingerprint == engine.plan.fingerprint()
    position = project.ledger.position(name)
    pending = oldest = None
    if installed and position is not None:
        found = project.source.pending(engine, position.position)
        pending, oldest = found.count, found.oldest
    return CaptureStatus(
        name,
        service.capture,
        installed,
        installed and current,
        tuple(t.name for t in engine.plan.tables),
        position.position if position else None,
        pending,
        oldest,
    )


def _installed(project: Project, engine: CaptureEngine, record: CaptureRecord | None) -> bool:
    """Whether the capture's objects are in the source; a watermark capture has none, and is
    installed when the ledger records it."""
    if isinstance(engine, WatermarkCapture):
        return record is not None
    return project.source.capture_installed(engine)
