"""The source's small questions: foreign keys and indexes, a `where` compiled without reading a
row, children per parent and value lengths (sampled on large tables), and the range holding one
root row. On SQLite files and a real PostgreSQL server."""

from __future__ import annotations

from typing import Any

import pytest
from postgres_server import PostgresServer

from migrate.schema import ForeignKey, TableLinks
from migrate.source import Source, probe
from migrate.spec import ExtractSpec, NodeKind, NodeSpec

from .conftest import MakeDb

DDL = """
CREATE TABLE WARDS (SITE VARCHAR(5) NOT NULL, WARD_NO INTEGER NOT NULL, NAME VARCHAR(40),
    PRIMARY KEY (SITE, WARD_NO));
CREATE TABLE STAYS (STAY_ID INTEGER PRIMARY KEY, SITE VARCHAR(5), WARD_NO INTEGER, NOTE TEXT,
    SCAN BLOB,
    FOREIGN KEY (SITE, WARD_NO) REFERENCES WARDS (SITE, WARD_NO));
CREATE INDEX IX_STAYS_NOTE ON STAYS (NOTE, STAY_ID);
"""


def _spec(where: str | None) -> ExtractSpec:
    root = NodeSpec("root", NodeKind.ROOT, "WARDS", ("SITE", "WARD_NO", "NAME"))
    return ExtractSpec("svc", "ward", "WARDS", ("SITE", "WARD_NO"), where, (root,))


@pytest.fixture
def source(make_db: MakeDb) -> Source:
    wards = [("A", n, f"ward {n}") for n in range(1, 4)] + [("B/1", 1, "b")]
    stays = [(i, "A", 1, "x" * i, bytes(i)) for i in range(1, 8)] + [(8, "A", 2, None, None)]
    return Source(f"sqlite:///{make_db(DDL, {'WARDS': wards, 'STAYS': stays})}")


def test_links_read_foreign_keys_and_indexes(source: Source) -> None:
    found = probe.links(source, ["stays", "WARDS", "NO_SUCH"])
    assert set(found) == {"STAYS", "WARDS"}
    stays = found["STAYS"]
    assert stays.foreign_keys == (ForeignKey(("SITE", "WARD_NO"), "WARDS", ("SITE", "WARD_NO")),)
    assert ("STAY_ID",) in stays.indexes and ("NOTE", "STAY_ID") in stays.indexes
    assert found["WARDS"].indexes == (("SITE", "WARD_NO"),)


def test_an_index_serves_a_link_only_when_the_links_columns_lead_it() -> None:
    links = TableLinks(indexes=(("A", "B", "C"), ("D",)))
    assert links.has_index(["b", "a"]) and links.has_index(["A"]) and links.has_index(["D"])
    assert not links.has_index(["B"]) and not links.has_index(["A", "C"])
    assert not links.has_index(["D", "E"])


def test_a_where_is_compiled_by_the_database_and_no_row_is_read(source: Source) -> None:
    tables = source.tables(_spec(None))
    assert probe.where_problem(source, _spec(None), tables) is None
    assert probe.where_problem(source, _spec("NAME LIKE 'ward%'"), tables) is None
    assert probe.where_problem(source, _spec("NAYM = 1"), tables) == "no such column: NAYM"
    assert "syntax error" in str(probe.where_problem(source, _spec("NAME = = 1"), tables))
    # a predicate that fails only on a row it reads is not found: none is read
    assert (
        probe.where_problem(source, _spec("abs(-9223372036854775807 - WARD_NO) > 0"), tables)
        is None
    )


def test_children_per_parent_and_longest_values(source: Source) -> None:
    schema = source.reflect()
    stays = schema.tables["STAYS"]
    assert probe.largest_child_count(source, stays, ["SITE", "WARD_NO"]) == 7
    assert probe.longest_values(source, stays, ["NOTE", "SCAN"]) == {"NOTE": 7, "SCAN": 7}


def test_statistics_read_a_sample_of_a_large_table(
    source: Source, monkeypatch: pytest.MonkeyPatch
) -> None:
    stays = source.reflect().tables["STAYS"]
    monkeypatch.setattr(probe, "SAMPLE_ROWS", 3)
    assert probe.largest_child_count(source, stays, ["SITE", "WARD_NO"]) == 3
    assert probe.longest_values(source, stays, ["NOTE"])["NOTE"] <= 7


def test_the_range_of_one_root_row_holds_that_row_alone(source: Source) -> None:
    spec = _spec(None)
    info = source.reflect().tables["WARDS"]
    with source.snapshot() as snapshot:
        keys = probe.root_keys_where(snapshot, spec, info, {"SITE": "A"}, limit=10)
        assert keys == [("A", 1), ("A", 2), ("A", 3)]
        middle = probe.row_range(snapshot, spec, info, ("A", 2))
        assert (middle.lo, middle.hi) == (("A", 2), ("A", 3))
        rows = snapshot.extract(spec, middle)["root"].to_pylist()
        assert rows == [{"SITE": "A", "WARD_NO": 2, "NAME": "ward 2"}]
        last = probe.row_range(snapshot, spec, info, ("B/1", 1))
        assert (last.lo, last.hi) == (("B/1", 1), None)
        assert snapshot.extract(spec, last)["root"].num_rows == 1
    filtered = _spec("NAME <> 'ward 2'")
    with source.snapshot() as snapshot:
        keys = probe.root_keys_where(snapshot, filtered, info, {"SITE": "A"}, limit=10)
        assert keys == [("A", 1), ("A", 3)]
        assert probe.root_keys_where(snapshot, filtered, info, {"SITE": "A"}, limit=1) == [("A", 1)]


@pytest.mark.postgres
def test_on_postgres(postgres_server: PostgresServer, pg_url: str) -> None:
    connection: Any = postgres_server.connect(pg_url)
    connection.execute(
        "CREATE TABLE wards (site varchar(5), ward_no integer, name text, extra jsonb, "
        "PRIMARY KEY (site, ward_no));"
        "CREATE TABLE stays (stay_id integer PRIMARY KEY, site varchar(5), ward_no integer, "
        "FOREIGN KEY (site, ward_no) REFERENCES wards (site, ward_no));"
        "INSERT INTO wards VALUES ('A', 1, 'one', '{\"a\": 12}'), ('A', 2, 'two', NULL);"
        "INSERT INTO stays VALUES (1, 'A', 1), (2, 'A', 1), (3, 'A', 2);"
    )
    connection.close()
    source = Source(pg_url)
    schema = source.reflect()
    found = probe.links(source, ["stays"])
    assert found["stays"].foreign_keys == (
        ForeignKey(("site", "ward_no"), "wards", ("site", "ward_no")),
    )
    assert not found["stays"].has_index(["site", "ward_no"])
    root = NodeSpec("root", NodeKind.ROOT, "wards", ("site", "ward_no", "name"))
    spec = ExtractSpec("svc", "ward", "wards", ("site", "ward_no"), "nme = 'x'", (root,))
    problem = probe.where_problem(source, spec, source.tables(spec))
    assert problem is not None and 'column "nme" does not exist' in problem
    good = ExtractSpec("svc", "ward", "wards", ("site", "ward_no"), "name <> 'x'", (root,))
    assert probe.where_problem(source, good, source.tables(good)) is None
    assert probe.largest_child_count(source, schema.tables["stays"], ["site", "ward_no"]) == 2
    assert probe.longest_values(source, schema.tables["wards"], ["name", "extra"]) == {
        "name": 3,
        "extra": 9,
    }
    with source.snapshot() as snapshot:
        one = probe.row_range(snapshot, good, schema.tables["wards"], ("A", 1))
        assert (one.lo, one.hi) == (("A", 1), ("A", 2))
    source.close()
