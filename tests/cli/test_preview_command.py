"""`migrate preview` on the demo: the very bytes `run` stores, by key or by sample; pretty for
people, JSON lines for scripts; nothing written."""

from __future__ import annotations

import json
from pathlib import Path

from support import Invoke


def _value(line: str) -> str:
    """A JSON line's value as written (the bytes the target stores)."""
    return line.split(',"value":', 1)[1][:-1]


def _files(project: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in project.rglob("*")}


def test_a_preview_is_what_run_stores(migrate_cli: Invoke, demo_project: Path) -> None:
    before = _files(demo_project)
    samples = migrate_cli("preview", "eps", "--sample", "3")  # piped: JSON lines
    assert samples.exit_code == 0, samples.output
    lines = samples.stdout.splitlines()
    assert len(lines) == 3
    previews = [json.loads(line) for line in lines]
    assert _files(demo_project) == before  # nothing written anywhere

    assert migrate_cli("run", "eps").exit_code == 0
    dumped = {
        json.loads(line)["key"]: line for line in migrate_cli("dump", "eps").stdout.splitlines()
    }
    for line, item in zip(lines, previews, strict=True):
        assert item["rejects"] == [] and item["document_type"] == "prescription"
        stored = dumped[item["key"]]
        assert _value(line) == _value(stored)
        assert item["bytes"] == len(_value(stored).encode("utf-8"))
        assert item["indexes"] == json.loads(stored)["indexes"]
        by_key = migrate_cli("preview", "eps", item["key"], "--format", "json")
        assert by_key.exit_code == 0, by_key.output
        assert by_key.stdout == line + "\n"


def test_pretty_on_request_and_usage_errors(migrate_cli: Invoke) -> None:
    sample = json.loads(migrate_cli("preview", "pds").stdout)  # one by default
    key = sample["key"]
    pretty = migrate_cli("preview", "pds", key, "--format", "pretty")
    assert pretty.exit_code == 0, pretty.output
    first = pretty.stdout.splitlines()[0]
    assert first.startswith(f"pds · patient · {key}  bucket patients (type default)  ")
    assert first.endswith(f"{sample['bytes']:,} bytes")
    assert f'"nhsNumber": "{key}"' in pretty.stdout
    lines = pretty.stdout.splitlines()
    for name, values in sample["indexes"].items():
        shown = ", ".join(map(str, values))
        assert any(line.split(maxsplit=1) == [name, shown] for line in lines), name

    both = migrate_cli("preview", "pds", key, "--sample", "2")
    assert both.exit_code == 2 and "give a KEY or --sample N, not both" in both.output
    missing = migrate_cli("preview", "pds", "0000000000")
    assert missing.exit_code == 2 and "pds has no document with key '0000000000'" in missing.output
    unknown = migrate_cli("preview", "nope")
    assert unknown.exit_code == 2 and "no service 'nope'" in unknown.output
