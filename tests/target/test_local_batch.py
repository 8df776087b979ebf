"""Batches the embedded target's preparer lays out in a worker: the same documents, the same rows
stored, whichever path a batch takes to the write."""

from __future__ import annotations

import json
import pickle
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from migrate.document import Document
from migrate.errors import TargetError
from migrate.target.base import WriteStats
from migrate.target.local import LocalTarget
from migrate.target.local_batch import (
    PreparedDocuments,
    _canonical_terms,
    index_terms,
    prepare,
    prepare_documents,
)
from tests.target.test_local import doc

META = {"migrate-run": "r1", "migrate-chunk": "c1"}


def test_a_prepared_batch_is_the_same_documents_in_order() -> None:
    documents = [
        doc("k2", {"b": 2}, indexes={"x_bin": ["v", "w"], "n_int": [3]}),
        doc("k1", {"a": "Siân"}),
        doc("k3", {}, bucket="other", bucket_type="t", indexes={"x_bin": ["v"]}),
    ]
    prepared = prepare_documents(documents)
    assert isinstance(prepared, PreparedDocuments)
    assert len(prepared) == 3
    assert list(prepared) == documents
    assert prepared[1] == documents[1]
    assert prepared[-1] == documents[-1]
    assert prepared[1:] == documents[1:]
    again = pickle.loads(pickle.dumps(prepared))
    assert isinstance(again, PreparedDocuments) and list(again) == documents
    assert again == prepared and again != prepare_documents(documents[:2])


def test_entries_are_grouped_by_bucket_and_index_name() -> None:
    prepared = prepare(
        [
            doc("k1", {}, indexes={"x_bin": ["v", "w"], "n_int": [3]}),
            doc("k2", {}, indexes={"x_bin": ["v"]}),
            doc("k3", {}, bucket="other", indexes={"x_bin": ["v"]}),
        ]
    )
    assert prepared is not None
    assert prepared.entries == {
        ("default", "patients", "n_int"): [(3, "k1")],
        ("default", "patients", "x_bin"): [("v", "k1"), ("w", "k1"), ("v", "k2")],
        ("default", "other", "x_bin"): [("v", "k3")],
    }


def test_indexes_out_of_form_are_made_canonical_as_the_write_stores_them() -> None:
    unsorted = Document(
        "default", "patients", "k", b"{}", (("x_bin", ("w", "v", "v")), ("a_int", (2,))), "c"
    )
    (document,) = prepare_documents([unsorted])
    assert document.indexes == (("a_int", (2,)), ("x_bin", ("v", "w")))


def test_a_key_twice_is_left_for_the_write_to_store_in_order() -> None:
    documents = [doc("k", {"v": 1}), doc("k", {"v": 2})]
    assert prepare(documents) is None
    assert prepare_documents(documents) is documents


def test_a_document_the_store_refuses_is_left_for_the_write_to_report(tmp_path: Path) -> None:
    documents = [doc("ok", {}), doc("k", {}, indexes={"x_bin": [7]})]  # type: ignore[list-item]
    with pytest.raises(TargetError, match="a _bin index takes text"):
        prepare(documents)
    assert prepare_documents(documents) is documents
    target = LocalTarget(tmp_path / "t.db")
    try:
        with pytest.raises(TargetError, match="document default/patients/k, index x_bin"):
            target.write(prepare_documents(documents), meta=META)
        assert target.get("default", "patients", "ok") is None
    finally:
        target.close()


def _contents(path: Path) -> tuple[list[Any], list[Any]]:
    with sqlite3.connect(path) as conn:
        objects = conn.execute(
            "SELECT bucket_type, bucket, key, checksum, indexes, meta, value FROM objects"
            " ORDER BY bucket_type, bucket, key"
        ).fetchall()
        entries = conn.execute(
            "SELECT n.bucket_type, n.bucket, n.name, e.term, e.key FROM index_entries AS e"
            " JOIN index_names AS n ON n.id = e.index_id ORDER BY 1, 2, 3, 4, 5"
        ).fetchall()
    conn.close()
    return objects, entries


_batches = st.lists(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c", "d", "e"]),  # keys repeat across batches
            st.integers(0, 2),  # the value
            st.sampled_from(["p", "q"]),  # the bucket
            st.lists(st.sampled_from(["v", "w", "x"]), max_size=3),  # x_bin terms
            st.lists(st.integers(-2, 2), max_size=2),  # n_int terms
        ),
        max_size=6,
    ),
    min_size=1,
    max_size=5,
)


@settings(max_examples=60, deadline=None)
@given(batches=_batches)
def test_prepared_in_a_worker_or_by_the_write_the_store_holds_the_same(
    batches: list[list[tuple[str, int, str, list[str], list[int]]]],
) -> None:
    """New, changed, re-indexed and unchanged objects, keys repeated within a batch too: a batch
    prepared and pickled as a worker sends it stores exactly what the documents themselves do."""
    model: dict[tuple[str, str, str], tuple[Document, str]] = {}  # what a store must hold
    with tempfile.TemporaryDirectory() as folder:
        plain = LocalTarget(Path(folder) / "plain.db")
        worked = LocalTarget(Path(folder) / "worked.db")
        try:
            for number, batch in enumerate(batches):
                documents = [
                    doc(key, {"v": value}, bucket=bucket, indexes={"x_bin": bins, "n_int": ints})
                    for key, value, bucket, bins, ints in batch
                ]
                meta = json.dumps({"migrate-chunk": str(number)})
                written = 0
                for document in documents:  # a write changes an object, or leaves it as it is
                    identity = (document.bucket_type, document.bucket, document.key)
                    before = model.get(identity)
                    if before is None or _stored_form(before[0]) != _stored_form(document):
                        model[identity] = (document, meta)
                        written += 1
                sent = pickle.loads(pickle.dumps(prepare_documents(documents)))
                expected = WriteStats(written, len(documents) - written)
                assert plain.write(documents, meta=json.loads(meta)) == expected
                assert worked.write(sent, meta=json.loads(meta)) == expected
            assert _contents(plain.path) == _modelled(model)
            assert _contents(worked.path) == _modelled(model)
        finally:
            plain.close()
            worked.close()


def _stored_form(document: Document) -> tuple[str, list[Any]]:
    return document.checksum, [(n, sorted(set(t))) for n, t in document.indexes if t]


def _modelled(
    model: dict[tuple[str, str, str], tuple[Document, str]],
) -> tuple[list[Any], list[Any]]:
    objects = []
    entries = []
    for (bucket_type, bucket, key), (document, meta) in sorted(model.items()):
        indexes = dict(_stored_form(document)[1])  # distinct terms in order, names in order
        objects.append(
            (
                bucket_type,
                bucket,
                key,
                document.checksum,
                json.dumps(indexes, separators=(",", ":")),
                meta,
                document.value,
            )
        )
        entries.extend(
            (bucket_type, bucket, name, term, key)
            for name, terms in indexes.items()
            for term in terms
        )
    return objects, sorted(entries)


_names = st.sampled_from(["a_bin", "b_bin", "n_int", "z_int", "bad", "x_bint"])
_ints = st.one_of(
    st.integers(-(2**64), 2**64), st.sampled_from([2**63 - 1, -(2**63), 2**63, -(2**63) - 1])
)
# Terms in the stored form (distinct, sorted, one type) as often as not, so that the fast check
# meets every kind of term; and lists of anything.
_terms = st.one_of(
    st.lists(st.text(max_size=3), unique=True, max_size=3).map(sorted),
    st.lists(_ints, unique=True, max_size=3).map(sorted),
    st.lists(st.one_of(st.text(max_size=3), _ints, st.booleans()), max_size=3),
)
_indexes = st.one_of(
    st.dictionaries(_names, _terms, max_size=4).map(lambda found: sorted(found.items())),
    st.lists(st.tuples(_names, _terms), max_size=4),
)


@settings(max_examples=300, deadline=None)
@given(indexes=_indexes)
def test_the_fast_check_of_index_terms_agrees_with_the_full_one(
    indexes: list[tuple[str, list[Any]]],
) -> None:
    """Indexes taken as they are must be what the full check gives; anything else (out of order,
    repeated, of the wrong type, past 64 bits, a bad name) is left to the full check."""
    document = Document(
        "default", "patients", "k", b"{}", tuple((n, tuple(v)) for n, v in indexes), "c"
    )
    taken = _canonical_terms(document, {})
    try:
        checked = index_terms(document)
    except TargetError:
        assert taken is None
        return
    if taken is not None:
        assert taken == checked
        assert list(taken) == sorted(taken)
