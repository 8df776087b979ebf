"""Differential test: the real pipeline's dump must equal, document for document and byte for byte,
what a deliberately plain reference builder (tests/reference_builder.py: one row at a time, straight
from docs/mapping.md) makes of the whole demo database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from reference_builder import build_reference
from support import Invoke


@pytest.mark.slow
@pytest.mark.parametrize("service", ["ods", "pds", "scr", "eps"])
def test_dump_equals_the_reference_builder(
    service: str, migrate_cli: Invoke, demo_project: Path
) -> None:
    result = migrate_cli("run", service, "--workers", "2")
    assert result.exit_code == 0, result.output
    dump = migrate_cli("dump", service)
    assert dump.exit_code == 0

    expected, rejects = build_reference(
        demo_project / "legacy.db", demo_project / "mappings" / f"{service}.yaml"
    )
    assert rejects == [], "the demo is built to have no rejected rows"

    got = {}
    for line in dump.stdout.splitlines():
        record = json.loads(line)
        value_text = line.split(',"value":', 1)[1][:-1]
        identity = (record["bucket_type"], record["bucket"], record["key"])
        got[identity] = (record["indexes"], value_text)

    want = {(d["bucket_type"], d["bucket"], d["key"]): d for d in expected}
    assert sorted(got) == sorted(want), (
        "the pipeline and the reference disagree on which keys exist"
    )
    assert len(want) > 0
    for identity, doc in want.items():
        indexes, value_text = got[identity]
        assert value_text == doc["canonical"], f"{service} {identity}: value differs"
        assert indexes == doc["indexes"], f"{service} {identity}: indexes differ"
