"""Scaffold, check (with its warnings) and preview on a real PostgreSQL source: the foreign keys
and indexes PostgreSQL reports, keys matched in SQL against its types, and a `where` compiled by
PostgreSQL itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from postgres_server import PostgresServer

from migrate.cli.main import cli

pytestmark = pytest.mark.postgres

DDL = """
CREATE TABLE clinics (code varchar(6) PRIMARY KEY, name varchar(40) NOT NULL);
CREATE TABLE patients (
    site varchar(4),
    patient_no integer,
    clinic_code varchar(6) REFERENCES clinics (code),
    born date,
    PRIMARY KEY (site, patient_no)
);
CREATE TABLE visits (
    visit_id integer PRIMARY KEY,
    site varchar(4),
    patient_no integer,
    fee numeric(8,2),
    FOREIGN KEY (site, patient_no) REFERENCES patients (site, patient_no)
);
INSERT INTO clinics VALUES ('C1', 'Leeds Road'), ('C2', 'Øvrebø Gate');
INSERT INTO patients VALUES ('A/1', 7, 'C2', '1980-02-29'), ('A', 17, 'C1', NULL),
    ('B', 1, NULL, '2001-01-01');
INSERT INTO visits VALUES (1, 'A/1', 7, 7.5), (2, 'A/1', 7, 10), (3, 'B', 1, 0);
"""


@pytest.fixture
def project(tmp_path: Path, postgres_server: PostgresServer, pg_url: str) -> Path:
    connection: Any = postgres_server.connect(pg_url)
    try:
        connection.execute(DDL)
    finally:
        connection.close()
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "migrate.toml").write_text(
        f'[source]\nurl = "{pg_url}"\n\n[target]\nurl = "local:///.migrate/target.db"\n\n'
        '[state]\nurl = "sqlite:///.migrate/state.db"\n\n[run]\nchunk_size = 2\n'
    )
    return folder


def _invoke(project: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(project / "migrate.toml"), *args])


def test_scaffold_check_preview_and_run_on_postgresql(project: Path) -> None:
    scaffold = _invoke(project, "scaffold", "clinic", "--root", "patients")
    assert scaffold.exit_code == 0, scaffold.output
    assert "embeds: visits" in scaffold.output and "lookups: clinics" in scaffold.output

    check = _invoke(project, "check")
    assert check.exit_code == 0, check.output
    # visits' link (site, patient_no) leads no index of PostgreSQL's (foreign keys make none)
    assert "the embed of visits joins on (site, patient_no), which no index" in check.stderr
    assert "CREATE INDEX IX_visits_site_patient_no ON visits (site, patient_no);" in check.stderr

    # the separator inside a part: A/1/7 reads as (A, 1/7) or (A/1, 7); only the second exists
    one = _invoke(project, "preview", "clinic", "A/1/7")
    assert one.exit_code == 0, one.output
    preview = json.loads(one.stdout)
    assert preview["value"]["clinic"] == {"code": "C2", "name": "Øvrebø Gate"}
    assert one.stdout.split(',"value":', 1)[1].count('"fee":7.50') == 1
    assert preview["indexes"] == {"born_int": [19800229], "clinic_code_bin": ["C2"]}

    sample = _invoke(project, "preview", "clinic", "--sample", "5")
    assert sorted(json.loads(line)["key"] for line in sample.stdout.splitlines()) == [
        "A/1/7",
        "A/17",
        "B/1",
    ]

    assert _invoke(project, "run", "clinic", "--workers", "1").exit_code == 0
    dumped = {
        json.loads(line)["key"]: line
        for line in _invoke(project, "dump", "clinic").stdout.splitlines()
    }
    assert dumped["A/1/7"].split(',"value":', 1)[1] == one.stdout.split(',"value":', 1)[1].rstrip()


def test_a_where_postgresql_refuses_is_refused_by_check(project: Path) -> None:
    assert _invoke(project, "scaffold", "clinic", "--root", "patients").exit_code == 0
    mapping = project / "mappings" / "clinic.yaml"
    text = mapping.read_text().replace(
        "    nulls: omit", "    where: \"born >= 'yesterday'::dat\"\n    nulls: omit"
    )
    mapping.write_text(text)
    check = _invoke(project, "check")
    assert check.exit_code == 2, check.output
    assert "documents.patient.where: the source refuses this `where`" in check.output
    assert 'type "dat" does not exist' in check.output
