"""How commands show their work: progress per service (a live bar with documents/s and an ETA on
a terminal, plain lines when piped, nothing with --quiet), colour (NO_COLOR, --no-color), and
`run --format json`."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from migrate.cli.main import cli

COLOUR = re.compile(r"\x1b\[(?:[0-9;]*;)?(?:3[0-7]|9[0-7]|38)(?:;[0-9;]*)?m")


def _invoke(project: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    config = str(project / "migrate.toml")
    return CliRunner().invoke(cli, ["--config", config, *args], env=env)


@pytest.fixture
def loaded(demo_project: Path) -> Path:
    assert _invoke(demo_project, "run", "ods").exit_code == 0
    return demo_project


def _lose_one_document(project: Path) -> str:
    with sqlite3.connect(project / ".migrate" / "target.db") as db:
        (key,) = db.execute("SELECT key FROM objects WHERE bucket = 'organisations'").fetchone()
        db.execute("DELETE FROM objects WHERE key = ?", (key,))
        db.execute("DELETE FROM index_entries WHERE key = ?", (key,))
    return str(key)


def test_quiet_says_nothing_when_all_is_well_and_everything_when_not(demo_project: Path) -> None:
    for args in (
        ("run", "ods"),
        ("check",),
        ("reconcile", "ods"),
        ("reconcile", "ods", "--dry-run"),
    ):
        result = _invoke(demo_project, "--quiet", *args)
        assert result.exit_code == 0, (args, result.output)
        assert (result.stdout, result.stderr) == ("", ""), args
    status = _invoke(demo_project, "-q", "status", "--format", "json")  # data asked for
    assert json.loads(status.stdout)[0]["service"] == "ods"

    key = _lose_one_document(demo_project)
    different = _invoke(demo_project, "-q", "reconcile", "ods")
    assert different.exit_code == 1
    assert f"missing  organisation {key}" in different.stdout
    repaired = _invoke(demo_project, "-q", "repair", "ods")
    assert repaired.exit_code == 0 and (repaired.stdout, repaired.stderr) == ("", "")


def test_progress_lines_when_piped_for_reconcile_and_repair(loaded: Path) -> None:
    status = json.loads(_invoke(loaded, "status", "--format", "json").stdout)[0]
    reconcile = _invoke(loaded, "reconcile", "ods", "--dry-run")
    lines = reconcile.stderr.splitlines()
    assert lines[0] == f"ods: reconcile ... {status['chunks']['total']} chunks"
    assert lines[-1].startswith(f"ods: reconcile ... done: {status['documents']} documents, ")

    _lose_one_document(loaded)
    assert _invoke(loaded, "reconcile", "ods").exit_code == 1
    repair = _invoke(loaded, "repair", "ods")
    assert repair.exit_code == 0, repair.output
    lines = repair.stderr.splitlines()
    assert lines[0] == "ods: repair ... 1 chunks"
    assert lines[-1].startswith("ods: reconcile ... done: ")
    assert any(line.startswith("ods: repair ... done: 1 documents") for line in lines)


def test_a_live_bar_per_service_on_a_terminal(loaded: Path) -> None:
    terminal = {"FORCE_COLOR": "1", "COLUMNS": "140"}
    for args, label in (
        (("run", "ods", "--fresh"), "ods "),
        (("reconcile", "ods"), "ods reconcile"),
    ):
        result = _invoke(loaded, *args, env=terminal)
        assert result.exit_code == 0, result.output
        plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", result.stderr)
        assert label in plain and "docs/s" in plain and "eta" in plain, plain
        assert re.search(r"(\d+)/\1 ", plain), plain  # every chunk done


def test_colour_follows_no_color_and_the_flag(loaded: Path) -> None:
    args = ("preview", "ods", "--format", "pretty")
    coloured = _invoke(loaded, *args, env={"FORCE_COLOR": "1"})
    assert COLOUR.search(coloured.stdout)
    for flags, env in (
        ((), {"FORCE_COLOR": "1", "NO_COLOR": "1"}),
        (("--no-color",), {"FORCE_COLOR": "1"}),
    ):
        plain = _invoke(loaded, *flags, *args, env=env)
        assert plain.exit_code == 0
        assert not COLOUR.search(plain.stdout), flags
        assert "organisation" in plain.stdout


def test_run_as_json(demo_project: Path) -> None:
    result = _invoke(demo_project, "run", "ods", "pds", "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["schema_version"] == 1 and report["outcome"] == "equal"
    assert [s["service"] for s in report["services"]] == ["ods", "pds"]
    ods = report["services"][0]
    assert set(ods) == {
        "service", "run_id", "status", "chunks", "documents", "written", "unchanged", "rejects",
        "rejects_file", "duration_seconds", "verification",
    }  # fmt: skip
    status = json.loads(_invoke(demo_project, "status", "--format", "json").stdout)[0]
    documents = status["documents"]
    assert ods["status"] == "complete" and ods["documents"] == documents == ods["written"]
    assert ods["chunks"] == status["chunks"]["total"] and ods["rejects"] == 0
    check = ods["verification"]
    assert check["outcome"] == "equal" and check["against"] == "staging"
    assert check["counts"]["expected"] == documents
    again = json.loads(_invoke(demo_project, "run", "ods", "--format", "json").stdout)
    assert again["services"][0]["run_id"] == ods["run_id"]
    assert again["services"][0]["written"] == 0
