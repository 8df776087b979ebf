"""Documents as the pipeline makes, ships and compares them."""

from __future__ import annotations

import gc
import pickle

import pytest

from migrate.document import Document
from migrate.target.chunks import CHUNK_INDEX, with_chunk_index

DOC = Document(
    "default",
    "patients",
    "9000000009",
    b'{"nhsNumber":"9000000009"}',
    (("birthdate_int", (19570522,)), ("family_bin", ("Hughes",))),
    "934abf4b28633608177763dade69efaa",
)


def test_a_document_is_immutable_and_compares_by_value() -> None:
    with pytest.raises(AttributeError):
        DOC.key = "other"  # type: ignore[misc]
    same = Document(
        bucket_type="default",
        bucket="patients",
        key="9000000009",
        value=b'{"nhsNumber":"9000000009"}',
        indexes=(("birthdate_int", (19570522,)), ("family_bin", ("Hughes",))),
        checksum="934abf4b28633608177763dade69efaa",
    )
    assert same == DOC and hash(same) == hash(DOC)
    other = Document("default", "patients", "9000000010", DOC.value, DOC.indexes, DOC.checksum)
    assert other != DOC


def test_documents_stay_out_of_the_cyclic_garbage_collector() -> None:
    """Millions of documents pass through a run; none can be part of a cycle, so none is tracked."""
    assert not gc.is_tracked(DOC)
    assert not gc.is_tracked(with_chunk_index(DOC, 3))


def test_a_document_survives_pickling_between_processes() -> None:
    back = pickle.loads(pickle.dumps([DOC, with_chunk_index(DOC, 7)], protocol=5))
    assert back[0] == DOC
    assert dict(back[1].indexes)[CHUNK_INDEX] == ("00000007:934abf4b28633608177763dade69efaa",)
    assert [name for name, _ in back[1].indexes] == sorted(name for name, _ in back[1].indexes)
