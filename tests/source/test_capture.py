"""Change capture per engine: what it records, that a position never loses a change (on
PostgreSQL, whose transactions commit out of the order they took numbers in), and the Oracle
statements built to Oracle's rules."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from postgres_server import PostgresServer

from migrate.errors import ConfigError
from migrate.source import Source
from migrate.source.capture import (
    CapturePlan,
    CaptureTable,
    OracleCapture,
    capture_engine,
    capture_plan,
)
from migrate.spec import ExtractSpec, NodeKind, NodeSpec

from .conftest import MakeDb

SPEC = ExtractSpec(
    "svc",
    "doc",
    "P",
    ("ID",),
    None,
    (
        NodeSpec("root", NodeKind.ROOT, "P", ("ID", "NAME", "GP")),
        NodeSpec("root.kids", NodeKind.EMBED, "K", ("KID", "NOTE"), "root", (("PID", "ID"),)),
        NodeSpec("root.gp", NodeKind.LOOKUP, "G", ("NAME",), "root", (("CODE", "GP"),)),
    ),
)


def _plan(source: Source) -> CapturePlan:
    return capture_plan("svc", "triggers", [SPEC], source.tables(SPEC))


def test_the_plan_logs_root_keys_and_link_columns(make_db: MakeDb) -> None:
    path = make_db(
        "CREATE TABLE P (ID INTEGER PRIMARY KEY, NAME TEXT, GP TEXT);"
        "CREATE TABLE K (KID INTEGER PRIMARY KEY, PID INTEGER, NOTE TEXT);"
        "CREATE TABLE G (CODE TEXT PRIMARY KEY, NAME TEXT);"
    )
    plan = _plan(Source(f"sqlite:///{path}"))
    assert plan.tables == (
        CaptureTable("G", ("CODE",)),
        CaptureTable("K", ("PID",)),
        CaptureTable("P", ("ID",)),
    )
    assert CapturePlan.from_json(plan.to_json()) == plan
    assert plan.fingerprint() != capture_plan("svc", "triggers", [SPEC.__class__(
        *[getattr(SPEC, f) for f in ("service", "doc_type", "root_table", "primary_key", "where")],
        SPEC.nodes[:2],
    )], Source(f"sqlite:///{path}").tables(SPEC)).fingerprint()  # fmt: skip


def test_sqlite_triggers_log_old_and_new_values_exactly(make_db: MakeDb) -> None:
    path = make_db(
        "CREATE TABLE P (ID NUMBER PRIMARY KEY, NAME TEXT, GP TEXT);"
        "CREATE TABLE K (KID INTEGER PRIMARY KEY, PID INTEGER, NOTE TEXT);"
        "CREATE TABLE G (CODE TEXT PRIMARY KEY, NAME TEXT);",
        {"P": [(1, "a", "x'y")], "K": [(10, 1, "n")], "G": [("x'y", "Surgery")]},
    )
    source = Source(f"sqlite:///{path}")
    capture = source.capture(_plan(source))
    assert not source.capture_installed(capture)
    source.install_capture(capture)
    assert source.capture_installed(capture)
    with source.snapshot() as snapshot:
        start = snapshot.capture_position(capture)
    assert start == "seq:0"
    with sqlite3.connect(path) as db:
        db.execute("UPDATE K SET PID = 2 WHERE KID = 10")  # moved: both parents
        db.execute("UPDATE G SET CODE = X'00FF' WHERE CODE = 'x''y'")  # a BLOB, quoted
        db.execute("DELETE FROM P WHERE ID = 1")
        db.execute("INSERT INTO P VALUES (2.5, 'b', NULL)")
    with source.snapshot() as snapshot:
        changes = snapshot.changes(capture, start)
        end = snapshot.capture_position(capture)
    assert [(c.table, c.op, c.old, c.new) for c in changes] == [
        ("K", "U", (1,), (2,)),
        ("G", "U", ("x'y",), (b"\x00\xff",)),
        ("P", "D", (1,), None),
        ("P", "I", None, (2.5,)),
    ]
    assert end == "seq:4" and source.pending(capture, end).count == 0
    pending = source.pending(capture, start)
    assert pending.count == 4 and pending.oldest is not None
    source.uninstall_capture(capture)
    with sqlite3.connect(path) as db:
        left = db.execute("SELECT name FROM sqlite_master WHERE name LIKE 'MIGRATE%'").fetchall()
    assert left == [] and not source.capture_installed(capture)
    source.close()


@pytest.mark.postgres
def test_postgres_never_loses_a_change_committed_out_of_order(
    postgres_server: PostgresServer, pg_url: str
) -> None:
    """Transaction A takes the first log number, B the second; B commits, a delta reads; then A
    commits. A plain "number > last" watermark would skip A for ever: a snapshot position does
    not."""
    setup: Any = postgres_server.connect(pg_url)
    setup.execute(
        "CREATE TABLE p (id integer PRIMARY KEY, name text, gp text);"
        "CREATE TABLE k (kid integer PRIMARY KEY, pid integer, note text);"
        "CREATE TABLE g (code text PRIMARY KEY, name text);"
    )
    setup.close()
    source = Source(pg_url)
    spec = ExtractSpec(
        "svc", "doc", "p", ("id",), None,
        (NodeSpec("root", NodeKind.ROOT, "p", ("id", "name", "gp")),
         NodeSpec("root.kids", NodeKind.EMBED, "k", ("kid", "note"), "root", (("pid", "id"),))),
    )  # fmt: skip
    plan = capture_plan("svc", "triggers", [spec], source.tables(spec))
    capture = source.capture(plan)
    source.install_capture(capture)
    with source.snapshot() as snapshot:
        start = snapshot.capture_position(capture)
    first: Any = postgres_server.connect(pg_url, autocommit=False)
    second: Any = postgres_server.connect(pg_url, autocommit=False)
    first.execute("INSERT INTO p VALUES (1, 'early number, late commit', NULL)")
    second.execute("INSERT INTO p VALUES (2, 'late number, early commit', NULL)")
    second.commit()
    with source.snapshot() as snapshot:
        seen = snapshot.changes(capture, start)
        middle = snapshot.capture_position(capture)
    assert [c.new for c in seen] == [("2",)]
    first.commit()
    with source.snapshot() as snapshot:
        later = snapshot.changes(capture, middle)
        end = snapshot.capture_position(capture)
    assert [c.new for c in later] == [("1",)]  # a lower number, committed after the read
    assert source.pending(capture, end).count == 0
    with source.snapshot() as snapshot:  # reading from the same position again: the same
        again = snapshot.changes(capture, middle)
    assert [c.new for c in again] == [("1",)]
    first.close()
    second.close()
    source.uninstall_capture(capture)
    assert not source.capture_installed(capture)
    source.close()


def test_oracle_statements_follow_oracles_rules() -> None:
    plan = CapturePlan(
        "pds",
        "triggers",
        (CaptureTable("PATIENTS", ("NHS_NUMBER",)), CaptureTable("ADDR", ("A", "B"))),
    )
    capture = OracleCapture(plan, schema="SPINE")
    install = "\n".join(capture.install())
    assert 'CREATE TABLE "SPINE"."MIGRATE_LOG_PDS"' in install and "ROWDEPENDENCIES" in install
    assert 'JSON_ARRAY(:NEW."A", :NEW."B" NULL ON NULL)' in install
    assert "FOR EACH ROW" in install and "LIMIT" not in install
    assert all(len(name) <= 128 for table in plan.tables for name in capture.trigger_names(table))
    sql, params = capture.read("scn:42")
    assert "ORA_ROWSCN > :since" in sql and params == {"since": 42}
    assert "%s" not in sql and "?" not in sql  # named binds only
    uninstall = capture.uninstall()
    assert uninstall[-1] == 'DROP TABLE "SPINE"."MIGRATE_LOG_PDS" PURGE'
    assert capture.decode('["9434765919", 12.5, null]') == ("9434765919", 12.5, None)


def test_engines_without_capture_say_what_to_do() -> None:
    plan = CapturePlan("pds", "triggers", ())
    with pytest.raises(ConfigError, match="not built for mysql"):
        capture_engine("mysql", plan, schema=None)
    with pytest.raises(ConfigError, match="'scn' is not built"):
        capture_engine("oracle", CapturePlan("pds", "scn", ()), schema=None)
    assert capture_engine("mysql", CapturePlan("pds", "watermark", ()), schema=None).supported


def test_positions_are_checked(tmp_path: Path) -> None:
    capture = capture_engine("sqlite", CapturePlan("pds", "triggers", ()), schema=None)
    from migrate.errors import SourceError

    with pytest.raises(SourceError, match="not a SQLite capture position"):
        capture.read("pg:1:2:")


def test_a_sqlite_snapshot_keeps_writers_of_other_processes_out(make_db: MakeDb) -> None:
    """The snapshot's SHARED lock must hold for its whole life. Reading the file's header with a
    descriptor that was then closed dropped it (POSIX locks belong to the process): another
    process's write committed under the snapshot, which then read two states of the data."""
    import subprocess
    import sys

    path = make_db("CREATE TABLE T (ID INTEGER PRIMARY KEY);", {"T": [(1,)]})
    write = (
        "import sqlite3, sys\n"
        "db = sqlite3.connect(sys.argv[1], timeout=0.5)\n"
        "db.execute('INSERT INTO T VALUES (2)')\n"
        "db.commit()\n"
    )
    source = Source(f"sqlite:///{path}")
    with source.snapshot() as snapshot:
        assert snapshot.token is not None  # its header was read, as a shared view reads it
        blocked = subprocess.run([sys.executable, "-c", write, str(path)], capture_output=True)
        assert blocked.returncode != 0 and b"locked" in blocked.stderr
    done = subprocess.run([sys.executable, "-c", write, str(path)], capture_output=True)
    assert done.returncode == 0, done.stderr
    source.close()
