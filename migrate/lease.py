"""Holding services' leases for the length of a command (see `migrate.ledger.leases`).

The leases are taken together, in name order, before the command changes anything; a thread
renews them every third of their lifetime while the command runs; they are released when it
ends, however it ends. Should a renewal find a lease taken over (this process stalled past its
lifetime), `check` fails the command at its next step instead of letting two writers meet.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import threading
from collections.abc import Iterator, Sequence

from migrate.errors import LedgerError, MigrateError, mask_secrets
from migrate.ledger import Ledger
from migrate.ledger.leases import LeaseHeld, LeaseLost, LeaseRecord


class Lease:
    """Leases held by this process for one command."""

    def __init__(self, ledger: Ledger, services: Sequence[str], seconds: float) -> None:
        self.ledger = ledger
        self.services = sorted(set(services))
        self.seconds = seconds
        self.holder = secrets.token_hex(8)
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> None:
        """Raise `LeaseLost` when a renewal found a lease taken over."""
        if self.lost is not None:
            raise LeaseLost(
                f"{self.lost}'s lease was taken over by another command while this one stalled",
                hint="this command stopped before changing anything more; see `migrate status` "
                "for who holds it, and run again when it is free",
            )

    def _renew(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            for service in self.services:
                try:
                    if not self.ledger.renew_lease(
                        service, holder=self.holder, seconds=self.seconds
                    ):
                        self.lost = service
                except MigrateError:
                    continue  # the ledger is unreachable now: the next renewal tries again

    def start(self) -> None:
        self._thread = threading.Thread(target=self._renew, name="migrate-lease", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for service in self.services:
            with contextlib.suppress(LedgerError):
                self.ledger.release_lease(service, holder=self.holder)


@contextlib.contextmanager
def holding(
    ledger: Ledger, services: Sequence[str], *, command: str, actor: str, seconds: float
) -> Iterator[Lease]:
    """Hold the services' leases while the block runs; `LeaseHeld` (exit 1) names a holder."""
    lease = Lease(ledger, services, seconds)
    host = socket.gethostname()
    taken: list[str] = []
    try:
        for service in lease.services:
            _take(ledger, lease, service, command=mask_secrets(command), actor=actor, host=host)
            taken.append(service)
        lease.start()
        yield lease
    finally:
        lease.services = taken
        lease.release()


def _take(
    ledger: Ledger, lease: Lease, service: str, *, command: str, actor: str, host: str
) -> LeaseRecord:
    def acquire(gone: bool) -> LeaseRecord:
        return ledger.acquire_lease(
            service,
            holder=lease.holder,
            command=command,
            actor=actor,
            host=host,
            pid=os.getpid(),
            seconds=lease.seconds,
            gone=gone,
        )

    try:
        return acquire(False)
    except LeaseHeld as held:
        if held.record.host != host or _alive(held.record.pid):
            raise
        return acquire(True)  # its holder was killed on this host: no need to wait


def _alive(pid: int) -> bool:
    """Whether a process of this host still runs under `pid`."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


__all__ = ["Lease", "LeaseHeld", "LeaseLost", "holding"]
