"""The workers' planner makes exactly the request parts `request_parts` makes, and refuses
exactly what it refuses, with its message: a property test over awkward documents."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from migrate.document import Document, IndexValue
from migrate.errors import TargetError
from migrate.target.riak.batch import Planner, plan_documents, request_parts

NAMES = st.sampled_from(["gp_bin", "born_int", "n_int", "tags_bin", "Bad", "x_bin ", "no_suffix"])
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)
VALUE: st.SearchStrategy[IndexValue] = st.one_of(
    TEXT,
    st.integers(-(2**63), 2**63),
    st.booleans(),  # type: ignore[arg-type]
)
DOC = st.builds(
    Document,
    st.sampled_from(["default", "siblings", ""]),
    st.sampled_from(["people", "ward 7/é", ""]),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=6),
    st.just(b"{}"),
    st.lists(
        st.tuples(NAMES, st.lists(VALUE, max_size=3).map(tuple)),
        max_size=3,
        unique_by=lambda x: x[0],
    ).map(lambda pairs: tuple(sorted(pairs))),
    st.just("0" * 32),
)


def outcome(make: object, doc: Document) -> object:
    try:
        return make(doc)  # type: ignore[operator]
    except TargetError as exc:
        return ("refused", exc.render())


@settings(max_examples=400, deadline=None)
@given(docs=st.lists(DOC, min_size=1, max_size=6))
def test_the_planner_makes_and_refuses_what_request_parts_does(docs: list[Document]) -> None:
    planner = Planner()  # one per batch: its caches carry over from document to document
    for doc in docs:
        assert outcome(planner.parts, doc) == outcome(request_parts, doc)


def test_a_batch_with_a_document_riak_refuses_is_left_as_it_came() -> None:
    good = Document("default", "b", "k", b"{}", (("gp_bin", ("A1",)),), "0" * 32)
    bad = Document("default", "b", "k2", b"{}", (("gp_bin", ("A1, A2",)),), "0" * 32)
    assert plan_documents([good, bad]) == [good, bad]
    with pytest.raises(TargetError, match="comma"):
        Planner().parts(bad)
