"""`migrate check`, `run` and `dump` end to end from a real PostgreSQL source (a throwaway server),
with the password taken from the environment and never shown."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from postgres_server import PostgresServer

from migrate.cli.main import cli

DDL = """
CREATE TABLE clinics (code varchar(6) PRIMARY KEY, name varchar(40) NOT NULL);
CREATE TABLE patients (
    nhs_number varchar(10) PRIMARY KEY,
    given_name varchar(40),
    born date,
    deceased_at timestamp,
    created_at timestamptz,
    balance numeric(10,2),
    active boolean,
    photo bytea,
    prefs jsonb,
    clinic_code varchar(6)
);
CREATE TABLE visits (
    nhs_number varchar(10),
    visit_no integer,
    seen_at timestamp,
    fee numeric(8,2),
    PRIMARY KEY (nhs_number, visit_no)
);
INSERT INTO clinics VALUES ('C1', 'Leeds Road'), ('C2', 'Øvrebø Gate');
INSERT INTO patients VALUES
    ('9000000009', 'Siân', '1980-02-29', NULL, '2020-01-01 12:00:00+05:30', 12.5, true,
     '\\x00ff', '{"lang": "cy", "score": 2.50}', 'C2'),
    ('9000000017', NULL, '1975-12-31', '2021-03-04 05:06:07.5', '2020-06-01 00:00:00+00', 0.1,
     false, NULL, NULL, 'C9'),
    ('9000000025', 'Zoë', '2001-01-01', NULL, NULL, 1234.99, NULL, NULL, '[]', NULL);
INSERT INTO visits VALUES
    ('9000000009', 2, '2022-01-02 10:00:00', 10),
    ('9000000009', 1, '2022-01-01 09:30:00', 7.5),
    ('9000000025', 1, '2023-05-05 00:00:00', 0);
"""

MAPPING = """
service: clinic
documents:
  patient:
    table: patients
    bucket: patients
    key: "{nhs_number}"
    fields:
      nhsNumber: nhs_number
      name: given_name
      born: born
      died: deceased_at
      created: created_at
      balance: balance
      active: active
      photo: photo
      prefs: prefs
      clinic:
        lookup: clinics
        on: {code: clinic_code}
        field: name
      visits:
        embed: visits
        on: {nhs_number: nhs_number}
        order_by: [seen_at]
        fields: {no: visit_no, seen: seen_at, fee: fee}
    indexes:
      born_int: {column: born, as: yyyymmdd}
      clinic_bin: clinic_code
"""


@pytest.fixture
def pg_project(tmp_path: Path, postgres_server: PostgresServer, pg_url: str) -> Path:
    connection: Any = postgres_server.connect(pg_url)
    try:
        connection.execute(DDL)
    finally:
        connection.close()
    project = tmp_path / "project"
    (project / "mappings").mkdir(parents=True)
    (project / "mappings" / "clinic.yaml").write_text(MAPPING)
    (project / "migrate.toml").write_text(
        f'[source]\nurl = "{pg_url}"\npassword_env = "CLINIC_DB_PASSWORD"\n\n'
        '[target]\nurl = "local:///.migrate/target.db"\n\n'
        '[state]\nurl = "sqlite:///.migrate/state.db"\n\n'
        "[run]\nchunk_size = 2\n\n"
        '[services.clinic]\nmapping = "mappings/clinic.yaml"\n'
    )
    return project


def _invoke(project: Path, *args: str) -> Any:
    return CliRunner().invoke(cli, ["--config", str(project / "migrate.toml"), *args])


@pytest.mark.postgres
def test_a_postgresql_source_migrates_exactly(
    pg_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLINIC_DB_PASSWORD", "pg-secret-7731")

    check = _invoke(pg_project, "check")
    assert check.exit_code == 0, check.output
    run = _invoke(pg_project, "run", "--workers", "1")
    assert run.exit_code == 0, run.output
    assert "pg-secret-7731" not in run.output
    dump = _invoke(pg_project, "dump", "clinic")
    assert dump.exit_code == 0, dump.output

    lines = dump.stdout.splitlines()
    values = {json.loads(line)["key"]: line.split(',"value":', 1)[1][:-1] for line in lines}
    indexes = {json.loads(line)["key"]: json.loads(line)["indexes"] for line in lines}
    assert values == {
        "9000000009": (
            '{"active":true,"balance":12.50,"born":"1980-02-29","clinic":"Øvrebø Gate",'
            '"created":"2020-01-01T06:30:00Z","name":"Siân","nhsNumber":"9000000009",'
            '"photo":"AP8=","prefs":{"lang":"cy","score":2.50},"visits":['
            '{"fee":7.50,"no":1,"seen":"2022-01-01T09:30:00"},'
            '{"fee":10.00,"no":2,"seen":"2022-01-02T10:00:00"}]}'
        ),
        "9000000017": (
            '{"active":false,"balance":0.10,"born":"1975-12-31",'
            '"created":"2020-06-01T00:00:00Z","died":"2021-03-04T05:06:07.500000",'
            '"nhsNumber":"9000000017","visits":[]}'
        ),
        "9000000025": (
            '{"balance":1234.99,"born":"2001-01-01","name":"Zoë","nhsNumber":"9000000025",'
            '"prefs":[],"visits":[{"fee":0.00,"no":1,"seen":"2023-05-05T00:00:00"}]}'
        ),
    }
    assert indexes["9000000009"] == {"born_int": [19800229], "clinic_bin": ["C2"]}
    assert indexes["9000000017"] == {"born_int": [19751231], "clinic_bin": ["C9"]}
    assert indexes["9000000025"] == {"born_int": [20010101]}
    assert json.loads(values["9000000009"], parse_float=Decimal)["balance"] == Decimal("12.50")

    status = _invoke(pg_project, "status", "--format", "json")
    entry = json.loads(status.output)[0]
    assert entry["snapshot"].startswith("postgresql:snapshot=")
    assert entry["documents"] == 3
