"""Set-based extraction of a document tree, bounded by the chunk's key range, inside a snapshot."""

from __future__ import annotations

import datetime as dt
import random
import sqlite3
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from migrate.errors import SourceError
from migrate.source import ChunkRange, Source
from migrate.spec import FLAWS_COLUMN, ExtractSpec, NodeKind, NodeSpec

from .conftest import MakeDb

DDL = """
CREATE TABLE ORDERS (ORDER_ID NUMBER(10) PRIMARY KEY, REGION VARCHAR2(5), STATUS CHAR(1));
CREATE TABLE ITEMS (ITEM_ID NUMBER(10) PRIMARY KEY, ORDER_ID NUMBER(10), PRODUCT VARCHAR2(5),
                    QTY NUMBER(5));
CREATE TABLE ITEM_NOTES (NOTE_ID NUMBER(10) PRIMARY KEY, ITEM_ID NUMBER(10), BODY CLOB);
CREATE TABLE PRODUCTS (CODE VARCHAR2(5) PRIMARY KEY, NAME VARCHAR2(30));
CREATE TABLE REGION_FACTS (REGION VARCHAR2(5), FACT VARCHAR2(20));
"""

ORDER_COUNT = 23


def _data(seed: int = 4) -> dict[str, list[tuple[Any, ...]]]:
    rng = random.Random(seed)
    orders = [(i, f"R{i % 4}", "X" if i % 5 == 0 else "A") for i in range(1, ORDER_COUNT + 1)]
    items = []
    item_id = 100
    for order_id, _, _ in orders:
        for _ in range(rng.randint(0, 3)):
            item_id += 7  # surrogate key unrelated to the order's key
            items.append((item_id, order_id, f"P{rng.randint(0, 9)}", rng.randint(1, 5)))
    items.append((9999, None, "P1", 1))  # NULL link: never matches
    items.append((9998, 777, "P2", 1))  # orphan: its order does not exist
    notes = []
    for item in items:
        for n in range(rng.randint(0, 2)):
            notes.append((item[0] * 10 + n, item[0], f"note {n}"))
    products = [(f"P{i}", f"Product {i}") for i in range(12)]  # P10, P11 never referenced
    facts = [(f"R{i % 5}", f"fact {i}") for i in range(10)]  # REGION repeats on both sides
    for table in (items, notes, products, facts):
        rng.shuffle(table)
    rng.shuffle(orders)
    return {
        "ORDERS": orders,
        "ITEMS": items,
        "ITEM_NOTES": notes,
        "PRODUCTS": products,
        "REGION_FACTS": facts,
    }


def _spec(where: str | None = None) -> ExtractSpec:
    return ExtractSpec(
        "shop",
        "order",
        "ORDERS",
        ("ORDER_ID",),
        where,
        (
            NodeSpec("order", NodeKind.ROOT, "ORDERS", ("ORDER_ID", "REGION", "STATUS")),
            NodeSpec(
                "order.items", NodeKind.EMBED, "ITEMS", ("ITEM_ID", "ORDER_ID", "PRODUCT", "QTY"),
                "order", (("ORDER_ID", "ORDER_ID"),),
            ),
            NodeSpec(
                "order.items.notes", NodeKind.EMBED, "ITEM_NOTES", ("ITEM_ID", "BODY"),
                "order.items", (("ITEM_ID", "ITEM_ID"),),
            ),
            NodeSpec(
                "order.items.product", NodeKind.LOOKUP, "PRODUCTS", ("CODE", "NAME"),
                "order.items", (("CODE", "PRODUCT"),),
            ),
            NodeSpec(
                "order.facts", NodeKind.EMBED, "REGION_FACTS", ("REGION", "FACT"),
                "order", (("REGION", "REGION"),),
            ),
        ),
    )  # fmt: skip


def _expected(
    data: dict[str, list[tuple[Any, ...]]], chunk: ChunkRange, where_x: bool
) -> dict[str, Counter[tuple[Any, ...]]]:
    """What a chunk must hold, computed from the inserted rows alone."""

    def in_range(order_id: int) -> bool:
        lo_ok = chunk.lo is None or order_id >= chunk.lo[0]
        return lo_ok and (chunk.hi is None or order_id < chunk.hi[0])

    orders = [o for o in data["ORDERS"] if in_range(o[0]) and not (where_x and o[2] == "X")]
    order_ids = {o[0] for o in orders}
    regions = {o[1] for o in orders}
    if where_x:
        items = [i for i in data["ITEMS"] if i[1] in order_ids]
    else:  # linked by the whole root key: read by range, orphans included (they match no order)
        items = [i for i in data["ITEMS"] if i[1] is not None and in_range(i[1])]
    item_ids = {i[0] for i in items}
    codes = {i[2] for i in items}
    return {
        "order": Counter(orders),
        "order.items": Counter(items),
        "order.items.notes": Counter((n[1], n[2]) for n in data["ITEM_NOTES"] if n[1] in item_ids),
        "order.items.product": Counter(p for p in data["PRODUCTS"] if p[0] in codes),
        "order.facts": Counter(f for f in data["REGION_FACTS"] if f[0] in regions),
    }


def _as_counter(rows: list[dict[str, Any]]) -> Counter[tuple[Any, ...]]:
    return Counter(tuple(r.values()) for r in rows)


@pytest.mark.parametrize("where", [None, "STATUS <> 'X'"])
@pytest.mark.parametrize("size", [1, 4, 50])
def test_each_chunk_holds_exactly_its_tree(make_db: MakeDb, where: str | None, size: int) -> None:
    data = _data()
    path = make_db(DDL, data)
    spec = _spec(where)
    seen_orders: list[int] = []
    with Source(f"sqlite:///{path}").snapshot() as snapshot:
        chunks = snapshot.plan_chunks(spec, size)
        for chunk in chunks:
            tables = snapshot.extract(spec, chunk)
            assert list(tables) == [n.node_id for n in spec.nodes]
            expected = _expected(data, chunk, where is not None)
            for node in spec.nodes:
                table = tables[node.node_id]
                assert table.column_names == list(node.columns)
                rows = table.to_pylist()
                ints = {"ORDER_ID", "ITEM_ID", "QTY"}
                assert all(isinstance(r[c], int) for r in rows for c in ints & set(r))
                assert _as_counter(rows) == expected[node.node_id], node.node_id
            seen_orders += tables["order"].column("ORDER_ID").to_pylist()
    kept = sorted(o[0] for o in data["ORDERS"] if where is None or o[2] != "X")
    assert seen_orders == kept  # root rows in key order, each once


def test_root_rows_come_in_key_order_and_children_by_their_key(make_db: MakeDb) -> None:
    data = _data(seed=11)
    path = make_db(DDL, data)
    with Source(f"sqlite:///{path}").snapshot() as snapshot:
        tables = snapshot.extract(_spec(), ChunkRange(0, None, None))
    ids = tables["order"].column("ORDER_ID").to_pylist()
    assert ids == sorted(ids) and len(ids) == ORDER_COUNT
    item_ids = tables["order.items"].column("ITEM_ID").to_pylist()
    assert item_ids == sorted(item_ids)
    assert None not in tables["order.items"].column("ORDER_ID").to_pylist()
    with Source(f"sqlite:///{path}").snapshot() as snapshot:
        filtered = snapshot.extract(_spec("1 = 1"), ChunkRange(0, None, None))
    assert 777 not in filtered["order.items"].column("ORDER_ID").to_pylist()


def test_queries_are_set_based_not_per_row(make_db: MakeDb) -> None:
    path = make_db(DDL, _data())
    statements: list[str] = []
    source = Source(f"sqlite:///{path}")
    with source.snapshot() as snapshot:
        raw = snapshot._connection.connection.dbapi_connection
        assert isinstance(raw, sqlite3.Connection)
        raw.set_trace_callback(statements.append)
        snapshot.extract(_spec(), ChunkRange(0, (3,), (9,)))
        raw.set_trace_callback(None)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == len(_spec().nodes)
    assert any(" IN (SELECT" in s for s in selects)
    assert not any("EXISTS" in s for s in selects)


def test_child_queries_search_the_child_index_instead_of_scanning(make_db: MakeDb) -> None:
    """SQLite runs a correlated EXISTS once per child row; the IN form must drive the child's
    index from the chunk's key range (the difference is 30x on the 100k demo)."""
    indexes = (
        "CREATE INDEX IX_ITEMS_ORDER ON ITEMS (ORDER_ID);"
        "CREATE INDEX IX_NOTES_ITEM ON ITEM_NOTES (ITEM_ID);"
    )
    path = make_db(DDL + indexes, _data())
    statements: list[str] = []
    source = Source(f"sqlite:///{path}")
    with source.snapshot() as snapshot:
        raw = snapshot._connection.connection.dbapi_connection
        assert isinstance(raw, sqlite3.Connection)
        raw.set_trace_callback(statements.append)
        snapshot.extract(_spec(), ChunkRange(0, (3,), (9,)))
        raw.set_trace_callback(None)
    db = sqlite3.connect(path)
    for table in ("ITEMS", "ITEM_NOTES"):
        sql = next(s for s in statements if f'FROM "{table}" AS' in s.split("WHERE")[0])
        plan = [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql)]
        assert plan[0].startswith("SEARCH mig_n"), plan


def test_sqlite_snapshot_does_not_see_later_writes(make_db: MakeDb) -> None:
    path = make_db(DDL, _data())
    setup = sqlite3.connect(path)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.close()
    source = Source(f"sqlite:///{path}")
    spec = _spec()
    everything = ChunkRange(0, None, None)
    with source.snapshot() as snapshot:
        assert snapshot.marker.startswith("sqlite:data_version=")
        before = snapshot.extract(spec, everything)
        writer = sqlite3.connect(path)
        writer.execute("INSERT INTO ORDERS VALUES (500, 'R1', 'A')")
        writer.execute("INSERT INTO ITEMS VALUES (5000, 1, 'P1', 1)")
        writer.commit()
        writer.close()
        after = snapshot.extract(spec, everything)
        assert after["order"].num_rows == before["order"].num_rows == ORDER_COUNT
        assert after["order.items"].equals(before["order.items"])
        assert snapshot.plan_chunks(spec, 1000) == [ChunkRange(0, None, None)]
        assert snapshot.count_rows(spec, everything) == ORDER_COUNT
    with source.snapshot() as fresh:
        assert fresh.count_rows(spec, everything) == ORDER_COUNT + 1
        assert fresh.extract(spec, everything)["order.items"].num_rows == (
            before["order.items"].num_rows + 1
        )


def test_values_are_normalised_from_sqlite_text_and_floats(make_db: MakeDb) -> None:
    path = make_db(
        "CREATE TABLE T (ID INTEGER PRIMARY KEY, D DATE, TS TIMESTAMP, TZ TIMESTAMPTZ, "
        "AMOUNT NUMBER(10,2), N NUMBER, F BINARY_FLOAT, B BOOLEAN, J JSON)",
        {
            "T": [
                (1, "2020-01-31", "2020-01-31T13:45:00.123456", "2020-01-31 13:45:00", 0.1 + 0.2,
                 12.50, 3, 1, '{"a": 1}'),
                (2, "2020-01-31 13:45:00", "2020-02-01 00:00:00", "2020-01-31T23:30:00-02:00",
                 7, "1E+2", 2.5, 0, "[]"),
            ]
        },
    )  # fmt: skip
    columns = ("ID", "D", "TS", "TZ", "AMOUNT", "N", "F", "B", "J")
    spec = ExtractSpec("s", "t", "T", ("ID",), None, (NodeSpec("t", NodeKind.ROOT, "T", columns),))
    with Source(f"sqlite:///{path}").snapshot() as snapshot:
        first, second = snapshot.extract(spec, ChunkRange(0, None, None))["t"].to_pylist()
    assert first["D"] == dt.datetime(2020, 1, 31)
    assert first["TS"] == dt.datetime(2020, 1, 31, 13, 45, 0, 123456)
    assert first["TZ"] == dt.datetime(2020, 1, 31, 13, 45, tzinfo=dt.UTC)
    assert str(first["AMOUNT"]) == "0.30"  # repr(0.1 + 0.2) is 0.30000000000000004
    assert first["N"] == "12.5" and first["F"] == 3.0 and first["B"] is True
    assert first["J"] == '{"a": 1}'
    assert second["D"] == dt.datetime(2020, 1, 31, 13, 45)
    assert second["TZ"] == dt.datetime(2020, 2, 1, 1, 30, tzinfo=dt.UTC)
    assert str(second["AMOUNT"]) == "7.00" and second["N"] == "100" and second["B"] is False


def test_a_bad_value_is_staged_as_null_with_its_rows_flaw_never_the_value(
    make_db: MakeDb,
) -> None:
    path = make_db(
        "CREATE TABLE T (ID VARCHAR2(5) PRIMARY KEY, AMOUNT NUMBER(10,2));"
        "CREATE TABLE C (CID INTEGER PRIMARY KEY, TID VARCHAR2(5), AT DATE);",
        {
            "T": [("k1", 1.5), ("k2", "Smith"), ("k3", 123456789.5)],
            "C": [(7, "k1", "1999-12-31"), (8, "k1", "Jones")],
        },
    )
    root = NodeSpec("t", NodeKind.ROOT, "T", ("ID", "AMOUNT"))
    spec = ExtractSpec("svc", "doc", "T", ("ID",), None, (root,))
    with Source(f"sqlite:///{path}").snapshot() as snapshot:
        table = snapshot.extract(spec, ChunkRange(4, None, None))["t"]
    assert table.column_names == ["ID", "AMOUNT", FLAWS_COLUMN]
    assert table.column("AMOUNT").to_pylist() == [Decimal("1.50"), None, None]
    ok, text, wide = table.column(FLAWS_COLUMN).to_pylist()
    assert ok is None
    assert "column AMOUNT (NUMBER(10,2))" in text and "text that is not a number" in text
    assert "at most 8 digits before the point" in wide
    assert "Smith" not in text and "123456789" not in wide
    child = NodeSpec("t.c", NodeKind.EMBED, "C", ("CID", "AT"), "t", (("TID", "ID"),))
    spec = ExtractSpec("svc", "doc", "T", ("ID",), "ID = 'k1'", (root, child))
    with Source(f"sqlite:///{path}").snapshot() as snapshot:
        tables = snapshot.extract(spec, ChunkRange(0, None, None))
    assert FLAWS_COLUMN not in tables["t"].column_names  # a clean node has no flaws column
    rows = tables["t.c"].to_pylist()
    assert [r["CID"] for r in rows] == [7, 8] and rows[1]["AT"] is None
    assert rows[0][FLAWS_COLUMN] is None and "column AT (DATE)" in rows[1][FLAWS_COLUMN]
    assert "Jones" not in rows[1][FLAWS_COLUMN]


def test_text_that_is_not_utf8_is_a_flaw_not_a_failed_read(make_db: MakeDb) -> None:
    path = make_db("CREATE TABLE T (ID INTEGER PRIMARY KEY, NAME VARCHAR2(20));", {"T": []})
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO T VALUES (1, 'Siân'), (2, CAST(X'C328' AS TEXT))")
    root = NodeSpec("t", NodeKind.ROOT, "T", ("ID", "NAME"))
    spec = ExtractSpec("svc", "doc", "T", ("ID",), None, (root,))
    with Source(f"sqlite:///{path}").snapshot() as snapshot:
        table = snapshot.extract(spec, ChunkRange(0, None, None))["t"]
        again = snapshot.extract(spec, ChunkRange(0, None, None))["t"]
    assert table.column("NAME").to_pylist() == ["Siân", None]
    assert "text that is not valid UTF-8" in table.column(FLAWS_COLUMN).to_pylist()[1]
    assert again.equals(table)  # the connection reads text as before afterwards


def test_composite_link_onto_the_whole_key_and_self_reference(make_db: MakeDb) -> None:
    path = make_db(
        "CREATE TABLE P (A TEXT, B INTEGER, PARENT_A TEXT, PARENT_B INTEGER, PRIMARY KEY (A, B));"
        "CREATE TABLE K (ID INTEGER PRIMARY KEY, PA TEXT, PB INTEGER);",
        {
            "P": [("x", 1, None, None), ("x", 2, "x", 1), ("y", 1, "x", 2), ("z", 0, "y", 1)],
            "K": [(1, "x", 1), (2, "x", 2), (3, "y", 1), (4, "y", 2), (5, "x", None)],
        },
    )
    nodes = (
        NodeSpec("p", NodeKind.ROOT, "P", ("A", "B")),
        NodeSpec("p.k", NodeKind.EMBED, "K", ("ID",), "p", (("PB", "B"), ("PA", "A"))),
        NodeSpec("p.up", NodeKind.LOOKUP, "P", ("A", "B"), "p",
                 (("A", "PARENT_A"), ("B", "PARENT_B"))),
    )  # fmt: skip
    spec = ExtractSpec("s", "p", "P", ("A", "B"), None, nodes)
    with Source(f"sqlite:///{path}").snapshot() as snapshot:
        tables = snapshot.extract(spec, ChunkRange(0, ("x", 2), ("z", 0)))
    assert tables["p"].to_pylist() == [{"A": "x", "B": 2}, {"A": "y", "B": 1}]
    assert tables["p.k"].column("ID").to_pylist() == [2, 3, 4]  # 4 is an orphan in range
    assert tables["p.up"].to_pylist() == [{"A": "x", "B": 1}, {"A": "x", "B": 2}]
    filtered = ExtractSpec("s", "p", "P", ("A", "B"), "B <> 2", nodes)
    with Source(f"sqlite:///{path}").snapshot() as snapshot:
        tables = snapshot.extract(filtered, ChunkRange(0, ("x", 1), None))
    assert tables["p"].to_pylist() == [{"A": "x", "B": 1}, {"A": "y", "B": 1}, {"A": "z", "B": 0}]
    assert tables["p.k"].column("ID").to_pylist() == [1, 3]  # not x/2's, nor the orphan y/2


def test_missing_table_or_column_is_a_source_error(make_db: MakeDb, tmp_path: Path) -> None:
    path = make_db("CREATE TABLE T (ID INTEGER PRIMARY KEY)")
    source = Source(f"sqlite:///{path}")
    missing_table = ExtractSpec("s", "d", "NOPE", ("ID",), None,
                                (NodeSpec("n", NodeKind.ROOT, "NOPE", ("ID",)),))  # fmt: skip
    missing_column = ExtractSpec("s", "d", "T", ("ID",), None,
                                 (NodeSpec("n", NodeKind.ROOT, "T", ("ID", "GONE")),))  # fmt: skip
    with source.snapshot() as snapshot:
        for spec, name in ((missing_table, "NOPE"), (missing_column, "GONE")):
            with pytest.raises(SourceError) as caught:
                snapshot.extract(spec, ChunkRange(0, None, None))
            assert name in caught.value.message and "migrate check" in str(caught.value.hint)


def test_children_of_roots_the_where_leaves_out_are_neither_staged_nor_checked(
    make_db: MakeDb,
) -> None:
    """Children linked on the whole root key are read by key range, then kept only for the chunk's
    root rows: an excluded root's child is not staged, and a bad value in it stops nothing."""
    path = make_db(
        "CREATE TABLE T (ID VARCHAR2(5) PRIMARY KEY, FLAG CHAR(1));"
        "CREATE TABLE C (CID INTEGER PRIMARY KEY, TID VARCHAR2(5), AT DATE);",
        {
            "T": [("k1", "N"), ("k2", "S"), ("k3", None)],
            "C": [(1, "k1", "1999-12-31"), (2, "k2", "not a date"), (3, "k3", None),
                  (4, "k4", "2000-01-01"), (5, None, "2000-01-01")],
        },
    )  # fmt: skip
    root = NodeSpec("t", NodeKind.ROOT, "T", ("ID",))
    child = NodeSpec("t.c", NodeKind.EMBED, "C", ("CID", "TID", "AT"), "t", (("TID", "ID"),))
    spec = ExtractSpec("s", "d", "T", ("ID",), "COALESCE(FLAG, 'N') <> 'S'", (root, child))
    with Source(f"sqlite:///{path}").snapshot() as snapshot:
        tables = snapshot.extract(spec, ChunkRange(0, None, None))
    assert tables["t"].column("ID").to_pylist() == ["k1", "k3"]
    assert tables["t.c"].column("CID").to_pylist() == [1, 3]  # not k2's, nor the orphan k4


def test_a_link_of_another_declared_type_is_joined_not_ranged(make_db: MakeDb) -> None:
    """CHAR and VARCHAR keys may compare differently from how they sort (PostgreSQL pads CHAR),
    so only a link of the key's own declared type is read by range (which keeps orphans)."""
    path = make_db(
        "CREATE TABLE T (ID VARCHAR2(5) PRIMARY KEY);"
        "CREATE TABLE SAME (SID INTEGER PRIMARY KEY, TID VARCHAR2(9));"
        "CREATE TABLE OTHER (OID INTEGER PRIMARY KEY, TID CHAR(5));",
        {"T": [("a",), ("c",)], "SAME": [(1, "a"), (2, "b")], "OTHER": [(1, "a"), (2, "b")]},
    )
    nodes = (
        NodeSpec("t", NodeKind.ROOT, "T", ("ID",)),
        NodeSpec("t.same", NodeKind.EMBED, "SAME", ("SID", "TID"), "t", (("TID", "ID"),)),
        NodeSpec("t.other", NodeKind.EMBED, "OTHER", ("OID", "TID"), "t", (("TID", "ID"),)),
    )
    spec = ExtractSpec("s", "d", "T", ("ID",), None, nodes)
    with Source(f"sqlite:///{path}").snapshot() as snapshot:
        tables = snapshot.extract(spec, ChunkRange(0, None, None))
    assert tables["t.same"].column("SID").to_pylist() == [1, 2]  # "b" is an orphan in range
    assert tables["t.other"].column("OID").to_pylist() == [1]


def test_every_chunk_reuses_its_shape_of_statement(make_db: MakeDb) -> None:
    """SQL is compiled once per shape of chunk (first, middle, last); bounds are parameters."""
    path = make_db(DDL, _data())
    spec = _spec("STATUS <> 'X'")
    with Source(f"sqlite:///{path}").snapshot() as snapshot:
        chunks = snapshot.plan_chunks(spec, 3)
        queries = snapshot._queries(spec)
        assert snapshot._queries(spec) is queries
        for node in spec.nodes:
            second, third = (queries.rows(node, c) for c in chunks[1:3])
            assert second[0] is third[0]
            assert second[1] != third[1]
            first, last = queries.rows(node, chunks[0]), queries.rows(node, chunks[-1])
            assert len({first[0], second[0], last[0]}) == 3


def test_a_chunk_read_by_keys_holds_exactly_those_trees_whatever_their_count(
    make_db: MakeDb,
) -> None:
    """A delta reads roots by key lists of every length; the lists are padded to a few sizes
    (the last key again), so statements compile a few times, not once per length."""
    data = _data()
    path = make_db(DDL, data)
    spec = _spec()
    everything = {o[0] for o in data["ORDERS"]}
    with Source(f"sqlite:///{path}").snapshot() as snapshot:
        whole = snapshot.extract(spec, ChunkRange(0, None, None))
        for count in range(1, ORDER_COUNT + 1):
            keys = tuple((key,) for key in sorted(everything)[:count])
            tables = snapshot.extract(spec, ChunkRange(0, None, None, keys=keys))
            wanted = {k[0] for k in keys}
            assert set(tables["order"].column("ORDER_ID").to_pylist()) == wanted
            items = whole["order.items"].filter(
                [o in wanted for o in whole["order.items"].column("ORDER_ID").to_pylist()]
            )
            assert _as_counter(tables["order.items"].to_pylist()) == _as_counter(items.to_pylist())
        assert sorted(snapshot.existing_roots(spec, ChunkRange(0, None, None, keys=keys))) == [
            (k,) for k in sorted(everything)
        ]
        compiled = snapshot._queries(spec)._compiled
    sizes = {shape[4] for shape in compiled if shape[4] is not None}
    assert sizes == {1, 2, 4, 8, 16, 32}  # 23 lengths, six sizes
