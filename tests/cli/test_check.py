"""`migrate check`, the runbook's gate: it refuses, with file:line, everything `run` would refuse
for a reason in the project's files, and warns (exit 0) about what will be slow or oversized.

Each refusal is shown first on `run` (which stops on it) and then on `check` (which must too)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from support import Invoke, set_run_option


def _line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def _set_target(project: Path, url: str) -> int:
    config = project / "migrate.toml"
    config.write_text(
        config.read_text().replace('url = "local:///.migrate/target.db"', f'url = "{url}"')
    )
    return _line_of(config, url)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis://127.0.0.1:6379", "scheme 'redis' is not supported"),
        ("riak://127.0.0.1:99999", "bad port '99999'"),
        ("riak://127.0.0.1:80a", "bad port '80a'"),
        ("riak://127.0.0.1:8098/riak", "has a path"),
        ("local://target.db", "names no file"),
        ("riaks://127.0.0.1:8443?ca=/no/such/ca.pem", "cannot load the TLS files"),
    ],
)
def test_a_target_url_run_refuses_is_refused_by_check(
    migrate_cli: Invoke, demo_project: Path, url: str, says: str
) -> None:
    line = _set_target(demo_project, url)

    run = migrate_cli("run", "ods")
    assert run.exit_code == 2, run.output
    assert says in run.output

    check = migrate_cli("check")
    assert check.exit_code == 2, check.output
    assert f"migrate.toml:{line}: [target] url: " in check.output
    assert says in check.output
    assert "Traceback" not in check.output


def test_a_where_the_source_refuses_is_refused_by_check(
    migrate_cli: Invoke, demo_project: Path
) -> None:
    mapping = demo_project / "mappings" / "pds.yaml"
    mapping.write_text(
        mapping.read_text().replace("COALESCE(SENSITIVE_FLAG", "COALESC(SENSITIVE_FLAG")
    )
    line = _line_of(mapping, "COALESC(")

    run = migrate_cli("run", "pds")
    assert run.exit_code == 3, run.output
    assert "pds.yaml" not in run.output  # what check is for: run cannot say where

    check = migrate_cli("check")
    assert check.exit_code == 2, check.output
    assert f"pds.yaml:{line}: documents.patient.where: the source refuses this `where`" in (
        check.output
    )
    assert "no such function: COALESC" in check.output
    # the other services are still checked and reported
    assert "ods: " not in check.output or "problem" in check.output


def test_a_where_naming_a_missing_column_is_refused_by_check(
    migrate_cli: Invoke, demo_project: Path
) -> None:
    mapping = demo_project / "mappings" / "pds.yaml"
    mapping.write_text(mapping.read_text().replace("COALESCE(SENSITIVE_FLAG", "COALESCE(SENSITIVE"))
    check = migrate_cli("check")
    assert check.exit_code == 2, check.output
    assert "no such column: SENSITIVE" in check.output


def test_a_work_dir_that_cannot_be_created_is_refused_by_check(
    migrate_cli: Invoke, demo_project: Path
) -> None:
    config = demo_project / "migrate.toml"
    config.write_text(config.read_text().replace("[run]\n", '[run]\nwork_dir = "legacy.db/work"\n'))
    line = _line_of(config, "work_dir")

    run = migrate_cli("run", "ods")
    assert run.exit_code == 3, run.output

    check = migrate_cli("check")
    assert check.exit_code == 2, check.output
    assert f"migrate.toml:{line}: [run] work_dir: the work folder" in check.output
    assert f"{demo_project / 'legacy.db'} is a file, not a folder" in check.output


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in a read-only folder")
def test_a_read_only_work_dir_is_refused_by_check(migrate_cli: Invoke, demo_project: Path) -> None:
    locked = demo_project / "locked"
    locked.mkdir(mode=0o500)
    config = demo_project / "migrate.toml"
    config.write_text(config.read_text().replace("[run]\n", '[run]\nwork_dir = "locked/work"\n'))
    try:
        check = migrate_cli("check")
    finally:
        locked.chmod(0o700)
    assert check.exit_code == 2, check.output
    assert "is not writable" in check.output


def test_a_state_url_run_refuses_is_refused_by_check(
    migrate_cli: Invoke, demo_project: Path
) -> None:
    config = demo_project / "migrate.toml"
    config.write_text(
        config.read_text().replace(
            'url = "sqlite:///.migrate/state.db"', 'url = "nosuchdb://host/state"'
        )
    )
    line = _line_of(config, "nosuchdb")
    run = migrate_cli("run", "ods")
    assert run.exit_code == 2, run.output
    check = migrate_cli("check")
    assert check.exit_code == 2, check.output
    assert f"migrate.toml:{line}: [state] url: " in check.output


def test_every_problem_of_the_project_is_listed_at_once(
    migrate_cli: Invoke, demo_project: Path
) -> None:
    _set_target(demo_project, "redis://x")
    mapping = demo_project / "mappings" / "pds.yaml"
    mapping.write_text(mapping.read_text().replace("FAMILY_NAME", "FAMILY_NAYM", 1))
    check = migrate_cli("check")
    assert check.exit_code == 2
    assert "2 problems found by migrate check" in check.output
    assert "[target] url" in check.output and "FAMILY_NAYM" in check.output


# -- warnings ----------------------------------------------------------------------------------


def test_warnings_name_the_line_and_leave_the_exit_code_at_0(
    migrate_cli: Invoke, demo_project: Path
) -> None:
    with sqlite3.connect(demo_project / "legacy.db") as db:
        db.execute("DROP INDEX IX_DISPENSE_EVENTS_ITEM")
    scr = demo_project / "mappings" / "scr.yaml"
    scr.write_text(scr.read_text().replace("      summary: SUMMARY_NOTE", "      # no summary"))
    set_run_option(demo_project, "max_document_bytes", 4000)
    eps = demo_project / "mappings" / "eps.yaml"

    result = migrate_cli("check")

    assert result.exit_code == 0, result.output
    stderr = result.stderr
    dispenses = _line_of(eps, "dispenses:")
    assert (
        f"warning: {eps}:{dispenses}: documents.prescription.fields.items.fields.dispenses: "
        "the embed of DISPENSE_EVENTS joins on (ITEM_ID), which no index of the source leads"
    ) in stderr
    assert "hint: CREATE INDEX IX_DISPENSE_EVENTS_ITEM_ID ON DISPENSE_EVENTS (ITEM_ID);" in stderr
    assert f"{scr}:{_line_of(scr, 'table: SCR_RECORDS')}: documents.record.table: " in stderr
    assert "1 column of SCR_RECORDS no field reads: SUMMARY_NOTE" in stderr
    assert "the largest `prescription` document could reach about" in stderr
    assert "over half of [run] max_document_bytes (4,000)" in stderr
    assert "eps: " in result.stdout and "ok (prescription)" in result.stdout
    assert "warning(s) above" in result.stdout


HAZARDS = (  # the phrases of the warnings hazards.py gives
    "no field reads",
    "which no index of the source leads",
    "document could reach about",
    "gets two different keys",
)


def test_the_demo_mappings_draw_none_of_these_warnings(migrate_cli: Invoke) -> None:
    result = migrate_cli("check")
    assert result.exit_code == 0, result.output
    assert not [phrase for phrase in HAZARDS if phrase in result.output]


def test_one_table_keyed_two_ways_by_two_services_is_a_warning(
    migrate_cli: Invoke, demo_project: Path
) -> None:
    extra = demo_project / "mappings" / "patients-index.yaml"
    extra.write_text(
        "service: patients-index\n"
        "documents:\n"
        "  patient:\n"
        "    table: PATIENTS\n"
        "    bucket: patients-by-gp\n"
        '    key: "nhs-{NHS_NUMBER}"\n'
        "    fields:\n"
        "      gp: GP_PRACTICE_CODE\n"
    )
    config = demo_project / "migrate.toml"
    config.write_text(
        config.read_text()
        + '\n[services.patients-index]\nmapping = "mappings/patients-index.yaml"\n'
    )
    result = migrate_cli("check")
    assert result.exit_code == 0, result.output
    assert (
        f"{extra}:6: documents.patient.key: service pds also makes documents from PATIENTS "
        "(`patient`, key `{NHS_NUMBER}`), with key `nhs-{NHS_NUMBER}` here"
    ) in result.stderr
