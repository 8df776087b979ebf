"""Progress events: the library reports what it does; the CLI renders, tests record."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ServiceStarted:
    service: str
    run_id: str
    resumed: bool
    chunks_total: int
    chunks_done: int
    action: str = "run"  # or "reconcile", "repair": what the chunks go through


@dataclass(frozen=True, slots=True)
class ChunkFinished:
    service: str
    chunk_id: str
    documents: int
    written: int
    unchanged: int
    rejects: int


@dataclass(frozen=True, slots=True)
class ServiceFinished:
    service: str
    run_id: str
    documents: int
    rejects: int
    seconds: float
    action: str = "run"


@dataclass(frozen=True, slots=True)
class Note:
    """Something an operator should read (a resumed run, a re-extract, a new run)."""

    service: str
    text: str


Event = ServiceStarted | ChunkFinished | ServiceFinished | Note
EventSink = Callable[[Event], None]


def ignore(_event: Event) -> None:
    """The default sink: a library call with no listener."""
