"""The ledger's register of a run's documents: collisions across chunks, found once."""

from __future__ import annotations

from pathlib import Path

from migrate.document import Claim
from migrate.ledger import Ledger


def _ledger(tmp_path: Path) -> tuple[Ledger, str]:
    ledger = Ledger(f"sqlite:///{tmp_path / 'state.db'}")
    run = ledger.start_run("svc", snapshot="s", mapping_fingerprint="m", actor="t")
    return ledger, run.run_id


def _register(ledger: Ledger, run_id: str, chunk: str, claims: list[Claim], fp: str = "f1"):  # type: ignore[no-untyped-def]
    return ledger.register_documents(
        run_id, chunk, "doc", bucket_type="default", bucket="b", claims=claims, fingerprint=fp
    )


def test_a_key_two_chunks_render_is_reported_once_and_marks_both(tmp_path: Path) -> None:
    ledger, run_id = _ledger(tmp_path)
    first = _register(
        ledger, run_id, "doc:00000", [Claim("k", '["1"]', "a" * 32), Claim("x", '["2"]', "b" * 32)]
    )
    assert first.others == {} and first.newly_collided == [] and first.vanished == []
    second = _register(ledger, run_id, "doc:00001", [Claim("k", '["3"]', "c" * 32)])
    [other] = second.others["k"]
    assert (other.chunk_id, other.source_key, other.checksum) == ("doc:00000", '["1"]', "a" * 32)
    assert [r.chunk_id for r in second.newly_collided] == ["doc:00000"]
    again = _register(ledger, run_id, "doc:00001", [Claim("k", '["3"]', "c" * 32)])
    assert list(again.others) == ["k"] and again.newly_collided == []  # withdrawn once only
    assert ledger.collided_chunks(run_id) == {"doc:00000", "doc:00001"}
    third = _register(ledger, run_id, "doc:00002", [Claim("k", '["4"]', "d" * 32)])
    assert sorted(o.chunk_id for o in third.others["k"]) == ["doc:00000", "doc:00001"]
    assert third.newly_collided == []
    known = ledger.collisions_of(run_id, "doc:00000")
    assert sorted(o.source_key for o in known["k"]) == ['["3"]', '["4"]']
    ledger.close()


def test_rows_of_another_mapping_never_collide_and_vanished_keys_are_named(
    tmp_path: Path,
) -> None:
    ledger, run_id = _ledger(tmp_path)
    _register(ledger, run_id, "doc:00000", [Claim("old-1", '["1"]', "a" * 32)], "f1")
    _register(ledger, run_id, "doc:00001", [Claim("old-2", '["2"]', "b" * 32)], "f1")
    now = _register(ledger, run_id, "doc:00000", [Claim("old-2", '["1"]', "a" * 32)], "f2")
    assert now.others == {}  # chunk 1's row is of the older mapping
    assert now.vanished == [("default", "b", "old-1")]
    later = _register(ledger, run_id, "doc:00001", [Claim("new-2", '["2"]', "b" * 32)], "f2")
    assert later.vanished == []  # old-2 is chunk 0's document now
    assert [r.key for r in ledger.registered(run_id, "doc:00001")] == ["new-2"]
    ledger.close()
