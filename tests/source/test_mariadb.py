"""The source against a real MariaDB server: its types, one snapshot shared by every reader,
streamed reads, composite-key chunks, and a login it refuses."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from mariadb_server import PASSWORD, PASSWORD_ENV, MariaDBServer

from migrate.errors import SourceError
from migrate.processes import worker_pool
from migrate.schema import ColumnType, ValueKind
from migrate.source import ChunkRange, Source
from migrate.source.normalize import ZERO_DATE, BadValue, to_arrow
from migrate.source.shared import ChunkRead, ViewBusy, leave_view, read_chunk, settle, share_view
from migrate.spec import FLAWS_COLUMN, ExtractSpec, NodeKind, NodeSpec

pytestmark = pytest.mark.mariadb

DDL = [
    """CREATE TABLE patients (
        id INT PRIMARY KEY,
        nhs_number VARCHAR(10) NOT NULL UNIQUE,
        name VARCHAR(100),
        balance DECIMAL(10,2),
        weight DECIMAL(30,0),
        score DOUBLE,
        seen_at DATETIME(6),
        created TIMESTAMP(6) NULL,
        born DATE,
        alarm TIME(3),
        active BIT(1),
        flags BIT(12),
        wide BIT(64),
        photo BLOB,
        uid VARBINARY(16),
        prefs JSON,
        note LONGTEXT
    )""",
    """CREATE TABLE visits (
        site VARCHAR(3) NOT NULL,
        visit_no INT NOT NULL,
        patient_id INT,
        PRIMARY KEY (site, visit_no)
    )""",
    "CREATE TABLE notes (note_id INT PRIMARY KEY, site VARCHAR(3), visit_no INT, body TEXT)",
]
ROWS = [
    "(1, '9434765919', 'Siân 👩‍⚕️ Ünal', 12.5, 123456789012345678901234567890, 0.1, "
    "'2020-01-31 13:45:00.250000', '2020-01-01 12:00:00', '1980-02-29', '-12:34:56.5', b'1', "
    "b'101010101010', x'ffffffffffffffff', x'00ff5c', x'000102030405060708090a0b0c0d0e0f', "
    "'{\"b\": 1.10, \"a\": [1]}', 'long')",
    "(2, '9434765870', NULL, NULL, NULL, NULL, NULL, NULL, NULL, '838:59:59', b'0', b'0', b'0', "
    "NULL, NULL, NULL, NULL)",
]
COLUMNS = (
    "id", "name", "balance", "weight", "score", "seen_at", "created", "born", "alarm", "active",
    "flags", "wide", "photo", "uid", "prefs",
)  # fmt: skip


@pytest.fixture
def server_db(mariadb_server: MariaDBServer, maria_url: str) -> Iterator[Any]:
    """The tables above in a fresh database, and a root connection to write more with."""
    connection = mariadb_server.connect(maria_url)
    with connection.cursor() as cursor:
        for statement in DDL:
            cursor.execute(statement)
        cursor.execute("SET time_zone = '+05:30'")  # written in one zone, read back in UTC
        cursor.execute(f"INSERT INTO patients VALUES {', '.join(ROWS)}")
    try:
        yield connection
    finally:
        connection.close()


@pytest.fixture(autouse=True)
def _leave() -> Iterator[None]:
    yield
    leave_view()


def _source(url: str) -> Source:
    return Source(url, password=PASSWORD)


def _patients(*columns: str, where: str | None = None) -> ExtractSpec:
    node = NodeSpec("p", NodeKind.ROOT, "patients", columns)
    return ExtractSpec("s", "p", "patients", ("id",), where, (node,))


def test_reflects_mariadb_types(server_db: Any, maria_url: str) -> None:
    source = _source(maria_url)
    assert source.dialect == "mysql"
    patients = source.reflect().table("PATIENTS")
    source.close()
    assert patients is not None
    kinds = {c.name: c.type.kind for c in patients.columns}
    assert kinds == {
        "id": ValueKind.INTEGER,
        "nhs_number": ValueKind.STRING,
        "name": ValueKind.STRING,
        "balance": ValueKind.DECIMAL,
        "weight": ValueKind.INTEGER,
        "score": ValueKind.FLOAT,
        "seen_at": ValueKind.TIMESTAMP,
        "created": ValueKind.TIMESTAMP_TZ,  # stored in UTC, read in the session's zone: UTC
        "born": ValueKind.DATE,
        "alarm": ValueKind.STRING,
        "active": ValueKind.BOOLEAN,
        "flags": ValueKind.INTEGER,
        "wide": ValueKind.INTEGER,
        "photo": ValueKind.BINARY,
        "uid": ValueKind.BINARY,
        "prefs": ValueKind.JSON,  # MariaDB's JSON: LONGTEXT with a json_valid check
        "note": ValueKind.STRING,  # LONGTEXT without one
    }
    balance = patients.column("balance")
    assert balance is not None and (balance.type.precision, balance.type.scale) == (10, 2)
    assert patients.primary_key == ("id",)
    assert ("nhs_number",) in patients.unique


def test_extracts_exact_values(server_db: Any, maria_url: str) -> None:
    source = _source(maria_url)
    with source.snapshot() as snapshot:
        table = snapshot.extract(_patients(*COLUMNS), ChunkRange(0, None, None))["p"]
    source.close()
    assert table.schema.field("balance").type == pa.decimal128(38, 2)
    assert table.schema.field("weight").type == pa.decimal128(38, 0)
    first, second = table.to_pylist()
    assert first["name"] == "Siân 👩‍⚕️ Ünal"  # utf8mb4: outside the BMP too
    assert first["balance"] == Decimal("12.50") and str(first["balance"]) == "12.50"
    assert first["weight"] == Decimal("123456789012345678901234567890")
    assert first["score"] == 0.1
    assert first["seen_at"] == dt.datetime(2020, 1, 31, 13, 45, 0, 250000)
    assert first["created"] == dt.datetime(2020, 1, 1, 6, 30, tzinfo=dt.UTC)
    assert first["born"] == dt.datetime(1980, 2, 29)
    assert first["alarm"] == "-12:34:56.500"  # the server's own text, not a timedelta
    assert first["active"] is True and second["active"] is False
    assert first["flags"] == 0b101010101010 and second["flags"] == 0
    assert first["wide"] == 2**64 - 1  # every bit, unsigned (beyond int64: staged exactly)
    assert table.schema.field("wide").type == pa.decimal128(38, 0)
    assert first["photo"] == b"\x00\xff\x5c" and first["uid"] == bytes(range(16))
    assert first["prefs"] == '{"b": 1.10, "a": [1]}'  # the JSON text as stored
    assert second["alarm"] == "838:59:59.000"  # past 24 hours, as TIME allows


def test_a_zero_date_is_a_bad_value_not_a_crash(server_db: Any, maria_url: str) -> None:
    with server_db.cursor() as cursor:
        cursor.execute("SET SESSION sql_mode = ''")  # what a legacy server allowed
        cursor.execute("INSERT INTO patients (id, nhs_number, born, seen_at) VALUES "
                       "(3, '1', '0000-00-00', '2001-00-15 10:00:00')")  # fmt: skip
    source = _source(maria_url)
    with source.snapshot() as snapshot:
        cursor = snapshot._cursor
        cursor.execute("SELECT born, seen_at FROM patients WHERE id = 3")
        born, seen_at = cursor.fetchone()
    source.close()
    for value, kind in ((born, ValueKind.DATE), (seen_at, ValueKind.TIMESTAMP)):
        with pytest.raises(BadValue) as caught:
            to_arrow([None, value], ColumnType(kind, "DATE"))
        assert caught.value.row == 1
        assert caught.value.got == ZERO_DATE  # the reason, never the value
    source = _source(maria_url)
    with source.snapshot() as snapshot:  # read as a chunk: staged NULL, the row's flaw said
        table = snapshot.extract(_patients("id", "born"), ChunkRange(0, None, None))["p"]
    source.close()
    rows = {row["id"]: row for row in table.to_pylist()}
    assert rows[3]["born"] is None and ZERO_DATE in rows[3][FLAWS_COLUMN]
    assert "0000" not in rows[3][FLAWS_COLUMN]


def test_the_snapshot_hides_concurrent_commits(server_db: Any, maria_url: str) -> None:
    spec = _patients("id", "nhs_number")
    everything = ChunkRange(0, None, None)
    source = _source(maria_url)
    with source.snapshot() as snapshot:
        assert snapshot.marker.startswith("mysql:binlog=")
        assert type(snapshot._cursor).__name__ == "SSCursor"  # streamed, not buffered whole
        before = snapshot.extract(spec, everything)["p"]
        with server_db.cursor() as cursor:
            cursor.execute("INSERT INTO patients (id, nhs_number) VALUES (9, '1111111111')")
        after = snapshot.extract(spec, everything)["p"]
        assert after.equals(before) and after.num_rows == 2
        assert snapshot.count_rows(spec, everything) == 2
    with source.snapshot() as fresh:
        assert fresh.count_rows(spec, everything) == 3
    source.close()


def _visits(server_db: Any) -> list[tuple[str, int, int]]:
    visits = [(site, n, n % 3) for site in ("A", "B", "BB", "C", "b") for n in range(-2, 9)]
    with server_db.cursor() as cursor:
        cursor.executemany("INSERT INTO visits VALUES (%s, %s, %s)", visits)
        notes = [(i, s, n, f"note {i}") for i, (s, n, _) in enumerate(visits) if n % 2 == 0]
        cursor.executemany("INSERT INTO notes VALUES (%s, %s, %s, %s)", notes)
    return visits


VISIT_SPEC = ExtractSpec(
    "s", "visit", "visits", ("site", "visit_no"), "patient_id <> 2",
    (
        NodeSpec("visit", NodeKind.ROOT, "visits", ("site", "visit_no")),
        NodeSpec("visit.notes", NodeKind.EMBED, "notes", ("note_id",), "visit",
                 (("site", "site"), ("visit_no", "visit_no"))),
    ),
)  # fmt: skip


def test_composite_key_chunks_and_semi_joins(server_db: Any, maria_url: str) -> None:
    visits = _visits(server_db)
    source = _source(maria_url)
    keys: list[tuple[str, int]] = []
    with source.snapshot() as snapshot:
        chunks = snapshot.plan_chunks(VISIT_SPEC, 5)
        for chunk in chunks:
            stored = ChunkRange.from_bounds_json(chunk.index, *chunk.bounds_json())
            root = snapshot.extract(VISIT_SPEC, stored)["visit"]
            keys += list(zip(root["site"].to_pylist(), root["visit_no"].to_pylist(), strict=True))
    source.close()
    wanted = sorted((s, n) for s, n, p in visits if p != 2)  # utf8mb4_bin: 'b' after 'C'
    assert keys == wanted
    assert len(chunks) == -(-len(wanted) // 5)


def _count(read: ChunkRead) -> list[int]:
    tables = read_chunk(read, VISIT_SPEC)
    return sorted(tables["visit.notes"]["note_id"].to_pylist())


def test_workers_share_the_snapshot_by_its_binlog_position(server_db: Any, maria_url: str) -> None:
    _visits(server_db)
    source = Source(maria_url, password=PASSWORD, password_env=PASSWORD_ENV)
    with source.snapshot() as snapshot:
        view = share_view(source, snapshot, [VISIT_SPEC])
        assert view is not None and view.token.startswith("mysql:binlog=")
        assert PASSWORD not in repr(view)
        chunks = snapshot.plan_chunks(VISIT_SPEC, 7)
        here = [
            sorted(snapshot.extract(VISIT_SPEC, c)["visit.notes"]["note_id"].to_pylist())
            for c in chunks
        ]
        reads = [ChunkRead(view, c.index, *c.bounds_json()) for c in chunks]
        with worker_pool(2) as pool:
            assert list(pool.map(_count, reads)) == here
        # A commit moves the position: a reader that starts now cannot prove it sees the view,
        # so it refuses, and the chunk is read on the snapshot's own connection.
        with server_db.cursor() as cursor:
            cursor.execute("DELETE FROM notes")
        leave_view()
        with pytest.raises(ViewBusy):
            read_chunk(reads[0], VISIT_SPEC)
        with pytest.raises(ViewBusy, match="cannot join"):  # known at once the second time
            read_chunk(reads[1], VISIT_SPEC)
        with worker_pool(1) as pool:
            future = pool.submit(_count, reads[0])
            fallback = settle(
                future, lambda: sorted(snapshot.extract(VISIT_SPEC, chunks[0])["visit.notes"]
                                       ["note_id"].to_pylist())
            )  # fmt: skip
        assert fallback == here[0] and fallback  # the snapshot's rows, not the emptied table
    source.close()


def test_a_refused_login_names_the_masked_url_never_the_password(
    mariadb_server: MariaDBServer, maria_url: str
) -> None:
    wrong = "not-the-password-9912"
    source = Source(maria_url, password=wrong)
    with pytest.raises(SourceError) as caught:
        source.reflect()
    source.close()
    text = str(caught.value)
    assert caught.value.exit_code == 3
    assert wrong not in text and "migrate:***@127.0.0.1" in text
    assert "Access denied" in text
