"""A read-only ledger and embedded target (reconcile --dry-run) change nothing on disk."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import xxhash
from support import Invoke

from migrate.document import Document
from migrate.errors import LedgerError, TargetError
from migrate.ledger import Ledger
from migrate.target.local import LocalTarget


def _tree(folder: Path) -> dict[str, str]:
    """Every file below `folder` with a digest of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_a_missing_ledger_reads_as_empty_and_is_not_created(tmp_path: Path) -> None:
    ledger = Ledger("sqlite:///.migrate/state.db", base_dir=tmp_path, read_only=True)
    assert ledger.latest_run("pds") is None
    assert ledger.runs() == []
    ledger.close()
    assert list(tmp_path.iterdir()) == []


def test_a_read_only_ledger_reads_and_refuses_writes_without_touching_files(tmp_path: Path) -> None:
    url = "sqlite:///state.db"
    writer = Ledger(url, base_dir=tmp_path)
    run = writer.start_run("pds", snapshot="s", mapping_fingerprint="f", actor="me")
    writer.close()
    before = _tree(tmp_path)

    reader = Ledger(url, base_dir=tmp_path, read_only=True)
    assert reader.latest_run("pds") == run
    with pytest.raises(LedgerError):
        reader.start_run("pds", snapshot="s", mapping_fingerprint="f", actor="me")
    reader.close()

    assert _tree(tmp_path) == before


def test_a_read_only_ledger_sees_an_active_writers_commits(tmp_path: Path) -> None:
    url = "sqlite:///state.db"
    writer = Ledger(url, base_dir=tmp_path)
    writer.start_run("pds", snapshot="s", mapping_fingerprint="f", actor="me")
    reader = Ledger(url, base_dir=tmp_path, read_only=True)
    second = writer.start_run("scr", snapshot="s", mapping_fingerprint="f", actor="me")
    assert reader.latest_run("scr") == second
    reader.close()
    writer.close()


def _doc(key: str) -> Document:
    value = json.dumps({"k": key}).encode()
    return Document("default", "b", key, value, (), xxhash.xxh3_128_hexdigest(value))


def test_a_read_only_embedded_target_changes_nothing(tmp_path: Path) -> None:
    missing = LocalTarget(tmp_path / "none" / "target.db", read_only=True)
    assert list(missing.iter_bucket("default", "b")) == []
    missing.close()
    assert not (tmp_path / "none").exists()

    path = tmp_path / "target.db"
    writer = LocalTarget(path)
    writer.write([_doc("a")], meta={})
    writer.close()
    before = _tree(tmp_path)
    reader = LocalTarget(path, read_only=True)
    assert [o.key for o in reader.iter_bucket("default", "b")] == ["a"]
    with pytest.raises(TargetError):
        reader.write([_doc("b")], meta={})
    reader.close()
    assert _tree(tmp_path) == before


def test_dry_run_reconcile_of_a_project_that_never_ran_creates_nothing(
    migrate_cli: Invoke, demo_project: Path
) -> None:
    before = _tree(demo_project)
    result = migrate_cli("reconcile", "ods", "--dry-run", "--format", "json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["services"][0]["counts"]["missing"] > 0
    assert _tree(demo_project) == before
