"""Chunk planning along single and composite keys, and chunk ranges' JSON round trip."""

from __future__ import annotations

import datetime as dt
import math
import sqlite3
import tempfile
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrate.errors import ConfigError, LedgerError, SourceError
from migrate.source import ChunkRange, Source
from migrate.spec import ExtractSpec, NodeKind, NodeSpec

from .conftest import MakeDb

# -- JSON round trip ----------------------------------------------------------------------------

key_values = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.floats(allow_nan=False),
    st.decimals(allow_nan=False, allow_infinity=False, places=None),
    st.datetimes(),
    st.datetimes(timezones=st.just(dt.UTC)),
    st.dates(),
    st.booleans(),
    st.uuids(),
)
bounds = st.none() | st.lists(key_values, min_size=1, max_size=3).map(tuple)


def _same(a: object, b: object) -> bool:
    return type(a) is type(b) and (a == b or (isinstance(a, float) and math.isnan(a)))


@given(index=st.integers(0, 10**6), lo=bounds, hi=bounds)
def test_chunk_range_round_trips_exactly(
    index: int, lo: tuple[object, ...] | None, hi: tuple[object, ...] | None
) -> None:
    chunk = ChunkRange(index, lo, hi)
    for back in (
        ChunkRange.from_json(chunk.to_json()),
        ChunkRange.from_bounds_json(index, *chunk.bounds_json()),
    ):
        assert back.index == index
        for original, read in ((lo, back.lo), (hi, back.hi)):
            assert (original is None) == (read is None)
            if original is not None and read is not None:
                assert len(original) == len(read)
                assert all(_same(a, b) for a, b in zip(original, read, strict=True))
                # Decimal keeps its exponent: 1.10 stays 1.10, not 1.1
                assert [str(v) for v in original] == [str(v) for v in read]


def test_unbounded_sides_are_json_null() -> None:
    assert ChunkRange(3, None, (5,)).bounds_json() == ("null", "[5]")
    assert ChunkRange.from_bounds_json(0, None, "null") == ChunkRange(0, None, None)


def test_a_damaged_range_record_is_a_ledger_error() -> None:
    with pytest.raises(LedgerError):
        ChunkRange.from_json('{"index": 1, "lo": [{"$": "nope", "v": 1}]}')
    with pytest.raises(LedgerError):
        ChunkRange.from_bounds_json(1, "{not json", None)


def test_unsupported_key_types_are_a_source_error() -> None:
    with pytest.raises(SourceError):
        ChunkRange(0, (dt.timedelta(1),), None).to_json()


# -- planning --------------------------------------------------------------------------------


def _spec(table: str, key: tuple[str, ...], where: str | None = None) -> ExtractSpec:
    root = NodeSpec("root", NodeKind.ROOT, table, key)
    return ExtractSpec("svc", "doc", table, key, where, (root,))


def _keys_by_chunk(source: Source, spec: ExtractSpec, size: int) -> list[list[tuple[object, ...]]]:
    with source.snapshot() as snapshot:
        chunks = snapshot.plan_chunks(spec, size)
        assert [c.index for c in chunks] == list(range(len(chunks)))
        result = []
        for chunk in chunks:
            table = snapshot.extract(spec, chunk)["root"]
            keys = list(zip(*(table.column(k).to_pylist() for k in spec.primary_key), strict=True))
            assert snapshot.count_rows(spec, chunk) == len(keys)
            result.append(keys)
        return result


def _composite_db(path: Path, rows: list[tuple[str, int, str]]) -> None:
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE VISITS (SITE VARCHAR2(3) NOT NULL, VISIT_NO NUMBER(6) NOT NULL, "
        "STATUS CHAR(1), PRIMARY KEY (SITE, VISIT_NO))"
    )
    db.executemany("INSERT INTO VISITS VALUES (?, ?, ?)", rows)
    db.commit()
    db.close()


composite_rows = st.lists(
    st.tuples(st.sampled_from(["A", "B", "BB", "C"]), st.integers(-5, 40), st.sampled_from("XY")),
    max_size=40,
    unique_by=lambda r: (r[0], r[1]),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=composite_rows, size=st.integers(1, 12), filtered=st.booleans())
def test_chunks_cover_a_composite_key_table_exactly_once(
    rows: list[tuple[str, int, str]], size: int, filtered: bool
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "visits.db"
        _composite_db(path, rows)
        source = Source(f"sqlite:///{path}")
        where = "STATUS = 'X'" if filtered else None
        chunks = _keys_by_chunk(source, _spec("VISITS", ("SITE", "VISIT_NO"), where), size)
        source.close()
    wanted = sorted((s, n) for s, n, status in rows if not filtered or status == "X")
    flat = [k for chunk in chunks for k in chunk]
    assert sorted(flat) == wanted  # every row once: no gap, no overlap
    assert len(chunks) == math.ceil(len(wanted) / size)
    assert all(len(chunk) == size for chunk in chunks[:-1])


@settings(max_examples=25, deadline=None)
@given(ids=st.sets(st.integers(-1000, 1000), max_size=50), size=st.integers(1, 15))
def test_chunks_cover_a_single_key_table_in_key_order(ids: set[int], size: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "t.db"
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE T (ID NUMBER(10) PRIMARY KEY, V VARCHAR2(5))")
        db.executemany("INSERT INTO T VALUES (?, 'v')", [(i,) for i in ids])
        db.commit()
        db.close()
        source = Source(f"sqlite:///{path}")
        chunks = _keys_by_chunk(source, _spec("T", ("ID",)), size)
        source.close()
    flat = [k[0] for chunk in chunks for k in chunk]
    assert flat == sorted(ids)
    assert [len(c) for c in chunks] == [min(size, len(ids) - i) for i in range(0, len(ids), size)]


def test_plan_bounds_are_the_first_key_of_each_chunk(make_db: MakeDb) -> None:
    rows = [(f"S{i % 3}", i, "X") for i in range(7)]
    path = make_db(
        "CREATE TABLE VISITS (SITE TEXT, VISIT_NO INTEGER, STATUS TEXT, "
        "PRIMARY KEY (SITE, VISIT_NO))",
        {"VISITS": rows},
    )
    with Source(f"sqlite:///{path}").snapshot() as snapshot:
        chunks = snapshot.plan_chunks(_spec("VISITS", ("SITE", "VISIT_NO")), 3)
    ordered = sorted((s, n) for s, n, _ in rows)
    assert chunks == [
        ChunkRange(0, None, ordered[3]),
        ChunkRange(1, ordered[3], ordered[6]),
        ChunkRange(2, ordered[6], None),
    ]


def test_empty_table_has_no_chunks(make_db: MakeDb) -> None:
    path = make_db("CREATE TABLE T (ID INTEGER PRIMARY KEY)")
    with Source(f"sqlite:///{path}").snapshot() as snapshot:
        assert snapshot.plan_chunks(_spec("T", ("ID",)), 10) == []


def test_bounds_of_every_key_type_survive_the_ledger(make_db: MakeDb) -> None:
    rows = [(bytes([i]) * 16, f"2020-01-{i + 1:02d} 10:00:00", i * 1.5, f"n{i}") for i in range(9)]
    path = make_db(
        "CREATE TABLE T (ID RAW(16), AT TIMESTAMP, AMOUNT NUMBER(10,2), NAME TEXT, "
        "PRIMARY KEY (ID, AT, AMOUNT))",
        {"T": rows},
    )
    spec = _spec("T", ("ID", "AT", "AMOUNT"))
    source = Source(f"sqlite:///{path}")
    with source.snapshot() as snapshot:
        chunks = snapshot.plan_chunks(spec, 2)
        stored = [ChunkRange.from_bounds_json(c.index, *c.bounds_json()) for c in chunks]
        assert stored == chunks
        counts = [snapshot.count_rows(spec, c) for c in stored]
    assert counts == [2, 2, 2, 2, 1]


def test_null_in_the_primary_key_is_refused(make_db: MakeDb) -> None:
    path = make_db(
        "CREATE TABLE T (A TEXT, B INTEGER, PRIMARY KEY (A, B))",
        {"T": [("x", 1), (None, 2)]},
    )
    with Source(f"sqlite:///{path}").snapshot() as snapshot, pytest.raises(SourceError) as caught:
        snapshot.plan_chunks(_spec("T", ("A", "B")), 5)
    assert "NULL" in caught.value.message and "T" in caught.value.message


def test_bad_chunk_size_and_keyless_root_are_refused(make_db: MakeDb) -> None:
    path = make_db("CREATE TABLE T (ID INTEGER PRIMARY KEY)")
    with Source(f"sqlite:///{path}").snapshot() as snapshot:
        with pytest.raises(ConfigError):
            snapshot.plan_chunks(_spec("T", ("ID",)), 0)
        with pytest.raises(SourceError):
            snapshot.plan_chunks(_spec("T", ()), 10)


def test_a_bad_where_is_a_source_error_naming_the_table(make_db: MakeDb) -> None:
    path = make_db("CREATE TABLE T (ID INTEGER PRIMARY KEY)", {"T": [(1,)]})
    with Source(f"sqlite:///{path}").snapshot() as snapshot, pytest.raises(SourceError) as caught:
        snapshot.plan_chunks(_spec("T", ("ID",), "NO_SUCH_COLUMN = 1"), 10)
    assert "T" in caught.value.message and caught.value.hint


def test_uuid_keys_round_trip() -> None:
    key = uuid.uuid4()
    chunk = ChunkRange(0, (key, Decimal("1.10")), None)
    assert ChunkRange.from_json(chunk.to_json()) == chunk
