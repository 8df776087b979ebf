"""The chunk index: a chunk's keys and checksums by one index range query, on both targets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import xxhash
from riak_fake import RiakFake

from migrate.document import Document
from migrate.target import Target
from migrate.target.chunks import CHUNK_INDEX, chunk_prefix_range, chunk_term, with_chunk_index
from migrate.target.local import LocalTarget
from migrate.target.riak import RiakTarget
from migrate.target.riak import store as riak_store


def _doc(key: str, body: str) -> Document:
    value = f'{{"v":"{body}"}}'.encode()
    return Document(
        "default", "people", key, value, (("gp_bin", ("A1",)),), xxhash.xxh3_128_hexdigest(value)
    )


def test_a_term_falls_in_its_own_chunk_range_only() -> None:
    term = chunk_term(7, "ab" * 16)
    assert term == "00000007:" + "ab" * 16
    lo, hi = chunk_prefix_range(7)
    assert lo <= term <= hi
    for other in (6, 8, 70, 700):
        olo, ohi = chunk_prefix_range(other)
        assert not olo <= term <= ohi
    every_lo, every_hi = chunk_prefix_range()
    assert every_lo <= term <= every_hi
    assert every_lo <= chunk_term(99_999_999, "f" * 32) <= every_hi


def test_with_chunk_index_adds_the_entry_and_keeps_indexes_sorted() -> None:
    doc = with_chunk_index(_doc("k1", "x"), 3)
    names = [name for name, _ in doc.indexes]
    assert names == sorted(names) == ["gp_bin", CHUNK_INDEX]
    assert dict(doc.indexes)[CHUNK_INDEX] == (chunk_term(3, doc.checksum),)


@pytest.fixture(params=["local", "riak"])
def target(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Target]:
    if request.param == "local":
        monkeypatch.setattr("migrate.target.local._TERMS_PAGE", 7)
        local = LocalTarget(tmp_path / "target.db")
        yield local
        local.close()
        return
    fake: RiakFake = request.getfixturevalue("riak_fake")
    monkeypatch.setattr(riak_store, "PAGE_SIZE", 7)
    riak = RiakTarget(fake.url.replace("http://", "riak://"), max_in_flight=4)
    yield riak
    riak.close()


def test_index_terms_give_each_chunk_its_keys_and_checksums_across_pages(target: Target) -> None:
    chunks = {
        index: [_doc(f"c{index}-{n:02d}", f"{index}/{n}") for n in range(9)] for index in (0, 1, 2)
    }
    for index, docs in chunks.items():
        target.write([with_chunk_index(d, index) for d in docs], meta={})

    for index, docs in chunks.items():
        lo, hi = chunk_prefix_range(index)
        pairs = list(target.index_terms("default", "people", CHUNK_INDEX, lo, hi))
        assert sorted(key for _, key in pairs) == sorted(d.key for d in docs)
        checksums = {d.key: d.checksum for d in docs}
        for term, key in pairs:
            assert term == chunk_term(index, checksums[key])
        assert pairs == sorted(pairs), "pages come in (term, key) order"

    lo, hi = chunk_prefix_range()
    every = list(target.index_terms("default", "people", CHUNK_INDEX, lo, hi))
    assert len(every) == 27 and len({key for _, key in every}) == 27
