"""The cutover rehearsal against Riak: the fake (always) and a real node (where RIAK_URL is set):
deletes of roots gone from the source, children moved, lookups renamed, then freeze, sync,
verify, switch; the node then holds exactly a plain build of the frozen source."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from support import assert_matches_reference, use_capture
from test_riak_run import Node, invoke, node, riak_fake, use_riak  # noqa: F401 (fixtures)

VISIBLE = "COALESCE(SENSITIVE_FLAG, 'N') <> 'S'"


def test_a_cutover_rehearsal_into_riak(node: Node, demo_project: Path) -> None:  # noqa: F811
    use_riak(demo_project, node.url, suffix=node.suffix)
    use_capture(demo_project)

    def cli(*args: str) -> object:
        result = invoke(demo_project, *args)
        assert result.exit_code == 0, (args, result.output)
        return result

    cli("capture", "install", "pds")
    cli("run", "pds")
    with sqlite3.connect(demo_project / "legacy.db") as db:
        keys = [
            r[0]
            for r in db.execute(
                f"SELECT NHS_NUMBER FROM PATIENTS WHERE {VISIBLE} ORDER BY NHS_NUMBER LIMIT 3"
            )
        ]
        gone, moved_from, moved_to = keys
        for table in (
            "PATIENT_ADDRESSES",
            "PATIENT_NAMES",
            "PATIENT_TELECOMS",
            "PATIENT_PHARMACIES",
        ):
            db.execute(f"DELETE FROM {table} WHERE NHS_NUMBER = ?", (gone,))
        db.execute("DELETE FROM PATIENTS WHERE NHS_NUMBER = ?", (gone,))
        db.execute(
            "UPDATE PATIENT_TELECOMS SET NHS_NUMBER = ? WHERE NHS_NUMBER = ?",
            (moved_to, moved_from),
        )
        db.execute(
            "UPDATE ORGANISATIONS SET NAME = NAME || ' (renamed)' WHERE ODS_CODE IN"
            f" (SELECT GP_PRACTICE_CODE FROM PATIENTS WHERE {VISIBLE} LIMIT 5)"
        )
    cli("delta", "pds")
    for step in ("freeze", "sync", "verify"):
        cli("cutover", "pds", step)
    cli("cutover", "pds", "switch", "--out-of-order")
    count = assert_matches_reference(lambda *args: invoke(demo_project, *args), demo_project, "pds")
    assert count > 0
    stored = node.stored_keys("default", f"patients{node.suffix}")
    assert gone not in stored and len(stored) == count  # the deleted root is gone from the node
