"""Staged chunks: round trip, owner-only files, atomic replacement, and corruption detection."""

from __future__ import annotations

import datetime as dt
import os
import stat
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from migrate.errors import StagingError
from migrate.source import StagedChunk, read_staged, write_staged

from .conftest import MakeDb


def _tables() -> dict[str, pa.Table]:
    root = pa.table(
        {
            "ID": pa.array([1, 2, None], pa.int64()),
            "AMOUNT": pa.array([Decimal("12.50"), None, Decimal("-0.01")], pa.decimal128(38, 2)),
            "N": pa.array(["12.5", "3", None], pa.string()),
            "AT": pa.array(
                [dt.datetime(2020, 1, 31), None, dt.datetime(1, 1, 1)], pa.timestamp("us")
            ),
            "TZ": pa.array(
                [dt.datetime(2020, 1, 31, 12, tzinfo=dt.UTC), None, None],
                pa.timestamp("us", tz="UTC"),
            ),
            "RAW": pa.array([b"\x00\xff", None, b""], pa.binary()),
            "OK": pa.array([True, False, None], pa.bool_()),
            "F": pa.array([0.1, None, 1e308], pa.float64()),
        }
    )
    child = pa.table({"NAME": pa.array(["é", "x"], pa.string())})
    empty = pa.table({"X": pa.array([], pa.int64())})
    return {"patient": root, "patient.addresses/../x": child, "patient.gp": empty}


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_round_trip_keeps_types_values_and_node_order(tmp_path: Path) -> None:
    tables = _tables()
    staged = write_staged(tmp_path / "run" / "chunk-0", tables)
    assert staged.path == str(tmp_path / "run" / "chunk-0")
    assert staged.rows == {"patient": 3, "patient.addresses/../x": 2, "patient.gp": 0}
    back = read_staged(Path(staged.path), staged)
    assert list(back) == list(tables)
    for node_id, table in tables.items():
        assert back[node_id].equals(table), node_id
        assert back[node_id].schema.equals(table.schema)


def test_checksum_is_xxh3_128_over_the_files_in_node_order(tmp_path: Path) -> None:
    staged = write_staged(tmp_path / "c", _tables())
    files = sorted(p for p in (tmp_path / "c").iterdir() if p.suffix == ".parquet")
    assert len(files) == 3
    assert all(p.parent == tmp_path / "c" for p in files)  # node ids never escape the folder
    digest = xxhash.xxh3_128()
    for path in files:  # files are numbered in node order
        digest.update(path.read_bytes())
    assert staged.checksum == digest.hexdigest()


def test_files_and_folders_are_owner_only_even_with_a_permissive_umask(
    tmp_path: Path, permissive_umask: None
) -> None:
    directory = tmp_path / "staging" / "svc" / "00001"
    write_staged(directory, _tables())
    for folder in (tmp_path / "staging", tmp_path / "staging" / "svc", directory):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    entries = list(directory.iterdir())
    assert entries
    for path in entries:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_a_stale_copy_and_half_written_leftovers_are_replaced(tmp_path: Path) -> None:
    directory = tmp_path / "00003"
    directory.mkdir()
    (directory / "junk.parquet").write_bytes(b"old")
    leftover = tmp_path / ".00003.tmp-deadbeef"
    leftover.mkdir()
    (leftover / "half.parquet").write_bytes(b"half")
    staged = write_staged(directory, {"only": pa.table({"A": [1]})})
    assert not (directory / "junk.parquet").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["00003"]
    assert read_staged(directory, staged)["only"].to_pylist() == [{"A": 1}]


def test_a_corrupted_file_is_detected(tmp_path: Path) -> None:
    staged = write_staged(tmp_path / "c", _tables())
    target = next(p for p in (tmp_path / "c").iterdir() if p.name.startswith("000-"))
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    for expected in (staged, None):
        with pytest.raises(StagingError) as caught:
            read_staged(tmp_path / "c", expected)
        assert str(tmp_path / "c") in caught.value.message
        assert caught.value.hint and "extract" in caught.value.hint


def test_ledger_record_mismatch_is_detected(tmp_path: Path) -> None:
    staged = write_staged(tmp_path / "c", _tables())
    other_sum = StagedChunk(staged.path, staged.rows, "0" * 32)
    other_rows = StagedChunk(staged.path, {**staged.rows, "patient": 4}, staged.checksum)
    for record in (other_sum, other_rows):
        with pytest.raises(StagingError):
            read_staged(tmp_path / "c", record)


def test_missing_chunk_or_file_is_a_staging_error(tmp_path: Path) -> None:
    with pytest.raises(StagingError) as caught:
        read_staged(tmp_path / "nothing-here")
    assert "missing" in caught.value.message
    write_staged(tmp_path / "c", _tables())
    next(p for p in (tmp_path / "c").iterdir() if p.suffix == ".parquet").unlink()
    with pytest.raises(StagingError):
        read_staged(tmp_path / "c")


@settings(max_examples=20, deadline=None)
@given(
    values=st.lists(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)), max_size=30),
    texts=st.lists(st.one_of(st.none(), st.text(max_size=10)), min_size=1, max_size=5),
)
def test_round_trip_property(
    tmp_path_factory: pytest.TempPathFactory, values: list[int | None], texts: list[str | None]
) -> None:
    directory = tmp_path_factory.mktemp("prop") / "chunk"
    tables = {
        "a": pa.table({"V": pa.array(values, pa.int64())}),
        "b": pa.table({"T": pa.array(texts, pa.string())}),
    }
    staged = write_staged(directory, tables)
    again = write_staged(directory, tables)
    assert again.checksum == staged.checksum  # same rows, same bytes
    back = read_staged(directory, again)
    assert back["a"].column("V").to_pylist() == values
    assert back["b"].column("T").to_pylist() == texts


def test_extracted_chunk_stages_and_reads_back(make_db: MakeDb, tmp_path: Path) -> None:
    from migrate.source import ChunkRange, Source
    from migrate.spec import ExtractSpec, NodeKind, NodeSpec

    path = make_db(
        "CREATE TABLE T (ID RAW(4) PRIMARY KEY, AMOUNT NUMBER(8,3), AT TIMESTAMP WITH TIME ZONE)",
        {"T": [(b"\x01\x02\x03\x04", 1.5, "2021-06-01 10:00:00+02:00")]},
    )
    spec = ExtractSpec(
        "s", "d", "T", ("ID",), None, (NodeSpec("d", NodeKind.ROOT, "T", ("ID", "AMOUNT", "AT")),)
    )
    with Source(f"sqlite:///{path}").snapshot() as snapshot:
        tables = snapshot.extract(spec, ChunkRange(0, None, None))
    staged = write_staged(tmp_path / "x", tables)
    row = read_staged(tmp_path / "x", staged)["d"].to_pylist()[0]
    assert row == {
        "ID": b"\x01\x02\x03\x04",
        "AMOUNT": Decimal("1.500"),
        "AT": dt.datetime(2021, 6, 1, 8, tzinfo=dt.UTC),
    }
