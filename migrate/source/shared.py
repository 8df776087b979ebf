"""Reading a chunk in another process under the snapshot of the process that planned it.

The planning process shares its view (`share_view`) when the source can prove another connection
sees the same data (see `migrate.source.snapshot`); a worker joins it once (`read_chunk` keeps one
joined view per thread) and reads chunks there, so extraction runs on every core. The view holds
no secret: the worker reads the password from the environment variable the project names. A
server's view can be joined from another host too (a Dask worker's); a SQLite file's cannot
(`travels`).

A SQLite writer waiting to commit (it holds PENDING until the snapshot ends) keeps new readers
out, so a worker may not get in: after `busy_seconds` its read fails with `ViewBusy`, and the
caller reads that chunk on the snapshot's own connection, which holds its lock already. A worker
waits so once per view: a writer that waits for the snapshot to end waits for as long as the
service's run, so the worker's later chunks of that view are handed back at once while it is
there (they are read as soon as it is gone: a writer whose own timeout ran out). A MariaDB
worker whose own snapshot is not at the view's binary-log position fails the same way (and says
so at once for the view's later chunks).

A worker whose connection breaks mid-chunk (`ConnectionLost`: nothing was staged) joins the view
again and reads the chunk once more: on PostgreSQL the exported snapshot outlives the worker's
connection as long as the planning process holds it. When that is gone too, joining fails and
the run stops with a message (exit 3).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from contextlib import ExitStack
from dataclasses import dataclass, replace
from multiprocessing.util import Finalize
from typing import Any, TypeVar

import pyarrow as pa
from sqlalchemy.engine import make_url

from migrate.errors import SourceError
from migrate.schema import TableInfo
from migrate.source.chunks import Bound, ChunkRange
from migrate.source.dialects import ViewBusy
from migrate.source.engine import Source
from migrate.source.snapshot import ConnectionLost, Snapshot
from migrate.spec import ExtractSpec

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class SharedView:
    """What another process needs to read under a snapshot: where, which view, which tables."""

    url: str  # the password hidden; it is read from `password_env`
    password_env: str | None
    token: str
    marker: str
    tables: tuple[TableInfo, ...]
    busy_seconds: float = 5.0  # how long a SQLite reader waits for a lock before `ViewBusy`
    schema: str | None = None  # the schema the tables are read from (`Source.schema`)
    travels: bool = True  # whether a process on another host can join it (not SQLite's)


@dataclass(frozen=True, slots=True)
class ChunkRead:
    """One chunk to read under a shared view (its bounds as the ledger keeps them)."""

    view: SharedView
    index: int
    lo: str | None
    hi: str | None
    keys: tuple[Bound, ...] | None = None  # only these root keys of the chunk (a delta's)


def share_view(
    source: Source, snapshot: Snapshot, specs: Iterable[ExtractSpec]
) -> SharedView | None:
    """The snapshot's view for other processes, or None where the source cannot share it (or
    needs a password that is not in an environment variable another process could read)."""
    if snapshot.token is None:
        return None
    if source.engine.url.password is not None and source.password_env is None:
        return None
    tables: dict[str, TableInfo] = {}
    for spec in specs:
        tables.update({t.name: t for t in source.tables(spec).values()})
    return SharedView(
        source.display_url,
        source.password_env,
        snapshot.token,
        snapshot.marker,
        tuple(tables.values()),
        schema=source.schema,
        travels=source.rules.views_travel,
    )


class _Joined:
    """The one view this thread has joined (a worker serves one reconcile or run at a time; a
    Dask worker may run chunks on several threads, each with a view of its own)."""

    def __init__(self) -> None:
        self.key: tuple[str, str] | None = None
        self.refused: tuple[str, str] | None = None  # a view this process cannot join
        self.waited: tuple[str, str] | None = None  # a view a writer kept this process out of
        self.source: Source | None = None
        self.snapshot: Snapshot | None = None
        self._stack = ExitStack()
        self._finalizer: Any = None

    def get(self, view: SharedView) -> Snapshot:
        key = (view.url, view.token)
        if self.key == key and self.source is not None and self.snapshot is not None:
            # The same view again (SQLite: nothing committed since; the next read proves it),
            # maybe for another service: its tables as the planning process reflected them.
            self.source.remember(view.tables)
            return self.snapshot
        self.leave()
        if self.refused == key:
            raise ViewBusy(
                f"this worker cannot join the snapshot {view.marker}",
                hint="the chunk is read on the snapshot's own connection instead",
            )
        password = None
        if view.password_env is not None:
            password = os.environ.get(view.password_env)
            if password is None:
                raise SourceError(
                    f"a worker process cannot read {view.password_env}, which holds the source "
                    "password",
                    hint=f"export {view.password_env} in the shell that runs migrate",
                )
        url = view.url
        if view.token.startswith("sqlite:"):
            wait = 0.0 if self.waited == key else view.busy_seconds
            url = str(make_url(url).update_query_dict({"timeout": str(wait)}))
        try:
            source = Source(
                url, password=password, password_env=view.password_env, schema=view.schema
            )
            self._stack.callback(source.close)
            source.remember(view.tables)
            self.snapshot = self._stack.enter_context(source.join(view.token, view.marker))
            self.source = source
        except ViewBusy:
            if not view.token.startswith("sqlite:"):  # the view's point is past: for good
                self.refused = key
            self.leave()
            raise
        except BaseException:
            self.leave()
            raise
        self.key = key
        if self._finalizer is None:  # closed when a worker process exits normally
            self._finalizer = Finalize(self, self.leave, exitpriority=10)
        return self.snapshot

    def leave(self) -> None:
        self.key = self.source = self.snapshot = None
        self._stack.close()


class _PerThread(threading.local):
    def __init__(self) -> None:
        self.joined = _Joined()


_THREADS = _PerThread()
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6


def read_chunk(read: ChunkRead, spec: ExtractSpec) -> dict[str, pa.Table]:
    """The chunk's rows under the shared view, as the planning process would have read them."""
    try:
        return _read_once(read, spec)
    except ConnectionLost:
        _THREADS.joined.leave()  # this worker's connection broke: join the view again
        return _read_once(read, spec)


def _read_once(read: ChunkRead, spec: ExtractSpec) -> dict[str, pa.Table]:
    joined = _THREADS.joined
    try:
        snapshot = joined.get(read.view)
        snapshot.resume()
    except ViewBusy:
        raise
    except Exception as exc:
        if _busy(exc):
            key = (read.view.url, read.view.token)
            what = (
                f"a worker waited {read.view.busy_seconds:g} s for a read lock on the source"
                if joined.waited != key
                else "a writer waiting to commit still keeps the workers out of the source"
            )
            joined.leave()
            joined.waited = key  # the next chunks of this view do not wait for the writer
            raise ViewBusy(
                f"{what} (chunk {read.index})",
                hint="a writer is waiting to commit; the chunk is read on the snapshot's own "
                "connection instead",
            ) from None
        raise
    try:
        bounds = ChunkRange.from_bounds_json(read.index, read.lo, read.hi)
        return snapshot.extract(spec, replace(bounds, keys=read.keys))
    finally:
        snapshot.pause()


def _busy(exc: BaseException) -> bool:
    """SQLite's BUSY or LOCKED, raised directly or as the cause of a SourceError."""
    for error in (exc, exc.__cause__):
        code = getattr(error, "sqlite_errorcode", None)
        if isinstance(code, int) and code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED):
            return True
    return False


def settle(outcome: Future[_T], here: Callable[[], _T] | None) -> _T:
    """A worker's result; for a chunk the worker could not get into (`ViewBusy`), `here` does
    the same work on the snapshot's own connection."""
    try:
        return outcome.result()
    except ViewBusy:
        if here is None:
            raise
        return here()


def leave_view() -> None:
    """Close this thread's joined view (the next read joins again)."""
    joined = _THREADS.joined
    joined.leave()
    joined.refused = joined.waited = None


__all__ = [
    "ChunkRead",
    "SharedView",
    "ViewBusy",
    "leave_view",
    "read_chunk",
    "settle",
    "share_view",
]
