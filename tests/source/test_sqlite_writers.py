"""SQLite sources and writers: while a snapshot of a rollback-journal source is open, a writer in
another process waits (its commit needs the SHARED locks gone), however the view was begun,
joined, paused and resumed. The probes write from another process: SQLite keeps the locks of the
connections of one process in its own bookkeeping, so a writer thread of this process would be
kept out even when the operating system no longer holds the process's lock for it."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from migrate.errors import SourceError
from migrate.source import Source

from .conftest import MakeDb

DDL = "CREATE TABLE ORDERS (ORDER_ID NUMBER(10) PRIMARY KEY, NOTE VARCHAR2(20));"
ROWS = {"ORDERS": [(i, f"note {i}") for i in range(1, 41)]}

# Tries to commit a write at once (no busy timeout): prints "committed" or SQLite's refusal.
_WRITER = textwrap.dedent(
    """
    import sqlite3, sys
    db = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute("UPDATE ORDERS SET NOTE = 'written' WHERE ORDER_ID = 1")
        db.execute("COMMIT")
        print("committed")
    except sqlite3.OperationalError as exc:
        print(exc)
    finally:
        db.close()
    """
)


def _write_from_another_process(database: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _WRITER, str(database)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def test_a_writer_of_another_process_waits_while_a_snapshot_is_open(make_db: MakeDb) -> None:
    """Reading the view's token (the file's change counter, from its header) must not release
    the read transaction's lock: POSIX locks go with any descriptor of the file that the process
    closes."""
    path = make_db(DDL, ROWS)
    source = Source(f"sqlite:///{path}")
    try:
        with source.snapshot() as snapshot:
            assert snapshot.token is not None
            assert _write_from_another_process(path) == "database is locked"
            source.reflect()  # reflection reads the file on other connections meanwhile
            assert _write_from_another_process(path) == "database is locked"
        assert _write_from_another_process(path) == "committed"  # the snapshot ended
    finally:
        source.close()


def test_a_joined_view_keeps_writers_out_after_a_pause_and_when_the_first_view_ends(
    make_db: MakeDb,
) -> None:
    """A worker's view (joined by token) holds its own lock while it reads, also when the view
    it joined ended first; paused between chunks it holds none, and resumed it holds it again."""
    path = make_db(DDL, ROWS)
    planning, worker = Source(f"sqlite:///{path}"), Source(f"sqlite:///{path}")
    try:
        with planning.snapshot() as first:
            assert first.token is not None
            joined_view = worker.join(first.token, first.marker)
            joined = joined_view.__enter__()
        try:
            assert _write_from_another_process(path) == "database is locked"
            joined.pause()
            assert _write_from_another_process(path) == "committed"
            # A later write: resuming proves the view again, and refuses the changed file.
            with sqlite3.connect(path) as db:
                db.execute("UPDATE ORDERS SET NOTE = 'again' WHERE ORDER_ID = 2")
        finally:
            joined_view.__exit__(None, None, None)
        with planning.snapshot() as second:
            assert second.token is not None
            with worker.join(second.token, second.marker) as again:
                again.pause()
                again.resume()
                assert _write_from_another_process(path) == "database is locked"
            assert _write_from_another_process(path) == "database is locked"  # `second` holds
        assert _write_from_another_process(path) == "committed"
    finally:
        planning.close()
        worker.close()


def test_a_resumed_view_refuses_a_file_changed_while_it_was_paused(make_db: MakeDb) -> None:
    path = make_db(DDL, ROWS)
    planning, worker = Source(f"sqlite:///{path}"), Source(f"sqlite:///{path}")
    try:
        with planning.snapshot() as first:
            assert first.token is not None
            token, marker = first.token, first.marker
        with worker.join(token, marker) as joined:
            joined.pause()
            assert _write_from_another_process(path) == "committed"
            with pytest.raises(SourceError, match="the source changed since the snapshot"):
                joined.resume()
    finally:
        planning.close()
        worker.close()


def test_two_snapshots_never_share_a_marker(make_db: MakeDb) -> None:
    """The ledger tells a run's snapshots apart by their markers (a resumed run says when it
    reads under a new one): two snapshots within one second, of an unchanged file, differ."""
    path = make_db(DDL, ROWS)
    source = Source(f"sqlite:///{path}")
    try:
        markers = []
        for _ in range(3):
            with source.snapshot() as snapshot:
                markers.append(snapshot.marker)
        assert len(set(markers)) == 3
        assert all(m.startswith("sqlite:data_version=") and ";counter=" in m for m in markers)
    finally:
        source.close()
