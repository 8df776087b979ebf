"""The CLI end to end on the demo project, in-process through CliRunner."""

from __future__ import annotations

import json
import re
import sqlite3
import stat
from pathlib import Path

import click
import pytest
from support import Invoke, set_run_option

from migrate.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ["ods", "pds", "scr", "eps"]


def _status(migrate_cli: Invoke) -> dict[str, dict[str, object]]:
    result = migrate_cli("status", "--format", "json")
    assert result.exit_code == 0, result.output
    return {s["service"]: s for s in json.loads(result.output)}


def _dump(migrate_cli: Invoke, service: str) -> list[str]:
    result = migrate_cli("dump", service)
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


def test_every_command_has_help_and_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    assert isinstance(cli, click.Group)
    for name, command in cli.commands.items():
        assert command.help and len(command.help) > 30, f"{name} has no help text"
        assert f"migrate {name}" in readme, f"README does not document `migrate {name}`"


def test_check_accepts_the_demo_mappings(migrate_cli: Invoke) -> None:
    result = migrate_cli("check")
    assert result.exit_code == 0, result.output
    for service in SERVICES:
        assert f"{service}: " in result.output and "ok" in result.output


def test_check_names_file_line_and_column_of_a_missing_column(
    migrate_cli: Invoke, demo_project: Path
) -> None:
    mapping = demo_project / "mappings" / "pds.yaml"
    text = mapping.read_text()
    assert "FAMILY_NAME" in text
    mapping.write_text(text.replace("FAMILY_NAME", "FAMILY_NAYM", 1))
    line = next(i for i, t in enumerate(mapping.read_text().splitlines(), 1) if "FAMILY_NAYM" in t)

    result = migrate_cli("check")

    assert result.exit_code == 2, result.output
    assert f"pds.yaml:{line}" in result.output
    assert "FAMILY_NAYM" in result.output
    assert "Traceback" not in result.output


def test_run_migrates_every_service_then_a_rerun_writes_nothing(
    migrate_cli: Invoke, demo_project: Path
) -> None:
    first = migrate_cli("run", "--workers", "2")
    assert first.exit_code == 0, first.output

    status = _status(migrate_cli)
    assert set(status) == set(SERVICES)
    dumps = {}
    for service in SERVICES:
        entry = status[service]
        assert entry["phase"] == "loaded"
        chunks = entry["chunks"]
        assert isinstance(chunks, dict) and chunks["loaded"] == chunks["total"] > 0
        assert entry["rejects"] == 0
        dumps[service] = _dump(migrate_cli, service)
        assert len(dumps[service]) == entry["documents"]
        keys = [json.loads(line)["key"] for line in dumps[service]]
        assert len(keys) == len(set(keys))

    # PDS holds one document per non-sensitive patient
    with sqlite3.connect(demo_project / "legacy.db") as db:
        (patients,) = db.execute(
            "SELECT count(*) FROM PATIENTS WHERE SENSITIVE_FLAG IS NULL OR SENSITIVE_FLAG <> 'S'"
        ).fetchone()
    assert status["pds"]["documents"] == patients

    second = migrate_cli("run")
    assert second.exit_code == 0, second.output
    assert _status(migrate_cli)["pds"]["run_id"] == status["pds"]["run_id"]
    for service in SERVICES:
        assert _dump(migrate_cli, service) == dumps[service]


def test_one_worker_and_two_workers_give_identical_documents(
    migrate_cli: Invoke, demo_project: Path, tmp_path: Path
) -> None:
    import shutil

    other = tmp_path / "other"
    shutil.copytree(demo_project, other)
    assert migrate_cli("run", "pds", "eps", "--workers", "1").exit_code == 0
    assert migrate_cli("run", "pds", "eps", "--workers", "2", project=other).exit_code == 0
    for service in ("pds", "eps"):
        one = migrate_cli("dump", service).stdout
        two = migrate_cli("dump", service, project=other).stdout
        assert one == two and one


def test_dump_to_a_file_is_owner_only(migrate_cli: Invoke, tmp_path: Path) -> None:
    assert migrate_cli("run", "ods").exit_code == 0
    output = tmp_path / "ods.jsonl"
    result = migrate_cli("dump", "ods", "--output", str(output))
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    lines = output.read_text(encoding="utf-8").splitlines()
    assert lines
    first = json.loads(lines[0])
    assert list(first) == ["bucket_type", "bucket", "key", "indexes", "value"]


def test_a_mapping_change_retransforms_from_staging_in_the_same_run(
    migrate_cli: Invoke, demo_project: Path
) -> None:
    # one worker: transform runs in this process, so a stale compiled plan would show here
    assert migrate_cli("run", "ods", "--workers", "1").exit_code == 0
    before = _status(migrate_cli)["ods"]
    mapping = demo_project / "mappings" / "ods.yaml"
    text = mapping.read_text()
    # add a literal field to the first document type's fields
    new_text = re.sub(
        r"(\n(\s+)fields:\n)", r"\1\2  migratedBy: {literal: rehearsal-1}\n", text, count=1
    )
    assert new_text != text
    mapping.write_text(new_text)

    result = migrate_cli("run", "ods", "--workers", "1")

    assert result.exit_code == 0, result.output
    after = _status(migrate_cli)["ods"]
    assert after["run_id"] == before["run_id"]
    assert "re-transforming" in result.output
    lines = _dump(migrate_cli, "ods")
    assert any(json.loads(line)["value"].get("migratedBy") == "rehearsal-1" for line in lines)


def test_fresh_starts_a_new_run(migrate_cli: Invoke) -> None:
    assert migrate_cli("run", "ods").exit_code == 0
    first = _status(migrate_cli)["ods"]["run_id"]
    result = migrate_cli("run", "ods", "--fresh")
    assert result.exit_code == 0, result.output
    status = _status(migrate_cli)["ods"]
    assert status["run_id"] != first
    assert status["phase"] == "loaded"


def test_status_before_any_run_says_what_to_do(migrate_cli: Invoke) -> None:
    status = _status(migrate_cli)
    assert status["pds"]["phase"] == "not started"
    assert status["pds"]["next_step"] == "migrate run pds"
    table = migrate_cli("status")
    assert table.exit_code == 0 and "not started" in table.output


# -- bad input: clear errors, documented exit codes, no traceback -------------------------------


def test_missing_config_exits_2_with_a_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MIGRATE_CONFIG", raising=False)
    result = CliRunner().invoke(cli, ["status"])
    assert result.exit_code == 2
    assert "migrate.toml" in result.output and "hint:" in result.output


def test_a_password_in_the_config_is_refused_and_masked(
    migrate_cli: Invoke, demo_project: Path
) -> None:
    config = demo_project / "migrate.toml"
    config.write_text(
        config.read_text().replace(
            'url = "sqlite:///.migrate/state.db"',
            'url = "postgresql+psycopg://spine:hunter22@127.0.0.1:1/state"',
        )
    )
    result = migrate_cli("status")
    assert result.exit_code == 2
    assert "hunter22" not in result.output
    assert "password_env" in result.output


def test_unknown_config_key_names_the_line(migrate_cli: Invoke, demo_project: Path) -> None:
    config = demo_project / "migrate.toml"
    config.write_text(config.read_text().replace("[run]\n", "[run]\nchunk_sise = 10\n"))
    line = config.read_text().splitlines().index("chunk_sise = 10") + 1
    result = migrate_cli("status")
    assert result.exit_code == 2
    assert f"migrate.toml:{line}" in result.output and "chunk_sise" in result.output


def test_unreachable_source_exits_3_naming_the_url_without_its_password(
    migrate_cli: Invoke, demo_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = demo_project / "migrate.toml"
    config.write_text(
        config.read_text().replace(
            'url = "sqlite:///legacy.db"',
            'url = "postgresql+psycopg://spine@127.0.0.1:1/legacy"\npassword_env = "LEGACY_PW"',
        )
    )
    monkeypatch.setenv("LEGACY_PW", "s3cret-pw")
    result = migrate_cli("check")
    assert result.exit_code == 3, result.output
    assert "127.0.0.1:1" in result.output
    assert "s3cret-pw" not in result.output
    assert "Traceback" not in result.output


def test_missing_password_variable_exits_2(migrate_cli: Invoke, demo_project: Path) -> None:
    config = demo_project / "migrate.toml"
    config.write_text(
        config.read_text().replace(
            'url = "sqlite:///legacy.db"',
            'url = "postgresql+psycopg://spine@127.0.0.1:1/legacy"\npassword_env = "NO_SUCH_VAR_X"',
        )
    )
    result = migrate_cli("check")
    assert result.exit_code == 2
    assert "NO_SUCH_VAR_X" in result.output


def test_rejects_over_the_limit_stop_the_run_with_exit_1(
    migrate_cli: Invoke, demo_project: Path
) -> None:
    # a NULL in a key column rejects the row: blank one patient's NHS number in a child-free copy
    mapping = demo_project / "mappings" / "pds.yaml"
    text = mapping.read_text()
    assert 'key: "{NHS_NUMBER}"' in text
    mapping.write_text(text.replace('key: "{NHS_NUMBER}"', 'key: "{NHS_NUMBER}/{DATE_OF_DEATH}"'))

    result = migrate_cli("run", "pds")

    assert result.exit_code == 1, result.output
    assert "max_rejects" in result.output
    run_dirs = list((demo_project / ".migrate" / "work" / "pds").iterdir())
    rejects = run_dirs[0] / "rejects.jsonl"
    assert stat.S_IMODE(rejects.stat().st_mode) == 0o600
    first = json.loads(rejects.read_text().splitlines()[0])
    assert first["field"] and first["reason"] and first["source_key"]["NHS_NUMBER"]

    set_run_option(demo_project, "max_rejects", 10**6)
    again = migrate_cli("run", "pds")
    assert again.exit_code == 0, again.output
    assert "rejected rows listed in" in again.output


def test_documents_over_the_size_limit_are_rejected_before_any_write(
    migrate_cli: Invoke, demo_project: Path
) -> None:
    set_run_option(demo_project, "max_document_bytes", 400)
    set_run_option(demo_project, "max_rejects", 10**6)

    result = migrate_cli("run", "scr")

    assert result.exit_code == 0, result.output
    status = _status(migrate_cli)["scr"]
    rejects = status["rejects"]
    assert isinstance(rejects, int) and rejects > 0
    for line in _dump(migrate_cli, "scr"):
        assert len(line.split(',"value":', 1)[1]) - 1 <= 400
    # the service's work folder also holds reconcile/, so find the run's rejects file by name
    (rejects_file,) = (demo_project / ".migrate" / "work" / "scr").glob("*/rejects.jsonl")
    lines = rejects_file.read_text().splitlines()
    assert len(lines) == rejects
    assert all("400" in json.loads(line)["reason"] for line in lines)


def test_check_refuses_two_services_writing_one_bucket(
    migrate_cli: Invoke, demo_project: Path
) -> None:
    scr = demo_project / "mappings" / "scr.yaml"
    text = scr.read_text()
    bucket_line = next(line for line in text.splitlines() if line.strip().startswith("bucket:"))
    scr.write_text(text.replace(bucket_line, bucket_line.split(":")[0] + ": patients", 1))
    line = scr.read_text().splitlines().index(bucket_line.split(":")[0] + ": patients") + 1

    result = migrate_cli("check")

    assert result.exit_code == 2, result.output
    assert f"scr.yaml:{line}" in result.output
    assert "also written by service pds" in result.output


def test_status_names_the_next_safe_step_after_each_verification(migrate_cli: Invoke) -> None:
    assert migrate_cli("run", "ods").exit_code == 0
    assert _status(migrate_cli)["ods"]["next_step"].startswith("migrate reconcile ods")
    assert migrate_cli("reconcile", "ods").exit_code == 0
    assert _status(migrate_cli)["ods"]["next_step"].startswith("verified against the source")
