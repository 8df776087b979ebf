"""The source against a real PostgreSQL server: types, snapshot isolation, composite-key chunks."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from postgres_server import PostgresServer

from migrate.schema import ValueKind
from migrate.source import ChunkRange, Source
from migrate.spec import ExtractSpec, NodeKind, NodeSpec

pytestmark = pytest.mark.postgres

DDL = """
CREATE TABLE patients (
    id integer PRIMARY KEY,
    nhs_number varchar(10) NOT NULL UNIQUE,
    balance numeric(10,2),
    weight numeric,
    seen_at timestamptz,
    born date,
    photo bytea,
    active boolean,
    extra jsonb,
    score double precision,
    ref uuid
);
CREATE TABLE visits (
    site varchar(3) NOT NULL,
    visit_no integer NOT NULL,
    patient_id integer,
    PRIMARY KEY (site, visit_no)
);
CREATE UNIQUE INDEX visits_patient_ux ON visits (patient_id, site, visit_no);
CREATE TABLE notes (note_id integer PRIMARY KEY, site varchar(3), visit_no integer, body text);
"""


def _setup(server: PostgresServer, url: str) -> Any:
    connection: Any = server.connect(url)
    connection.execute(DDL)
    connection.execute(
        "INSERT INTO patients VALUES (1, '9434765919', 12.5, 1.250, '2020-01-31 13:45:00.25+01', "
        "'1980-02-29', '\\x00ff'::bytea, true, '{\"b\": 1.10, \"a\": [1]}', 0.1, "
        "'12345678-1234-5678-1234-567812345678'), "
        "(2, '9434765870', NULL, 100, NULL, NULL, NULL, false, NULL, NULL, NULL)"
    )
    return connection


def test_reflects_postgres_types(postgres_server: PostgresServer, pg_url: str) -> None:
    _setup(postgres_server, pg_url).close()
    source = Source(pg_url)
    assert source.dialect == "postgresql"
    schema = source.reflect()
    patients = schema.table("PATIENTS")
    assert patients is not None
    kinds = {c.name: c.type.kind for c in patients.columns}
    assert kinds == {
        "id": ValueKind.INTEGER,
        "nhs_number": ValueKind.STRING,
        "balance": ValueKind.DECIMAL,
        "weight": ValueKind.NUMBER,
        "seen_at": ValueKind.TIMESTAMP_TZ,
        "born": ValueKind.DATE,
        "photo": ValueKind.BINARY,
        "active": ValueKind.BOOLEAN,
        "extra": ValueKind.JSON,
        "score": ValueKind.FLOAT,
        "ref": ValueKind.STRING,
    }
    balance = patients.column("balance")
    assert balance is not None and (balance.type.precision, balance.type.scale) == (10, 2)
    assert patients.primary_key == ("id",)
    assert ("nhs_number",) in patients.unique
    visits = schema.table("visits")
    assert visits is not None and visits.primary_key == ("site", "visit_no")
    assert ("patient_id", "site", "visit_no") in visits.unique
    source.close()


def test_extracts_exact_values(postgres_server: PostgresServer, pg_url: str) -> None:
    _setup(postgres_server, pg_url).close()
    columns = ("id", "balance", "weight", "seen_at", "born", "photo", "active", "extra", "ref")
    spec = ExtractSpec(
        "s", "p", "patients", ("id",), None, (NodeSpec("p", NodeKind.ROOT, "patients", columns),)
    )
    source = Source(pg_url)
    with source.snapshot() as snapshot:
        table = snapshot.extract(spec, ChunkRange(0, None, None))["p"]
    assert table.schema.field("balance").type == pa.decimal128(38, 2)
    first, second = table.to_pylist()
    assert first["balance"] == Decimal("12.50") and first["weight"] == "1.25"
    assert first["seen_at"] == dt.datetime(2020, 1, 31, 12, 45, 0, 250000, tzinfo=dt.UTC)
    assert first["born"] == dt.datetime(1980, 2, 29)
    assert first["photo"] == b"\x00\xff" and first["active"] is True
    assert '"b": 1.10' in first["extra"]  # the JSON text, not a float round trip
    assert first["ref"] == "12345678-1234-5678-1234-567812345678"
    assert second["weight"] == "100" and second["active"] is False
    source.close()


def test_snapshot_hides_concurrent_inserts(postgres_server: PostgresServer, pg_url: str) -> None:
    writer = _setup(postgres_server, pg_url)
    spec = ExtractSpec(
        "s", "p", "patients", ("id",), None,
        (NodeSpec("p", NodeKind.ROOT, "patients", ("id", "nhs_number")),),
    )  # fmt: skip
    everything = ChunkRange(0, None, None)
    source = Source(pg_url)
    with source.snapshot() as snapshot:
        assert snapshot.marker.startswith("postgresql:snapshot=")
        assert ";xids=" in snapshot.marker
        before = snapshot.extract(spec, everything)["p"]
        writer.execute("INSERT INTO patients (id, nhs_number) VALUES (3, '1111111111')")
        after = snapshot.extract(spec, everything)["p"]
        assert after.equals(before) and after.num_rows == 2
        assert snapshot.count_rows(spec, everything) == 2
    with source.snapshot() as fresh:
        assert fresh.count_rows(spec, everything) == 3
    writer.close()
    source.close()


def test_composite_key_chunks_and_semi_joins(postgres_server: PostgresServer, pg_url: str) -> None:
    writer = _setup(postgres_server, pg_url)
    visits = [(site, n, n % 3) for site in ("A", "B", "BB", "C") for n in range(-2, 9)]
    with writer.cursor() as cursor:
        cursor.executemany("INSERT INTO visits VALUES (%s, %s, %s)", visits)
        notes = [(i, s, n, f"note {i}") for i, (s, n, _) in enumerate(visits) if n % 2 == 0]
        cursor.executemany("INSERT INTO notes VALUES (%s, %s, %s, %s)", notes)
    spec = ExtractSpec(
        "s", "visit", "visits", ("site", "visit_no"), "patient_id <> 2",
        (
            NodeSpec("visit", NodeKind.ROOT, "visits", ("site", "visit_no")),
            NodeSpec("visit.notes", NodeKind.EMBED, "notes", ("note_id",), "visit",
                     (("site", "site"), ("visit_no", "visit_no"))),
        ),
    )  # fmt: skip
    source = Source(pg_url)
    keys: list[tuple[str, int]] = []
    note_ids: list[int] = []
    with source.snapshot() as snapshot:
        chunks = snapshot.plan_chunks(spec, 5)
        for chunk in chunks:
            stored = ChunkRange.from_bounds_json(chunk.index, *chunk.bounds_json())
            tables = snapshot.extract(spec, stored)
            root = tables["visit"]
            keys += list(zip(root["site"].to_pylist(), root["visit_no"].to_pylist(), strict=True))
            note_ids += tables["visit.notes"]["note_id"].to_pylist()
    wanted = sorted((s, n) for s, n, p in visits if p != 2)
    assert keys == wanted  # PostgreSQL's own key order, each row once
    assert len(chunks) == -(-len(wanted) // 5)
    assert sorted(note_ids) == sorted(i for i, s, n, _ in notes if (s, n) in set(wanted))
    writer.close()
    source.close()


def test_reflects_views_and_tables_in_one_pass(
    postgres_server: PostgresServer, pg_url: str
) -> None:
    connection = _setup(postgres_server, pg_url)
    connection.execute("CREATE VIEW recent AS SELECT id, nhs_number, seen_at FROM patients")
    connection.close()
    source = Source(pg_url)
    schema = source.reflect(["recent", "visits"])
    source.close()
    assert sorted(schema.tables) == ["recent", "visits"]
    recent = schema.table("recent")
    assert recent is not None and recent.primary_key == ()
    assert [(c.name, c.type.kind) for c in recent.columns] == [
        ("id", ValueKind.INTEGER), ("nhs_number", ValueKind.STRING),
        ("seen_at", ValueKind.TIMESTAMP_TZ),
    ]  # fmt: skip
    visits = schema.table("visits")
    assert visits is not None and visits.primary_key == ("site", "visit_no")
    assert ("patient_id", "site", "visit_no") in visits.unique


def test_another_schemas_tables_are_reflected_and_read(
    postgres_server: PostgresServer, pg_url: str
) -> None:
    """A read-only migration user reading the application owner's tables: `[source] schema`."""
    connection: Any = postgres_server.connect(pg_url)
    connection.execute("CREATE SCHEMA legacy_owner")
    connection.execute("CREATE TABLE legacy_owner.people (id integer PRIMARY KEY, name text)")
    connection.execute("INSERT INTO legacy_owner.people VALUES (1, 'owner''s row')")
    connection.execute("CREATE TABLE people (id integer PRIMARY KEY, name text)")  # not this one
    connection.close()
    source = Source(pg_url, schema="legacy_owner")
    people = source.reflect(["people"]).table("people")
    assert people is not None and people.primary_key == ("id",)
    spec = ExtractSpec(
        "s", "p", "people", ("id",), None, (NodeSpec("p", NodeKind.ROOT, "people", ("id", "name")),)
    )
    with source.snapshot() as snapshot:
        assert [c.index for c in snapshot.plan_chunks(spec, 10)] == [0]
        for use_copy in (True, False):
            snapshot.use_copy = use_copy
            rows = snapshot.extract(spec, ChunkRange(0, None, None))["p"].to_pylist()
            assert rows == [{"id": 1, "name": "owner's row"}]
    source.close()


NATIVE_DDL = """
CREATE TABLE natives (
    id integer PRIMARY KEY,
    ids integer[],
    tags text[],
    amounts numeric(5,2)[],
    alarm time(3),
    alarm_tz timetz,
    ref uuid,
    flag boolean
);
INSERT INTO natives VALUES
    (1, '{1,2,NULL}', '{"a b","ü",""}', '{1.5,2.25}', '13:45:00.5', '13:45:00+05:30',
     '12345678-1234-5678-1234-567812345678', true),
    (2, '{}', NULL, '{{1,2},{3,4}}', '00:00:00', NULL, NULL, false);
"""
NATIVES = ("id", "ids", "tags", "amounts", "alarm", "alarm_tz", "ref", "flag")


def test_arrays_times_uuids_by_copy_and_by_cursor(
    postgres_server: PostgresServer, pg_url: str
) -> None:
    connection: Any = postgres_server.connect(pg_url)
    connection.execute(NATIVE_DDL)
    connection.close()
    source = Source(pg_url)
    natives = source.reflect(["natives"]).table("natives")
    assert natives is not None
    assert {c.name: c.type.kind for c in natives.columns} == {
        "id": ValueKind.INTEGER, "ids": ValueKind.JSON, "tags": ValueKind.JSON,
        "amounts": ValueKind.JSON, "alarm": ValueKind.STRING, "alarm_tz": ValueKind.STRING,
        "ref": ValueKind.STRING, "flag": ValueKind.BOOLEAN,
    }  # fmt: skip
    spec = ExtractSpec(
        "s", "n", "natives", ("id",), None, (NodeSpec("n", NodeKind.ROOT, "natives", NATIVES),)
    )
    with source.snapshot() as snapshot:
        copied = snapshot.extract(spec, ChunkRange(0, None, None))["n"]
        assert snapshot.copy_fallbacks == 0
        snapshot.use_copy = False
        fetched = snapshot.extract(spec, ChunkRange(0, None, None))["n"]
    source.close()
    assert copied.equals(fetched)
    first, second = fetched.to_pylist()
    assert first["ids"] == "[1,2,null]" and first["tags"] == '["a b","ü",""]'
    assert first["amounts"] == "[1.50,2.25]"  # numbers exact, at the element type's scale
    assert second["ids"] == "[]" and second["amounts"] == "[[1.00,2.00],[3.00,4.00]]"
    assert first["alarm"] == "13:45:00.5" and second["alarm"] == "00:00:00"
    assert first["alarm_tz"] == "13:45:00+05:30"
    assert first["ref"] == "12345678-1234-5678-1234-567812345678"
    assert first["flag"] is True and second["flag"] is False
