"""The embedded target on real SQLite files: Riak's model, idempotence, atomicity, permissions."""

from __future__ import annotations

import json
import sqlite3
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from migrate.document import Document, IndexValue
from migrate.errors import ConfigError, TargetError
from migrate.target.base import Target, WriteStats
from migrate.target.local import LocalTarget, path_from_url

META = {"run_id": "r1", "service": "pds"}


def doc(
    key: str,
    value: Any,
    *,
    bucket: str = "patients",
    bucket_type: str = "default",
    indexes: dict[str, list[IndexValue]] | None = None,
) -> Document:
    data = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return Document(
        bucket_type=bucket_type,
        bucket=bucket,
        key=key,
        value=data,
        indexes=tuple(sorted((name, tuple(values)) for name, values in (indexes or {}).items())),
        checksum=xxhash.xxh3_128_hexdigest(data),
    )


@pytest.fixture
def target(tmp_path: Path) -> Iterator[LocalTarget]:
    instance = LocalTarget(tmp_path / "store" / "target.db")
    yield instance
    instance.close()


def raw_count(path: Path, table: str) -> int:
    with sqlite3.connect(path) as conn:
        count = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    conn.close()
    return int(count)


def test_it_satisfies_the_target_protocol(target: LocalTarget) -> None:
    as_target: Target = target
    assert as_target.display_url.startswith("local:///")
    assert str(target.path) in target.display_url


def test_write_then_get_round_trips_value_indexes_and_meta(target: LocalTarget) -> None:
    document = doc(
        "9000000009", {"name": "Siân"}, indexes={"gp_bin": ["A81001"], "born_int": [1980]}
    )
    assert target.write([document], meta=META) == WriteStats(written=1, unchanged=0)
    stored = target.get("default", "patients", "9000000009")
    assert stored is not None
    assert stored.value == document.value
    assert stored.indexes == {"born_int": [1980], "gp_bin": ["A81001"]}
    assert stored.meta == META
    assert (stored.bucket_type, stored.bucket, stored.key) == ("default", "patients", "9000000009")
    assert target.get("default", "patients", "missing") is None
    assert target.get("other", "patients", "9000000009") is None


def test_rewriting_the_same_document_is_unchanged_and_never_duplicates(
    target: LocalTarget,
) -> None:
    document = doc("k1", {"a": 1}, indexes={"x_bin": ["v"]})
    assert target.write([document], meta=META) == WriteStats(written=1, unchanged=0)
    assert target.write([document], meta={"run_id": "r2"}) == WriteStats(written=0, unchanged=1)
    assert [o.key for o in target.iter_bucket("default", "patients")] == ["k1"]
    assert raw_count(target.path, "objects") == 1
    assert raw_count(target.path, "index_entries") == 1
    stored = target.get("default", "patients", "k1")
    assert stored is not None and stored.meta == META


def test_a_batch_with_the_same_key_twice_keeps_the_last(target: LocalTarget) -> None:
    stats = target.write([doc("k", {"v": 1}), doc("k", {"v": 2})], meta={})
    assert stats == WriteStats(written=2, unchanged=0)
    stored = target.get("default", "patients", "k")
    assert stored is not None and json.loads(stored.value) == {"v": 2}
    assert raw_count(target.path, "objects") == 1


def test_an_update_replaces_indexes_and_meta_wholesale(target: LocalTarget) -> None:
    target.write([doc("k", {"v": 1}, indexes={"gp_bin": ["A1"], "born_int": [1]})], meta=META)
    target.write([doc("k", {"v": 2}, indexes={"gp_bin": ["B2"]})], meta={"run_id": "r2"})
    stored = target.get("default", "patients", "k")
    assert stored is not None
    assert stored.indexes == {"gp_bin": ["B2"]} and stored.meta == {"run_id": "r2"}
    assert target.query_index("default", "patients", "gp_bin", "A1") == []
    assert target.query_index("default", "patients", "born_int", 1) == []
    assert target.query_index("default", "patients", "gp_bin", "B2") == ["k"]


def test_same_value_with_new_indexes_is_written(target: LocalTarget) -> None:
    target.write([doc("k", {"v": 1}, indexes={"gp_bin": ["A1"]})], meta={})
    stats = target.write([doc("k", {"v": 1}, indexes={"gp_bin": ["A1"], "n_int": [5]})], meta={})
    assert stats == WriteStats(written=1, unchanged=0)
    assert target.query_index("default", "patients", "n_int", 5) == ["k"]


def test_multi_valued_indexes(target: LocalTarget) -> None:
    target.write(
        [
            doc("p1", {}, indexes={"postcode_bin": ["LS6 2AB", "LS1 1AA"]}),
            doc("p2", {}, indexes={"postcode_bin": ["LS6 2AB"]}),
            doc("p3", {}, indexes={"postcode_bin": ["LS1 1AA", "LS1 1AA"]}),
        ],
        meta={},
    )
    assert target.query_index("default", "patients", "postcode_bin", "LS6 2AB") == ["p1", "p2"]
    assert target.query_index("default", "patients", "postcode_bin", "LS1 1AA") == ["p1", "p3"]
    stored = target.get("default", "patients", "p3")
    assert stored is not None and stored.indexes == {"postcode_bin": ["LS1 1AA"]}
    stored = target.get("default", "patients", "p1")
    assert stored is not None and stored.indexes == {"postcode_bin": ["LS1 1AA", "LS6 2AB"]}


def test_range_queries_on_int_and_bin_are_inclusive_and_ordered_by_term_then_key(
    target: LocalTarget,
) -> None:
    target.write(
        [
            doc("p1", {}, indexes={"born_int": [19800221], "gp_bin": ["A81003"]}),
            doc("p2", {}, indexes={"born_int": [19800222], "gp_bin": ["A81001"]}),
            doc("p3", {}, indexes={"born_int": [19800223], "gp_bin": ["A81002"]}),
            doc("p4", {}, indexes={"born_int": [19800224], "gp_bin": ["A81001"]}),
            doc("p5", {}, indexes={"born_int": [-5, 19800299], "gp_bin": ["B1"]}),
        ],
        meta={},
    )
    query = target.query_index
    assert query("default", "patients", "born_int", 19800222, 19800224) == ["p2", "p3", "p4"]
    assert query("default", "patients", "born_int", -10, 0) == ["p5"]
    assert query("default", "patients", "born_int", 19800300, 19800400) == []
    assert query("default", "patients", "gp_bin", "A81001", "A81002") == ["p2", "p4", "p3"]
    assert query("default", "patients", "gp_bin", "A81002", "A81003") == ["p3", "p1"]
    assert query("default", "patients", "gp_bin", "A", "Z") == ["p2", "p4", "p3", "p1", "p5"]
    # Integers compare numerically, not as text.
    assert query("default", "patients", "born_int", 9, 19800221) == ["p1"]


def test_a_key_matching_several_terms_of_a_range_is_listed_once(target: LocalTarget) -> None:
    target.write(
        [doc("p", {}, indexes={"n_int": [1, 2, 3]}), doc("q", {}, indexes={"n_int": [2]})], meta={}
    )
    assert target.query_index("default", "patients", "n_int", 1, 3) == ["p", "q"]


def test_indexes_are_scoped_to_bucket_type_and_bucket(target: LocalTarget) -> None:
    target.write(
        [
            doc("k", {}, indexes={"x_bin": ["v"]}),
            doc("k", {}, bucket="other", indexes={"x_bin": ["v"]}),
            doc("k2", {}, bucket_type="typed", indexes={"x_bin": ["v"]}),
        ],
        meta={},
    )
    assert target.query_index("default", "patients", "x_bin", "v") == ["k"]
    assert target.query_index("typed", "patients", "x_bin", "v") == ["k2"]
    assert [o.key for o in target.iter_bucket("default", "other")] == ["k"]


def test_bad_index_names_and_values_are_refused(target: LocalTarget) -> None:
    with pytest.raises(TargetError, match="_bin or _int"):
        target.write([doc("k", {}, indexes={"gp": ["A"]})], meta={})
    with pytest.raises(TargetError, match="integers"):
        target.write([doc("k", {}, indexes={"born_int": ["1980-02-29"]})], meta={})
    with pytest.raises(TargetError, match="integers"):
        target.write([doc("k", {}, indexes={"flag_int": [True]})], meta={})
    with pytest.raises(TargetError, match="text"):
        target.write([doc("k", {}, indexes={"gp_bin": [5]})], meta={})
    with pytest.raises(TargetError, match="64-bit"):
        target.write([doc("k", {}, indexes={"big_int": [2**70]})], meta={})
    with pytest.raises(TargetError, match="integers"):
        target.query_index("default", "patients", "born_int", "x")
    with pytest.raises(TargetError, match="text"):
        target.query_index("default", "patients", "gp_bin", "a", 3)
    assert raw_count(target.path, "objects") == 0


AWKWARD_KEYS = ["101/10000004 Siân", "a b", "100%", "%2F", "Øvrebø", "日本", "emoji 🚑", "k\\n"]


def test_awkward_keys_and_buckets_round_trip(target: LocalTarget) -> None:
    documents = [doc(key, {"i": i}, bucket="ward/7 %") for i, key in enumerate(AWKWARD_KEYS)]
    target.write(documents, meta={})
    for i, key in enumerate(AWKWARD_KEYS):
        stored = target.get("default", "ward/7 %", key)
        assert stored is not None and json.loads(stored.value) == {"i": i}
    assert [o.key for o in target.iter_bucket("default", "ward/7 %")] == sorted(AWKWARD_KEYS)
    assert target.delete("default", "ward/7 %", "101/10000004 Siân") is True
    assert target.get("default", "ward/7 %", "101/10000004 Siân") is None


@pytest.mark.parametrize(
    ("bucket_type", "bucket", "key"),
    [("default", "", "k"), ("", "b", "k"), ("default", "b", ""), ("default", "b", "\udc80")],
)
def test_empty_or_invalid_names_are_refused(
    target: LocalTarget, bucket_type: str, bucket: str, key: str
) -> None:
    with pytest.raises(TargetError):
        target.write([doc(key, {}, bucket=bucket, bucket_type=bucket_type)], meta={})
    with pytest.raises(TargetError):
        target.get(bucket_type, bucket, key)
    assert raw_count(target.path, "objects") == 0


@settings(max_examples=40, deadline=None)
@given(keys=st.sets(st.text(st.characters(exclude_categories=["Cs"]), min_size=1), max_size=30))
def test_iter_bucket_orders_keys_by_code_point(keys: set[str]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        target = LocalTarget(Path(folder) / "t.db")
        try:
            target.write([doc(k, {"k": k}) for k in keys], meta={})
            listed = [o.key for o in target.iter_bucket("default", "patients")]
        finally:
            target.close()
    assert listed == sorted(keys)


def test_iter_bucket_pages_through_large_buckets(target: LocalTarget) -> None:
    keys = [f"k{i:04d}" for i in range(1203)]
    target.write([doc(k, {}) for k in reversed(keys)], meta={})
    assert [o.key for o in target.iter_bucket("default", "patients")] == keys


def test_delete(target: LocalTarget) -> None:
    target.write([doc("k", {}, indexes={"x_bin": ["v"]})], meta={})
    assert target.delete("default", "patients", "k") is True
    assert target.delete("default", "patients", "k") is False
    assert target.get("default", "patients", "k") is None
    assert target.query_index("default", "patients", "x_bin", "v") == []
    assert raw_count(target.path, "index_entries") == 0


def test_an_interrupted_batch_stores_nothing(target: LocalTarget) -> None:
    target.write([doc("before", {"v": 0})], meta={})
    good = [doc(f"k{i}", {"v": i}, indexes={"x_bin": [str(i)]}) for i in range(5)]
    broken = Document("default", "patients", "bad", "not bytes", (), "0")  # type: ignore[arg-type]
    with pytest.raises(TargetError, match="not bytes") as info:
        target.write([*good, broken, doc("after", {})], meta={})
    assert "default/patients/bad" in str(info.value)
    assert [o.key for o in target.iter_bucket("default", "patients")] == ["before"]
    assert raw_count(target.path, "index_entries") == 0
    # The store still works after the rollback.
    assert target.write(good, meta={}) == WriteStats(written=5, unchanged=0)


def test_an_update_in_an_interrupted_batch_is_rolled_back(target: LocalTarget) -> None:
    target.write([doc("k", {"v": 1}, indexes={"x_bin": ["old"]})], meta=META)
    broken = Document("default", "", "bad", b"{}", (), "0")
    with pytest.raises(TargetError):
        target.write([doc("k", {"v": 2}, indexes={"x_bin": ["new"]}), broken], meta={})
    stored = target.get("default", "patients", "k")
    assert stored is not None and json.loads(stored.value) == {"v": 1}
    assert stored.indexes == {"x_bin": ["old"]} and stored.meta == META
    assert target.query_index("default", "patients", "x_bin", "old") == ["k"]


def test_files_and_folder_are_owner_only(tmp_path: Path) -> None:
    folder = tmp_path / "fresh" / "nested"
    target = LocalTarget(folder / "target.db")
    try:
        target.write([doc("k", {})], meta={})
        files = [p for p in folder.iterdir()]
        assert {p.name for p in files} >= {"target.db", "target.db-wal", "target.db-shm"}
        for path in files:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    finally:
        target.close()


def test_wal_and_full_sync(target: LocalTarget) -> None:
    conn = target._connection()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2


def test_reopening_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "target.db"
    first = LocalTarget(path)
    first.write([doc("k", {"v": 1}, indexes={"n_int": [7]})], meta=META)
    first.close()
    with pytest.raises(TargetError, match="closed"):
        first.get("default", "patients", "k")
    with LocalTarget(path) as second:
        stored = second.get("default", "patients", "k")
        assert stored is not None and stored.meta == META
        assert second.query_index("default", "patients", "n_int", 7) == ["k"]
        assert second.write([doc("k", {"v": 1}, indexes={"n_int": [7]})], meta={}).unchanged == 1


def test_a_file_that_is_not_a_store_is_a_target_error(tmp_path: Path) -> None:
    path = tmp_path / "target.db"
    path.write_bytes(b"garbage" * 1000)
    with pytest.raises(TargetError, match="not usable"):
        LocalTarget(path)


def test_urls(tmp_path: Path) -> None:
    assert path_from_url("local:///.migrate/target.db", base_dir=tmp_path) == (
        tmp_path / ".migrate" / "target.db"
    )
    absolute = tmp_path / "abs.db"
    assert path_from_url(f"local:///{absolute}") == absolute
    target = LocalTarget.from_url(f"local:///{absolute}")
    try:
        assert path_from_url(target.display_url) == absolute
    finally:
        target.close()
    for bad in ["riak://h:8098", "local://host/x.db", "local:///", "local:x.db"]:
        with pytest.raises(ConfigError):
            path_from_url(bad, base_dir=tmp_path)


def test_a_large_mixed_batch_writes_only_what_changed(target: LocalTarget) -> None:
    """Batches are stored set-based, in slices of keys: new, changed-value, changed-index and
    unchanged documents across two buckets must each be handled as a one-by-one PUT would."""
    first = [
        doc(f"k{n:04d}", {"n": n}, bucket=f"b{n % 2}", indexes={"n_int": [n], "g_bin": ["x"]})
        for n in range(1200)
    ]
    assert target.write(first, meta={}) == WriteStats(written=1200, unchanged=0)

    second = []
    for n in range(1200):
        body = {"n": n, "v": 2} if n % 3 == 0 else {"n": n}
        tag = "y" if n % 3 == 1 else "x"
        second.append(
            doc(f"k{n:04d}", body, bucket=f"b{n % 2}", indexes={"n_int": [n], "g_bin": [tag]})
        )
    second.append(doc("new", {"n": -1}, bucket="b0", indexes={"g_bin": ["x"]}))
    assert target.write(second, meta={}) == WriteStats(written=801, unchanged=400)

    assert sorted(target.query_index("default", "b1", "g_bin", "y")) == [
        f"k{n:04d}" for n in range(1200) if n % 3 == 1 and n % 2 == 1
    ]
    x_keys = set(target.query_index("default", "b0", "g_bin", "x"))
    assert "new" in x_keys and "k0001" not in x_keys and "k0000" in x_keys
    stored = target.get("default", "b0", "k0000")
    assert stored is not None and json.loads(stored.value) == {"n": 0, "v": 2}
    assert raw_count(target.path, "objects") == 1201


def test_the_same_key_twice_in_one_batch_ends_with_the_last(target: LocalTarget) -> None:
    batch = [
        doc("k", {"v": 1}, indexes={"g_bin": ["a"]}),
        doc("k", {"v": 2}, indexes={"g_bin": ["b"]}),
    ]
    target.write(batch, meta={})
    stored = target.get("default", "patients", "k")
    assert stored is not None and json.loads(stored.value) == {"v": 2}
    assert target.query_index("default", "patients", "g_bin", "a") == []
    assert target.query_index("default", "patients", "g_bin", "b") == ["k"]


# -- the file layout -------------------------------------------------------------------------------

# How stores were laid out before layout version 1 (user_version 0).
LAYOUT_0 = """
CREATE TABLE objects (
    bucket_type TEXT NOT NULL, bucket TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
    checksum TEXT NOT NULL, indexes TEXT NOT NULL, meta TEXT NOT NULL,
    PRIMARY KEY (bucket_type, bucket, key)
) WITHOUT ROWID;
CREATE TABLE index_entries (
    bucket_type TEXT NOT NULL, bucket TEXT NOT NULL, name TEXT NOT NULL, value_bin TEXT,
    value_int INTEGER, key TEXT NOT NULL, CHECK ((value_bin IS NULL) <> (value_int IS NULL))
);
CREATE INDEX index_entries_bin
    ON index_entries (bucket_type, bucket, name, value_bin, key) WHERE value_bin IS NOT NULL;
CREATE INDEX index_entries_int
    ON index_entries (bucket_type, bucket, name, value_int, key) WHERE value_int IS NOT NULL;
CREATE INDEX index_entries_object ON index_entries (bucket_type, bucket, key);
"""


def _layout_0_store(path: Path, documents: list[Document]) -> None:
    """A store as the earlier layout wrote it (spaced JSON, one entry row per term)."""
    with sqlite3.connect(path) as conn:
        conn.executescript(LAYOUT_0)
        for d in documents:
            indexes = {name: list(values) for name, values in d.indexes}
            conn.execute(
                "INSERT INTO objects VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    d.bucket_type,
                    d.bucket,
                    d.key,
                    d.value,
                    d.checksum,
                    json.dumps(indexes, sort_keys=True, ensure_ascii=False),
                    json.dumps(META, sort_keys=True),
                ),
            )
            for name, values in d.indexes:
                for value in values:
                    text = value if isinstance(value, str) else None
                    number = value if isinstance(value, int) else None
                    conn.execute(
                        "INSERT INTO index_entries VALUES (?, ?, ?, ?, ?, ?)",
                        (d.bucket_type, d.bucket, name, text, number, d.key),
                    )
    conn.close()


def _version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
    conn.close()
    return int(version)


EARLIER = [
    doc("p1", {"name": "Siân"}, indexes={"gp_bin": ["A1", "Øvrebø"], "born_int": [-5, 1980]}),
    doc("p2", {"name": "Bob"}, indexes={"gp_bin": ["A1"]}),
    doc("p3", {}, bucket="other", bucket_type="typed", indexes={"gp_bin": ["A1"]}),
]


def test_a_store_of_the_earlier_layout_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "target.db"
    _layout_0_store(path, EARLIER)
    with LocalTarget(path) as target:
        assert _version(path) == 1
        stored = target.get("default", "patients", "p1")
        assert stored is not None and stored.value == EARLIER[0].value and stored.meta == META
        assert stored.indexes == {"born_int": [-5, 1980], "gp_bin": ["A1", "Øvrebø"]}
        assert target.query_index("default", "patients", "gp_bin", "A1") == ["p1", "p2"]
        assert target.query_index("typed", "other", "gp_bin", "A1") == ["p3"]
        assert target.query_index("default", "patients", "born_int", -10, 0) == ["p1"]
        # What was stored is recognised as stored: a re-load writes nothing.
        assert target.write(EARLIER, meta={}) == WriteStats(written=0, unchanged=3)
        changed = doc("p1", {"name": "Siân"}, indexes={"gp_bin": ["B2"]})
        assert target.write([changed], meta={}) == WriteStats(written=1, unchanged=0)
        assert target.query_index("default", "patients", "gp_bin", "A1") == ["p2"]
        assert target.query_index("default", "patients", "born_int", -10, 2000) == []
    with sqlite3.connect(path) as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert not any("layout0" in name for name in tables)
    with LocalTarget(path) as again:  # opening an upgraded store changes nothing
        assert [o.key for o in again.iter_bucket("default", "patients")] == ["p1", "p2"]


def test_a_read_only_open_of_the_earlier_layout_says_how_to_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "target.db"
    _layout_0_store(path, EARLIER)
    before = path.read_bytes()
    with pytest.raises(TargetError, match="earlier version") as info:
        LocalTarget(path, read_only=True)
    assert "migrate run" in str(info.value)
    assert path.read_bytes() == before and _version(path) == 0


def test_a_store_of_a_newer_layout_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "target.db"
    LocalTarget(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    conn.close()
    for read_only in (False, True):
        with pytest.raises(TargetError, match="layout version 99"):
            LocalTarget(path, read_only=read_only)


def test_bin_terms_that_look_like_numbers_stay_text(target: LocalTarget) -> None:
    target.write([doc("k", {}, indexes={"code_bin": ["0123", "12"], "n_int": [123]})], meta={})
    assert target.query_index("default", "patients", "code_bin", "0123") == ["k"]
    assert target.query_index("default", "patients", "code_bin", "123") == []
    assert target.query_index("default", "patients", "n_int", 123) == ["k"]
    terms = list(target.index_terms("default", "patients", "code_bin", "0", "9"))
    assert terms == [("0123", "k"), ("12", "k")]
    assert list(target.index_terms("default", "patients", "n_int", 0, 999)) == [(123, "k")]


def test_indexes_given_out_of_order_or_twice_are_stored_in_order(target: LocalTarget) -> None:
    indexes = (("b_bin", ("y", "x")), ("a_int", (2,)), ("b_bin", ("x", "z")), ("c_bin", ()))
    value = b'{"k":1}'
    document = Document(
        "default", "patients", "k", value, indexes, xxhash.xxh3_128_hexdigest(value)
    )
    assert target.write([document], meta={}) == WriteStats(written=1, unchanged=0)
    stored = target.get("default", "patients", "k")
    assert stored is not None and stored.indexes == {"a_int": [2], "b_bin": ["x", "y", "z"]}
    canonical = doc("k", {"k": 1}, indexes={"a_int": [2], "b_bin": ["x", "y", "z"]})
    assert target.write([canonical], meta={}) == WriteStats(written=0, unchanged=1)
    assert raw_count(target.path, "index_entries") == 4


def test_an_update_touches_only_the_entries_that_changed(target: LocalTarget) -> None:
    first = [doc(f"k{i}", {"v": 1}, indexes={"g_bin": ["a", "b"], "n_int": [i]}) for i in range(3)]
    target.write(first, meta={})
    assert raw_count(target.path, "index_entries") == 9
    second = [doc(f"k{i}", {"v": 2}, indexes={"g_bin": ["b", "c"], "n_int": [i]}) for i in range(3)]
    assert target.write(second, meta={}) == WriteStats(written=3, unchanged=0)
    assert raw_count(target.path, "index_entries") == 9
    assert target.query_index("default", "patients", "g_bin", "a") == []
    assert target.query_index("default", "patients", "g_bin", "c") == ["k0", "k1", "k2"]
    assert target.query_index("default", "patients", "n_int", 0, 2) == ["k0", "k1", "k2"]
    assert target.delete("default", "patients", "k1") is True
    assert raw_count(target.path, "index_entries") == 6
