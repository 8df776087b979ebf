"""A PostgreSQL connection terminated mid-chunk (pg_terminate_backend): a worker joins the run's
exported snapshot again and reads the chunk once more, the same rows; when the connection that
holds the snapshot goes, the snapshot is gone with it and the read fails with a message (exit 3)
before anything of the chunk is staged."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest
from postgres_server import PostgresServer

from migrate.errors import SourceError
from migrate.source import Source
from migrate.source.pgcopy import CopyReader
from migrate.source.shared import _THREADS, ChunkRead, leave_view, read_chunk, share_view
from migrate.source.snapshot import ConnectionLost
from migrate.spec import ExtractSpec, NodeKind, NodeSpec

pytestmark = pytest.mark.postgres

DDL = """
CREATE TABLE orders (order_id integer PRIMARY KEY, region text);
CREATE TABLE items (item_id integer PRIMARY KEY, order_id integer, qty integer);
INSERT INTO orders SELECT i, 'R' || (i % 3) FROM generate_series(1, 40) i;
INSERT INTO items SELECT 1000 + i, i % 40 + 1, i % 7 FROM generate_series(0, 89) i;
"""
SPEC = ExtractSpec(
    "shop", "order", "orders", ("order_id",), None,
    (
        NodeSpec("root", NodeKind.ROOT, "orders", ("order_id", "region")),
        NodeSpec("root.items", NodeKind.EMBED, "items", ("item_id", "order_id", "qty"),
                 parent_id="root", link=(("order_id", "order_id"),)),
    ),
)  # fmt: skip


@pytest.fixture
def admin(postgres_server: PostgresServer, pg_url: str) -> Iterator[Any]:
    connection: Any = postgres_server.connect(pg_url)
    connection.execute(DDL)
    yield connection
    connection.close()
    leave_view()


def _pid(snapshot: Any) -> int:
    return int(snapshot._connection.connection.dbapi_connection.info.backend_pid)


def _terminate(admin: Any, pid: int) -> None:
    admin.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,))


def _mid_chunk(monkeypatch: pytest.MonkeyPatch, admin: Any, pid: Any) -> list[int]:
    """Terminate backend `pid()` once the chunk's first statement is read, before the next is
    sent: the chunk is cut off halfway."""
    original = CopyReader._send
    done: list[int] = []

    def terminate_then_send(reader: CopyReader, statements: Any, index: int) -> None:
        if index == 1 and not done:
            done.append(pid())
            _terminate(admin, done[0])
        original(reader, statements, index)

    monkeypatch.setattr(CopyReader, "_send", terminate_then_send)
    return done


def _table(tables: dict[str, pa.Table]) -> list[list[dict[str, Any]]]:
    return [tables[n.node_id].to_pylist() for n in SPEC.nodes]


def test_a_worker_whose_connection_drops_mid_chunk_reads_it_again(
    admin: Any, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = Source(pg_url)
    with source.snapshot() as snapshot:
        view = share_view(source, snapshot, [SPEC])
        assert view is not None
        chunks = snapshot.plan_chunks(SPEC, 15)
        expected = [_table(snapshot.extract(SPEC, c)) for c in chunks]
        admin.execute("DELETE FROM items")  # after the snapshot: a new one would see no items
        reads = [ChunkRead(view, c.index, *c.bounds_json()) for c in chunks]
        assert _table(read_chunk(reads[0], SPEC)) == expected[0]  # joined, and read

        dropped = _mid_chunk(monkeypatch, admin, lambda: _pid(_THREADS.joined.snapshot))
        assert _table(read_chunk(reads[1], SPEC)) == expected[1]  # again, same snapshot
        assert dropped and dropped[0] != _pid(_THREADS.joined.snapshot)  # on a new connection
        assert [_table(read_chunk(r, SPEC)) for r in reads[2:]] == expected[2:]
    source.close()


def test_when_the_snapshots_own_connection_drops_the_read_fails_with_exit_3(
    admin: Any, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = Source(pg_url)
    with source.snapshot() as snapshot:
        view = share_view(source, snapshot, [SPEC])
        assert view is not None
        (chunk,) = snapshot.plan_chunks(SPEC, 100)
        _mid_chunk(monkeypatch, admin, lambda: _pid(snapshot))
        with pytest.raises(ConnectionLost) as caught:
            snapshot.extract(SPEC, chunk)
        assert caught.value.exit_code == 3
        assert "broke while reading items (chunk 0)" in str(caught.value)
        assert "nothing of the chunk was staged" in str(caught.value)
        # Workers cannot join the snapshot any more: it went with the connection that held it.
        with pytest.raises(SourceError, match="cannot open a consistent snapshot") as joined:
            read_chunk(ChunkRead(view, 0, *chunk.bounds_json()), SPEC)
        assert joined.value.exit_code == 3
    source.close()


def test_a_drop_on_the_cursor_path_is_a_lost_connection_too(admin: Any, pg_url: str) -> None:
    source = Source(pg_url)
    with source.snapshot() as snapshot:
        snapshot.use_copy = False
        (chunk,) = snapshot.plan_chunks(SPEC, 100)
        _terminate(admin, _pid(snapshot))
        with pytest.raises(ConnectionLost, match="broke while reading orders"):
            snapshot.extract(SPEC, chunk)
    source.close()
