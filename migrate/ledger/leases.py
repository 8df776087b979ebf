"""Leases: one writer per service at a time, across processes and hosts sharing the ledger.

`run`, `delta`, `repair` and the cutover steps take their services' leases before they change
anything. A lease names its holder (the command, operator, host, process and since when) and
expires unless renewed: the holder renews it every third of its lifetime, so a holder killed
with SIGKILL is taken over once its lease expires (at once on the same host, when its process is
gone). Times are the hosts' own clocks in UTC, which a team sharing a ledger keeps in step.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from migrate.errors import VerificationError
from migrate.ledger import schema as t


@dataclass(frozen=True)
class LeaseRecord:
    service: str
    holder: str
    command: str
    actor: str
    host: str
    pid: int
    since: datetime
    renewed_at: datetime
    expires_at: datetime

    def describe(self) -> str:
        return (
            f"`{self.command}` by {self.actor} on {self.host} (pid {self.pid}) since "
            f"{self.since:%Y-%m-%d %H:%M:%S}Z"
        )


class LeaseHeld(VerificationError):
    """Another command holds a service's lease (exit 1: the step is refused, not failed)."""

    def __init__(self, record: LeaseRecord, *, why: str = "") -> None:
        self.record = record
        super().__init__(
            f"{record.service} is being changed by {record.describe()}; its lease runs until "
            f"{record.expires_at:%H:%M:%S}Z unless renewed{why}",
            hint="wait for that command to finish (or stop it) and run this one again; a holder "
            "that was killed is taken over once its lease expires",
        )


class LeaseLost(VerificationError):
    """This command's lease was taken over (it stalled past its lifetime): it must stop."""

    exit_code = 3


class LeaseStore:
    """The lease table of the Ledger (mixed into it; uses its transactions)."""

    version: int

    def _write(self, action: str) -> AbstractContextManager[sa.Connection]:
        raise NotImplementedError  # the Ledger provides it

    def _read(self, query: sa.Select[Any], action: str) -> list[sa.Row[Any]]:
        raise NotImplementedError  # the Ledger provides it

    def acquire_lease(
        self,
        service: str,
        *,
        holder: str,
        command: str,
        actor: str,
        host: str,
        pid: int,
        seconds: float,
        gone: bool = False,
    ) -> LeaseRecord:
        """Take the service's lease for `seconds`, or raise `LeaseHeld` naming its holder. An
        expired lease is taken over; so is one whose holder `gone` says is dead (the caller
        checked its host and process)."""
        leases = t.leases
        now = datetime.now(UTC)
        with self._write(f"taking the lease of {service}") as conn:
            row = conn.execute(
                sa.select(leases).where(leases.c.service == service).with_for_update()
            ).first()
            if row is not None:
                current = _record(row)
                mine = current.holder == holder
                if not mine and current.expires_at > now and not gone:
                    raise LeaseHeld(current)
                conn.execute(leases.delete().where(leases.c.service == service))
            record = LeaseRecord(
                service,
                holder,
                command,
                actor,
                host,
                pid,
                now,
                now,
                now + timedelta(seconds=seconds),
            )
            conn.execute(
                leases.insert().values(
                    service=service,
                    holder=holder,
                    command=command,
                    actor=actor,
                    host=host,
                    pid=pid,
                    since=record.since,
                    renewed_at=now,
                    expires_at=record.expires_at,
                )
            )
        return record

    def renew_lease(self, service: str, *, holder: str, seconds: float) -> bool:
        """Extend the lease while `holder` still has it; False when it was taken over."""
        leases = t.leases
        now = datetime.now(UTC)
        with self._write(f"renewing the lease of {service}") as conn:
            result = conn.execute(
                leases.update()
                .where(leases.c.service == service, leases.c.holder == holder)
                .values(renewed_at=now, expires_at=now + timedelta(seconds=seconds))
            )
        return result.rowcount == 1

    def release_lease(self, service: str, *, holder: str) -> None:
        leases = t.leases
        with self._write(f"releasing the lease of {service}") as conn:
            conn.execute(
                leases.delete().where(leases.c.service == service, leases.c.holder == holder)
            )

    def lease(self, service: str) -> LeaseRecord | None:
        """The service's lease, if one is held and not expired."""
        if self.version < 3:  # read as it is, from before leases: nobody holds one
            return None
        leases = t.leases
        rows = self._read(
            sa.select(leases).where(leases.c.service == service), f"reading the lease of {service}"
        )
        if not rows:
            return None
        record = _record(rows[0])
        return record if record.expires_at > datetime.now(UTC) else None


def _record(row: sa.Row[Any]) -> LeaseRecord:
    m = row._mapping
    return LeaseRecord(
        service=m["service"],
        holder=m["holder"],
        command=m["command"],
        actor=m["actor"],
        host=m["host"],
        pid=int(m["pid"]),
        since=m["since"],
        renewed_at=m["renewed_at"],
        expires_at=m["expires_at"],
    )
