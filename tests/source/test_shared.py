"""Reading chunks in another process under the planning process's snapshot: only where the
source proves the view is the same, and never with a secret in what is handed over."""

from __future__ import annotations

import pickle
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import replace

import pyarrow as pa
import pytest
from postgres_server import PostgresServer
from support import WaitingWriter

from migrate.errors import SourceError
from migrate.processes import worker_pool
from migrate.source import ChunkRange, Source
from migrate.source.shared import (
    ChunkRead,
    SharedView,
    ViewBusy,
    leave_view,
    read_chunk,
    share_view,
)
from migrate.spec import ExtractSpec, NodeKind, NodeSpec

from .conftest import MakeDb

DDL = """
CREATE TABLE ORDERS (ORDER_ID NUMBER(10) PRIMARY KEY, REGION VARCHAR2(5));
CREATE TABLE ITEMS (ITEM_ID NUMBER(10) PRIMARY KEY, ORDER_ID NUMBER(10), QTY NUMBER(5));
CREATE TABLE REGIONS (REGION VARCHAR2(5) PRIMARY KEY, NAME VARCHAR2(20));
"""
ROWS = {
    "ORDERS": [(i, f"R{i % 3}") for i in range(1, 41)],
    "ITEMS": [(1000 + i, i % 40 + 1, i % 7) for i in range(90)],
    "REGIONS": [(f"R{i}", f"Region {i}") for i in range(3)],
}


def _order_spec(name: Callable[[str], str]) -> ExtractSpec:
    """Orders with their items embedded, the names spelled by `name` (SQLite's demo tables are
    in Oracle's upper case, PostgreSQL folds unquoted names to lower case)."""
    return ExtractSpec(
        "shop", "order", name("ORDERS"), (name("ORDER_ID"),), None,
        (
            NodeSpec("root", NodeKind.ROOT, name("ORDERS"), (name("ORDER_ID"), name("REGION"))),
            NodeSpec(
                "root.items", NodeKind.EMBED, name("ITEMS"),
                (name("ITEM_ID"), name("ORDER_ID"), name("QTY")),
                parent_id="root", link=((name("ORDER_ID"), name("ORDER_ID")),),
            ),
        ),
    )  # fmt: skip


SPEC = _order_spec(str.upper)


@pytest.fixture(autouse=True)
def _leave() -> Iterator[None]:
    yield
    leave_view()  # each test joins its own view


def _reads(view: SharedView, chunks: list[ChunkRange]) -> list[ChunkRead]:
    return [ChunkRead(view, c.index, *c.bounds_json()) for c in chunks]


def _read_in_worker(read: ChunkRead) -> dict[str, pa.Table]:
    return read_chunk(read, SPEC)


def test_sqlite_chunks_read_elsewhere_equal_the_snapshot(make_db: MakeDb) -> None:
    source = Source(f"sqlite:///{make_db(DDL, ROWS)}")
    with source.snapshot() as snapshot:
        view = share_view(source, snapshot, [SPEC])
        assert view is not None and view.token.startswith("sqlite:counter=")
        chunks = snapshot.plan_chunks(SPEC, 7)
        expected = [snapshot.extract(SPEC, c) for c in chunks]
        with worker_pool(2) as pool:
            got = list(pool.map(_read_in_worker, _reads(view, chunks)))
    assert len(chunks) == 6
    for want, found in zip(expected, got, strict=True):
        assert want.keys() == found.keys()
        for node in want:
            assert found[node].equals(want[node])
    source.close()


def test_sqlite_writers_wait_while_the_snapshot_is_open(make_db: MakeDb) -> None:
    """Why a second connection sees the same rows: the snapshot's read transaction keeps every
    writer out (rollback journal), so nothing can commit until it ends."""
    path = make_db(DDL, ROWS)
    source = Source(f"sqlite:///{path}")
    with source.snapshot() as snapshot:
        assert snapshot.token is not None
        writer = sqlite3.connect(path, timeout=0.05)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            writer.execute("UPDATE ORDERS SET REGION = 'X' WHERE ORDER_ID = 1")
            writer.commit()
        writer.close()
    source.close()


def test_sqlite_change_after_the_snapshot_is_refused(make_db: MakeDb) -> None:
    path = make_db(DDL, ROWS)
    source = Source(f"sqlite:///{path}")
    with source.snapshot() as snapshot:
        view = share_view(source, snapshot, [SPEC])
        chunks = snapshot.plan_chunks(SPEC, 25)
    assert view is not None
    first, second = _reads(view, chunks)
    assert read_chunk(first, SPEC)["root"].num_rows == 25  # joined; paused between chunks
    with sqlite3.connect(path) as writer:
        writer.execute("UPDATE ORDERS SET REGION = 'X' WHERE ORDER_ID = 30")
    with pytest.raises(SourceError, match="changed since the snapshot was taken"):
        read_chunk(second, SPEC)  # the joined view is checked again before each read
    leave_view()
    with pytest.raises(SourceError, match="changed since the snapshot was taken"):
        read_chunk(second, SPEC)  # and when it is joined afresh
    source.close()


def test_sqlite_in_wal_mode_is_not_shared(make_db: MakeDb) -> None:
    path = make_db(DDL, ROWS)
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
    source = Source(f"sqlite:///{path}")
    with source.snapshot() as snapshot:
        assert snapshot.token is None  # each WAL reader has its own view
        assert share_view(source, snapshot, [SPEC]) is None
    source.close()


PG_DDL = """
CREATE TABLE orders (order_id integer PRIMARY KEY, region varchar(5));
CREATE TABLE items (item_id integer PRIMARY KEY, order_id integer, qty integer);
"""
PG_SPEC = _order_spec(str.lower)


@pytest.mark.postgres
def test_postgres_workers_read_the_exported_snapshot(
    postgres_server: PostgresServer, pg_url: str
) -> None:
    writer = postgres_server.connect(pg_url)
    writer.execute(PG_DDL)
    writer.execute("INSERT INTO orders SELECT i, 'R' || i % 3 FROM generate_series(1, 30) i")
    writer.execute(
        "INSERT INTO items SELECT 1000 + i, i % 30 + 1, i % 7 FROM generate_series(1, 80) i"
    )
    source = Source(pg_url)
    with source.snapshot() as snapshot:
        view = share_view(source, snapshot, [PG_SPEC])
        assert view is not None and view.token.startswith("postgresql:")
        chunks = snapshot.plan_chunks(PG_SPEC, 8)
        expected = [snapshot.extract(PG_SPEC, c) for c in chunks]
        # committed after the snapshot: invisible to it, so to every reader that joins it
        writer.execute("UPDATE orders SET region = 'X'")
        writer.execute("INSERT INTO items VALUES (5000, 1, 1)")
        got = [read_chunk(r, PG_SPEC) for r in _reads(view, chunks)]
    for want, found in zip(expected, got, strict=True):
        for node in want:
            assert found[node].equals(want[node])
    assert all("X" not in t["root"].column("region").to_pylist() for t in got)
    writer.close()
    source.close()


def _pg_source(server: PostgresServer, url: str, **password: str) -> Source:
    writer = server.connect(url)
    writer.execute(PG_DDL)
    writer.execute("INSERT INTO orders VALUES (1, 'R1')")
    writer.close()
    return Source(url, **password)


@pytest.mark.postgres
def test_the_view_holds_no_password_and_needs_the_variable(
    postgres_server: PostgresServer, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the test server trusts local connections, so any password logs in
    monkeypatch.setenv("PW_X", "s3cret-pw")
    source = _pg_source(postgres_server, pg_url, password="s3cret-pw", password_env="PW_X")
    with source.snapshot() as snapshot:
        view = share_view(source, snapshot, [PG_SPEC])
        (chunk,) = snapshot.plan_chunks(PG_SPEC, 100)
        assert view is not None and view.password_env == "PW_X"
        assert b"s3cret-pw" not in pickle.dumps(view)
        read = ChunkRead(view, 0, *chunk.bounds_json())
        assert read_chunk(read, PG_SPEC)["root"].num_rows == 1
        leave_view()
        monkeypatch.delenv("PW_X")
        with pytest.raises(SourceError, match="cannot read PW_X"):
            read_chunk(read, PG_SPEC)
    source.close()


@pytest.mark.postgres
def test_a_password_from_nowhere_else_is_not_shared(
    postgres_server: PostgresServer, pg_url: str
) -> None:
    source = _pg_source(postgres_server, pg_url, password="s3cret-pw")
    with source.snapshot() as snapshot:
        assert snapshot.token is not None
        assert share_view(source, snapshot, [PG_SPEC]) is None  # another process could not log in
    source.close()


def test_a_writer_waiting_to_commit_keeps_workers_out(make_db: MakeDb) -> None:
    """A writer waiting for the snapshot to end holds PENDING: no new reader gets in, so a
    worker gives up after `busy_seconds` with ViewBusy (its caller then reads the chunk on the
    snapshot's own connection, which holds its lock already)."""
    path = make_db(DDL, ROWS)
    source = Source(f"sqlite:///{path}")
    with source.snapshot() as snapshot:
        view = share_view(source, snapshot, [SPEC])
        assert view is not None
        (chunk,) = snapshot.plan_chunks(SPEC, 100)
        writer = WaitingWriter(path)
        read = ChunkRead(replace(view, busy_seconds=0.05), 0, *chunk.bounds_json())
        with pytest.raises(ViewBusy, match=r"waited 0\.05 s for a read lock"):
            read_chunk(read, SPEC)
        assert snapshot.extract(SPEC, chunk)["root"].num_rows == 40  # the snapshot reads on
    writer.finish()
    source.close()


def test_a_worker_waits_for_a_waiting_writer_once_per_view(make_db: MakeDb) -> None:
    """A writer waiting to commit waits for the snapshot to end, so a worker that waited
    `busy_seconds` once hands the view's next chunks back at once (no wait per chunk)."""
    path = make_db(DDL, ROWS)
    source = Source(f"sqlite:///{path}")
    with source.snapshot() as snapshot:
        view = share_view(source, snapshot, [SPEC])
        assert view is not None
        (chunk,) = snapshot.plan_chunks(SPEC, 100)
        writer = WaitingWriter(path)
        first = ChunkRead(replace(view, busy_seconds=0.05), 0, *chunk.bounds_json())
        with pytest.raises(ViewBusy, match=r"waited 0\.05 s for a read lock"):
            read_chunk(first, SPEC)
        # The worker does not wait for this view again (it would fail with the first message).
        later = ChunkRead(replace(view, busy_seconds=3), 0, *chunk.bounds_json())
        with pytest.raises(ViewBusy, match="a writer waiting to commit still keeps the workers"):
            read_chunk(later, SPEC)
    writer.finish()
    source.close()


REGIONS_SPEC = ExtractSpec(
    "geo", "region", "REGIONS", ("REGION",), None,
    (NodeSpec("root", NodeKind.ROOT, "REGIONS", ("REGION", "NAME")),),
)  # fmt: skip


def test_a_view_joined_again_for_another_service_takes_its_tables(
    make_db: MakeDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing committed between two services' snapshots: a worker keeps its joined view, and
    takes the second service's tables from the view instead of reflecting them itself."""
    source = Source(f"sqlite:///{make_db(DDL, ROWS)}")
    with source.snapshot() as snapshot:
        first = share_view(source, snapshot, [SPEC])
        (orders,) = snapshot.plan_chunks(SPEC, 100)
        second = share_view(source, snapshot, [REGIONS_SPEC])
        (regions,) = snapshot.plan_chunks(REGIONS_SPEC, 100)
        assert first is not None and second is not None and first.token == second.token
        assert read_chunk(ChunkRead(first, 0, *orders.bounds_json()), SPEC)["root"].num_rows == 40
        monkeypatch.setattr(Source, "reflect", _no_reflection)
        found = read_chunk(ChunkRead(second, 0, *regions.bounds_json()), REGIONS_SPEC)
        assert found["root"].equals(snapshot.extract(REGIONS_SPEC, regions)["root"])
    source.close()


def _no_reflection(*_: object) -> None:
    raise AssertionError("a worker reflected a table the view carries")
