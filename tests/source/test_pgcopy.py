"""PostgreSQL extraction through COPY stages exactly what the cursor path stages, or falls back."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest
from postgres_server import PostgresServer

from migrate.errors import SourceError
from migrate.source import ChunkRange, Source
from migrate.spec import ExtractSpec, NodeKind, NodeSpec

pytestmark = pytest.mark.postgres

DDL = """
CREATE TABLE things (
    id integer PRIMARY KEY,
    label text,
    code char(5),
    wide numeric(30),
    huge numeric(50, 3),
    money numeric(10, 2),
    amount numeric,
    ratio double precision,
    small real,
    flag boolean,
    blob bytea,
    born date,
    seen timestamp(6),
    at timestamptz,
    doc jsonb,
    ref uuid
);
CREATE TABLE parts (thing_id integer, part_no integer, note text, PRIMARY KEY (thing_id, part_no));
"""
COLUMNS = (
    "id", "label", "code", "wide", "huge", "money", "amount", "ratio", "small", "flag", "blob",
    "born", "seen", "at", "doc", "ref",
)  # fmt: skip
AWKWARD = [
    "(1, '', '', 0, 0, 0, 0, 0, 0, false, '\\x'::bytea, '1969-12-31', '1969-12-31 23:59:59.999999',"
    " '1969-12-31 23:59:59.999999+00', '{}', '00000000-0000-0000-0000-000000000000')",
    "(2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    "(3, 'a,b', 'x,y', 123456789012345678901234567890, 12345678901234567890123456789012345678901"
    "234567.125, -0.01, 1.2500, 0.1, 0.1, true, '\\x00ff5c78'::bytea, '0001-01-01',"
    " '0001-01-01 00:00:00', '0001-01-01 12:00:00+00', '{\"b\": 1.10, \"a\": [1, \"x\"]}',"
    " '12345678-1234-5678-1234-567812345678')",
    "(4, 'say \"hi\"', '\"', -1, -1.5, 99999999.99, -0.000, -1.5e-300, 3.4e38, true,"
    " '\\x22'::bytea, '1900-02-28', '1900-01-01 00:00:00.5', '1900-01-01 00:00:00+00:19:32',"
    " '[]', NULL)",
    "(5, E'two\\nlines\\r\\nand\\ttab', E'\\\\', 1, 1, 1, " + "9" * 100 + "." + "1" * 90 + "0000,"
    " 1e308, -0, false, decode(repeat('ab', 500), 'hex'), '9999-12-31', '9999-12-31 23:59:59',"
    " '2020-01-31 13:45:00.25+01', '\"text\"', NULL)",
    "(6, E'back\\\\slash \\\\. \\\\N', 'café', 2, 2, 2, 0.000001, 2.5, 2.5, true,"
    " E'\\\\x5c2e0a'::bytea, '2000-02-29', '2000-02-29 12:00:00', '2000-02-29 12:00:00-09:30',"
    " 'null', NULL)",
    "(7, 'non-ASCII: ß ü 名前 👩‍⚕️', 'ÆØÅ', 3, 3, 3, 100, 4.9e-324, -1.25, false, NULL, NULL,"
    " NULL, NULL, NULL, NULL)",
    "(8, '\\.', ',', 4, 4, 4, 10, 5, 5, false, '\\x0d0a'::bytea, '1583-10-15', '1583-10-15 00:00',"
    " '1847-12-01 00:00:00+00', '{\"\": \"\"}', NULL)",
    "(9, ' padded ', ' ', 5, 5, 5, -100.5, 6, 6, true, '\\x'::bytea, '1970-01-01',"
    " '1970-01-01 00:00:00', '1970-01-01 00:00:00+00', '1', NULL)",
]


def _spec(*nodes: NodeSpec, where: str | None = None) -> ExtractSpec:
    return ExtractSpec("s", "t", nodes[0].table, ("id",), where, nodes)


def _things(columns: tuple[str, ...] = COLUMNS) -> NodeSpec:
    return NodeSpec("t", NodeKind.ROOT, "things", columns)


@pytest.fixture
def writer(postgres_server: PostgresServer, pg_url: str) -> Iterator[Any]:
    connection: Any = postgres_server.connect(pg_url)
    connection.execute(DDL)
    try:
        yield connection
    finally:
        connection.close()


def _both(
    url: str, spec: ExtractSpec, chunks: list[ChunkRange] | None = None
) -> tuple[list[dict[str, pa.Table]], list[dict[str, pa.Table]], int]:
    """Every chunk through COPY and through the cursor, and how many chunks COPY left over."""
    source = Source(url)
    try:
        with source.snapshot() as snapshot:
            assert snapshot.use_copy
            planned = chunks if chunks is not None else [ChunkRange(0, None, None)]
            copied = [snapshot.extract(spec, chunk) for chunk in planned]
            fallbacks = snapshot.copy_fallbacks
            snapshot.use_copy = False
            fetched = [snapshot.extract(spec, chunk) for chunk in planned]
    finally:
        source.close()
    return copied, fetched, fallbacks


def _assert_same(copied: list[dict[str, pa.Table]], fetched: list[dict[str, pa.Table]]) -> None:
    assert len(copied) == len(fetched)
    for by_copy, by_cursor in zip(copied, fetched, strict=True):
        assert by_copy.keys() == by_cursor.keys()
        for node, table in by_copy.items():
            assert table.schema == by_cursor[node].schema, node
            assert table.to_pylist() == by_cursor[node].to_pylist(), node
            assert table.equals(by_cursor[node]), node


def test_awkward_values_stage_as_through_the_cursor(writer: Any, pg_url: str) -> None:
    writer.execute(f"INSERT INTO things VALUES {', '.join(AWKWARD)}")
    copied, fetched, fallbacks = _both(pg_url, _spec(_things()))
    assert fallbacks == 0  # every value above went through COPY
    _assert_same(copied, fetched)
    (table,) = (chunk["t"] for chunk in copied)
    rows = {row["id"]: row for row in table.to_pylist()}
    assert rows[1]["label"] == "" and rows[2]["label"] is None
    assert (
        rows[5]["label"] == "two\nlines\r\nand\ttab" and rows[6]["label"] == "back\\slash \\. \\N"
    )
    assert rows[3]["blob"] == b"\x00\xff\\x" and rows[1]["blob"] == b""
    assert rows[4]["amount"] == "0" and rows[3]["amount"] == "1.25"


@pytest.mark.parametrize("zone", ["America/St_Johns", "Europe/Amsterdam", "Asia/Kathmandu"])
def test_zoned_timestamps_read_as_utc_whatever_the_session_zone(
    writer: Any, pg_url: str, zone: str
) -> None:
    writer.execute(f"INSERT INTO things VALUES {', '.join(AWKWARD)}")
    writer.execute(f"ALTER DATABASE \"{pg_url.rsplit('/', 1)[1]}\" SET timezone = '{zone}'")
    copied, fetched, fallbacks = _both(pg_url, _spec(_things(("id", "at", "born", "seen"))))
    assert fallbacks == 0
    _assert_same(copied, fetched)


def test_chunks_with_inlined_bounds_and_a_where_match_the_cursor(writer: Any, pg_url: str) -> None:
    writer.execute(f"INSERT INTO things VALUES {', '.join(AWKWARD)}")
    writer.execute(
        "INSERT INTO parts SELECT t, p, 'part ' || p FROM generate_series(0, 10) t, "
        "generate_series(1, 3) p"
    )
    parts = NodeSpec(
        "t.parts", NodeKind.EMBED, "parts", ("part_no", "note"), "t", (("thing_id", "id"),)
    )
    spec = _spec(_things(("id", "label")), parts, where="label IS DISTINCT FROM 'a,b'")
    source = Source(pg_url)
    try:
        with source.snapshot() as snapshot:
            chunks = snapshot.plan_chunks(spec, 3)
    finally:
        source.close()
    stored = [ChunkRange.from_bounds_json(c.index, *c.bounds_json()) for c in chunks]
    copied, fetched, fallbacks = _both(pg_url, spec, stored)
    assert fallbacks == 0
    _assert_same(copied, fetched)
    ids = [i for chunk in copied for i in chunk["t"]["id"].to_pylist()]
    assert ids == [1, 2, 4, 5, 6, 7, 8, 9]  # row 3 is left out by the where
    notes = [n for chunk in copied for n in chunk["t.parts"]["note"].to_pylist()]
    assert len(notes) == 3 * len(ids)  # parts of 0, 3 and 10 match no chunk's root row


def test_a_composite_link_filtered_by_the_root_matches_the_cursor(writer: Any, pg_url: str) -> None:
    writer.execute(
        "CREATE TABLE visits (site varchar(3), visit_no integer, patient_id integer, "
        "PRIMARY KEY (site, visit_no)); "
        "CREATE TABLE notes (site varchar(3), visit_no integer, line integer, body text, "
        "PRIMARY KEY (site, visit_no, line)); "
        "INSERT INTO visits SELECT s, n, n % 3 FROM unnest(ARRAY['A', 'B', 'BB']) s, "
        "generate_series(-2, 6) n; "
        "INSERT INTO notes SELECT s, n, l, s || n || '/' || l FROM unnest(ARRAY['A', 'B', 'C']) s,"
        " generate_series(-3, 7) n, generate_series(1, 2) l"
    )
    link = (("site", "site"), ("visit_no", "visit_no"))
    spec = ExtractSpec(
        "s", "visit", "visits", ("site", "visit_no"), "patient_id <> 2",
        (
            NodeSpec("visit", NodeKind.ROOT, "visits", ("site", "visit_no")),
            NodeSpec("visit.notes", NodeKind.EMBED, "notes", ("site", "visit_no", "body"),
                     "visit", link),
        ),
    )  # fmt: skip
    source = Source(pg_url)
    try:
        with source.snapshot() as snapshot:
            chunks = snapshot.plan_chunks(spec, 4)
    finally:
        source.close()
    copied, fetched, fallbacks = _both(pg_url, spec, chunks)
    assert fallbacks == 0
    _assert_same(copied, fetched)
    bodies = [b for chunk in copied for b in chunk["visit.notes"]["body"].to_pylist()]
    assert "A2/1" not in bodies and "A0/1" in bodies and "C1/1" not in bodies  # n % 3 = 2: out


def test_a_one_column_node_keeps_its_null_rows(writer: Any, pg_url: str) -> None:
    writer.execute("INSERT INTO things (id, label) VALUES (1, NULL), (2, ''), (3, NULL)")
    spec = ExtractSpec(
        "s", "t", "things", ("id",), None, (NodeSpec("t", NodeKind.ROOT, "things", ("label",)),)
    )
    copied, fetched, fallbacks = _both(pg_url, spec)
    assert fallbacks == 0
    _assert_same(copied, fetched)
    assert copied[0]["t"]["label"].to_pylist() == [None, "", None]


def test_an_empty_chunk_has_the_staged_types(writer: Any, pg_url: str) -> None:
    copied, fetched, fallbacks = _both(pg_url, _spec(_things()))
    assert fallbacks == 0 and copied[0]["t"].num_rows == 0
    _assert_same(copied, fetched)


@pytest.mark.parametrize(
    "row",
    [
        "(1, NULL, NULL, NULL, NULL, NULL, " + "1" * 250 + ")",  # past the normaliser's precision
        "(1, NULL, NULL, NULL, NULL, NULL, 5), (2, NULL, NULL, NULL, NULL, NULL, 'NaN')",
    ],
)
def test_values_copy_cannot_stage_exactly_go_through_the_cursor(
    writer: Any, pg_url: str, row: str
) -> None:
    writer.execute(f"INSERT INTO things (id, label, code, wide, huge, money, amount) VALUES {row}")
    spec = _spec(_things(("id", "amount")))
    source = Source(pg_url)
    try:
        with source.snapshot() as snapshot:
            try:
                copied: dict[str, pa.Table] | str = snapshot.extract(
                    spec, ChunkRange(0, None, None)
                )
            except SourceError as exc:
                copied = str(exc)
            assert snapshot.copy_fallbacks == 1
            snapshot.use_copy = False
            try:
                fetched: dict[str, pa.Table] | str = snapshot.extract(
                    spec, ChunkRange(0, None, None)
                )
            except SourceError as exc:
                fetched = str(exc)
    finally:
        source.close()
    assert copied == fetched


def test_escape_bytea_output_falls_back_to_the_cursor(writer: Any, pg_url: str) -> None:
    writer.execute(f"INSERT INTO things VALUES {', '.join(AWKWARD)}")
    writer.execute(f"ALTER DATABASE \"{pg_url.rsplit('/', 1)[1]}\" SET bytea_output = 'escape'")
    copied, fetched, fallbacks = _both(pg_url, _spec(_things(("id", "blob"))))
    assert fallbacks == 1
    _assert_same(copied, fetched)


def test_a_failing_statement_names_its_table(writer: Any, pg_url: str) -> None:
    spec = _spec(_things(("id",)), where="no_such_column = 1")
    source = Source(pg_url)
    try:
        with source.snapshot() as snapshot, pytest.raises(SourceError) as raised:
            snapshot.extract(spec, ChunkRange(0, None, None))
    finally:
        source.close()
    assert "reading things (chunk 0)" in str(raised.value)
    assert "no_such_column" in str(raised.value)


def test_copy_reads_inside_the_snapshot(writer: Any, pg_url: str) -> None:
    writer.execute("INSERT INTO things (id, label) VALUES (1, 'a'), (2, 'b')")
    spec = _spec(_things(("id", "label")))
    everything = ChunkRange(0, None, None)
    source = Source(pg_url)
    try:
        with source.snapshot() as snapshot:
            before = snapshot.extract(spec, everything)["t"]
            writer.execute("INSERT INTO things (id, label) VALUES (3, 'c')")
            writer.execute("UPDATE things SET label = 'changed' WHERE id = 1")
            after = snapshot.extract(spec, everything)["t"]
            assert snapshot.copy_fallbacks == 0
    finally:
        source.close()
    assert after.equals(before) and after["label"].to_pylist() == ["a", "b"]
