"""The hosts of a Riak URL, taken in turn, skipping those in cool-off after a failure.

Shared by the synchronous client (reads) and the asyncio one (writes), which keep different kinds
of idle connection per host.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

C = TypeVar("C")

# A read that only a node whose riak_kv serves answers (404 "not found" from Riak itself): the
# probe, after /ping, of a target waiting for a node to come back.
PROBE_PATH = "/types/default/buckets/migrate-probe/keys/probe"


@dataclass
class Host(Generic[C]):
    host: str
    port: int
    idle: list[C] = field(default_factory=list)
    down_until: float = 0.0

    def mark_down(self, cool_off: float) -> None:
        self.down_until = time.monotonic() + cool_off

    def mark_up(self) -> None:
        self.down_until = 0.0


class HostRing(Generic[C]):
    """Health-aware round robin over a URL's hosts."""

    def __init__(self, addresses: Sequence[tuple[str, int]]) -> None:
        self.hosts: list[Host[C]] = [Host(h, p) for h, p in addresses]
        self._turn = itertools.count()

    def pick(self) -> Host[C]:
        """The next host in turn, skipping hosts in cool-off (unless all of them are)."""
        now = time.monotonic()
        start = next(self._turn)
        count = len(self.hosts)
        for step in range(count):
            host = self.hosts[(start + step) % count]
            if host.down_until <= now:
                return host
        return min(self.hosts, key=lambda h: h.down_until)

    def every_host_down(self) -> bool:
        """True when every host is in cool-off after a failure (the circuit breaker's cue)."""
        now = time.monotonic()
        return all(host.down_until > now for host in self.hosts)
