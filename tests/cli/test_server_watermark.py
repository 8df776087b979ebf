"""Watermark capture from real PostgreSQL and MariaDB sources (MariaDB has no capture by
triggers, so this is its capture): every kind of change caught by `migrate delta`, proven by a
dry-run reconciliation against the source; and on PostgreSQL, a transaction that took its
last-modified time early and committed after a delta read is not lost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from mariadb_server import PASSWORD_ENV, MariaDBServer
from postgres_server import PostgresServer

from migrate.cli.main import cli

DDL = """
CREATE TABLE clinics (code varchar(6) PRIMARY KEY, name varchar(40), updated_at {ts});
CREATE TABLE patients (
    nhs varchar(10) PRIMARY KEY, name varchar(40), clinic varchar(6), updated_at {ts}
);
CREATE TABLE visits (
    nhs varchar(10), visit_no integer, fee numeric(8,2), updated_at {ts},
    PRIMARY KEY (nhs, visit_no)
);
INSERT INTO clinics VALUES ('C1', 'Leeds Road', '2024-01-01 00:00:00'),
    ('C2', 'Park Lane', '2024-01-01 00:00:00');
INSERT INTO patients VALUES
    ('9000000001', 'Ann', 'C1', '2024-01-01 00:00:00'),
    ('9000000002', 'Bob', 'C2', '2024-01-01 00:00:00'),
    ('9000000003', 'Cat', 'C1', '2024-01-01 00:00:00'),
    ('9000000004', 'Dan', 'C2', '2024-01-01 00:00:00'),
    ('9000000005', 'Eve', 'C1', '2024-01-01 00:00:00');
INSERT INTO visits VALUES
    ('9000000001', 1, 10, '2024-01-01 00:00:00'), ('9000000001', 2, 12.5, '2024-01-01 00:00:00'),
    ('9000000002', 1, 7, '2024-01-01 00:00:00'), ('9000000004', 1, 3, '2024-01-01 00:00:00'),
    ('9000000005', 1, 1, '2024-01-01 00:00:00');
"""

MAPPING = """
service: clinic
documents:
  patient:
    table: patients
    bucket: patients
    key: "{nhs}"
    fields:
      nhsNumber: nhs
      name: name
      clinic: {lookup: clinics, on: {code: clinic}, field: name}
      visits:
        embed: visits
        on: {nhs: nhs}
        order_by: [visit_no]
        fields: {no: visit_no, fee: fee}
    indexes:
      clinic_bin: clinic
"""

CHANGES = [
    "UPDATE patients SET name = 'Ann B', updated_at = '2024-02-01 00:00:01'"
    " WHERE nhs = '9000000001'",
    "DELETE FROM visits WHERE nhs = '9000000002' AND visit_no = 1",  # a child gone, nothing newer
    "UPDATE visits SET nhs = '9000000003', updated_at = '2024-02-01 00:00:02'"
    " WHERE nhs = '9000000004' AND visit_no = 1",  # a child moved to another parent
    "UPDATE clinics SET name = 'Leeds Rd', updated_at = '2024-02-01 00:00:03' WHERE code = 'C1'",
    "DELETE FROM visits WHERE nhs = '9000000005'",
    "DELETE FROM patients WHERE nhs = '9000000005'",
    "INSERT INTO patients VALUES ('9000000006', 'Fay', 'C2', '2024-02-01 00:00:04')",
]


def _invoke(project: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(project / "migrate.toml"), *args])


def _ok(project: Path, *args: str) -> Result:
    result = _invoke(project, *args)
    assert result.exit_code == 0, (args, result.output)
    assert "Traceback" not in result.output
    return result


def _project(tmp_path: Path, url: str, password_env: str | None = None) -> Path:
    project = tmp_path / "project"
    (project / "mappings").mkdir(parents=True)
    (project / "mappings" / "clinic.yaml").write_text(MAPPING)
    secret = f'password_env = "{password_env}"\n' if password_env else ""
    (project / "migrate.toml").write_text(
        f'[source]\nurl = "{url}"\n{secret}\n'
        '[target]\nurl = "local:///.migrate/target.db"\n\n'
        '[state]\nurl = "sqlite:///.migrate/state.db"\n\n'
        "[run]\nchunk_size = 2\n\n"
        '[services.clinic]\nmapping = "mappings/clinic.yaml"\n'
        'capture = "watermark"\nwatermark = "updated_at"\n'
    )
    _ok(project, "capture", "install", "clinic")
    _ok(project, "run", "clinic", "--workers", "1")
    return project


def _delta(project: Path) -> dict[str, Any]:
    (report,) = json.loads(_ok(project, "delta", "clinic", "--format", "json").stdout)
    assert isinstance(report, dict)
    return report


def _every_change_is_caught(project: Path, execute: Any) -> None:
    for statement in CHANGES:
        execute(statement)
    pending = json.loads(_ok(project, "capture", "status", "clinic", "--format", "json").stdout)
    assert pending["pending"] > 0 and pending["lag_seconds"] is not None
    report = _delta(project)
    assert report["deleted"] == 1 and report["roots"] == 6  # all but 9000000001's neighbour
    _ok(project, "reconcile", "clinic", "--dry-run")
    assert _delta(project)["delta_id"] is None
    dump = [json.loads(line) for line in _ok(project, "dump", "clinic").stdout.splitlines()]
    by_key = {d["key"]: d["value"] for d in dump}
    assert sorted(by_key) == ["9000000001", "9000000002", "9000000003", "9000000004", "9000000006"]
    assert by_key["9000000002"]["visits"] == [] and by_key["9000000004"]["visits"] == []
    assert [v["no"] for v in by_key["9000000003"]["visits"]] == [1]
    assert by_key["9000000003"]["clinic"] == "Leeds Rd"


@pytest.mark.postgres
def test_postgresql_watermark_catches_every_change_and_late_commits(
    tmp_path: Path, postgres_server: PostgresServer, pg_url: str
) -> None:
    setup: Any = postgres_server.connect(pg_url)
    setup.execute(DDL.format(ts="timestamp(6)"))
    setup.close()
    project = _project(tmp_path, pg_url)
    writer: Any = postgres_server.connect(pg_url)
    _every_change_is_caught(project, writer.execute)

    early: Any = postgres_server.connect(pg_url, autocommit=False)
    late: Any = postgres_server.connect(pg_url, autocommit=False)
    early.execute(  # its time taken first, committed last
        "UPDATE patients SET name = 'Early', updated_at = '2024-03-01 00:00:01'"
        " WHERE nhs = '9000000002'"
    )
    late.execute(
        "UPDATE patients SET name = 'Late', updated_at = '2024-03-01 00:00:02'"
        " WHERE nhs = '9000000004'"
    )
    late.commit()
    assert _delta(project)["roots"] == 1
    early.commit()
    status = json.loads(_ok(project, "capture", "status", "clinic", "--format", "json").stdout)
    assert status["pending"] == 0  # older than the newest time the position saw ...
    assert _delta(project)["roots"] == 1  # ... and still caught, by its rows
    _ok(project, "reconcile", "clinic", "--dry-run")
    for connection in (writer, early, late):
        connection.close()


@pytest.mark.mariadb
def test_mariadb_watermark_catches_every_change(
    tmp_path: Path, mariadb_server: MariaDBServer, maria_url: str
) -> None:
    connection: Any = mariadb_server.connect(maria_url)

    def execute(statement: str) -> None:
        with connection.cursor() as cursor:
            cursor.execute(statement)

    for statement in DDL.format(ts="datetime(6)").split(";"):
        if statement.strip():
            execute(statement)
    project = _project(tmp_path, maria_url, PASSWORD_ENV)
    _every_change_is_caught(project, execute)
    connection.close()
