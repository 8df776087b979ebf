"""`migrate demo DIR --source URL`: the sample estate loaded into a real PostgreSQL or MariaDB
server with that engine's own types, and the whole demo migrated from it to dumps equal byte for
byte to the SQLite run's dumps for the same seed. The MariaDB project logs in with a password,
which appears in no output, log, report, staged file, ledger or target."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from mariadb_server import PASSWORD, PASSWORD_ENV, MariaDBServer
from postgres_server import PostgresServer

from migrate.cli.main import cli
from migrate.demo import SERVICES
from migrate.demo.native import ORACLE_DATES

PATIENTS = 400
SEED = 23
CHUNK_SIZE = 60


def _invoke(*args: str, project: Path | None = None) -> Result:
    prefix = ["--config", str(project / "migrate.toml")] if project else []
    return CliRunner().invoke(cli, [*prefix, *args])


def _set_chunk_size(project: Path) -> None:
    config = project / "migrate.toml"
    config.write_text(config.read_text().replace("chunk_size = 2000", f"chunk_size = {CHUNK_SIZE}"))


def _migrate(project: Path) -> tuple[dict[str, bytes], list[Result]]:
    """`check`, `run` (two workers), then every service's dump: the dumps and every result."""
    _set_chunk_size(project)
    results = [_invoke("check", project=project)]
    results.append(_invoke("run", "--workers", "2", project=project))
    dumps = {}
    for service in SERVICES:
        result = _invoke("dump", service, project=project)
        results.append(result)
        dumps[service] = result.stdout_bytes
    for result in results:
        assert result.exit_code == 0, result.output
    results.append(_invoke("status", "--format", "json", project=project))
    return dumps, results


@pytest.fixture(scope="module")
def sqlite_dumps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    project = tmp_path_factory.mktemp("sqlite") / "project"
    created = _invoke("demo", str(project), "--patients", str(PATIENTS), "--seed", str(SEED))
    assert created.exit_code == 0, created.output
    dumps, _ = _migrate(project)
    assert all(dumps.values())
    return dumps


def _server_project(tmp_path: Path, url: str, *extra: str) -> tuple[Path, Result]:
    project = tmp_path / "project"
    created = _invoke(
        "demo", str(project), "--patients", str(PATIENTS), "--seed", str(SEED), "--source", url,
        *extra,
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    return project, created


@pytest.mark.slow
@pytest.mark.postgres
def test_the_demo_from_postgresql_dumps_what_sqlite_dumps(
    tmp_path: Path, pg_url: str, postgres_server: PostgresServer, sqlite_dumps: dict[str, bytes]
) -> None:
    project, _ = _server_project(tmp_path, pg_url)
    connection: Any = postgres_server.connect(pg_url)
    types = dict(
        connection.execute(
            "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'public'"
        ).fetchall()
    )
    connection.close()
    assert types["patients.created_at"] == "timestamp with time zone"
    assert types["scr_medications.dose_mg"] == "numeric"
    assert types["patients.record_uid"] == "bytea"
    assert types["organisations.extra_attrs"] == "jsonb"
    assert types["org_roles.is_primary"] == "boolean"
    assert types["patients.date_of_birth"] == "date"
    assert types["scr_adverse_reactions.onset_at"] == "timestamp without time zone"
    assert not (project / "legacy.db").exists()
    dumps, results = _migrate(project)
    assert '"snapshot": "postgresql:snapshot=' in results[-1].output
    for service in SERVICES:
        assert dumps[service] == sqlite_dumps[service], service


@pytest.mark.slow
@pytest.mark.mariadb
def test_the_demo_from_mariadb_dumps_what_sqlite_dumps_and_never_shows_the_password(
    tmp_path: Path, maria_url: str, mariadb_server: MariaDBServer, sqlite_dumps: dict[str, bytes]
) -> None:
    project, created = _server_project(tmp_path, maria_url, "--password-env", PASSWORD_ENV)
    config = tomllib.loads((project / "migrate.toml").read_text())
    assert config["source"] == {
        "url": maria_url,
        "password_env": PASSWORD_ENV,
        "types": {f"{t}.{c}": "DATE" for t, c in ORACLE_DATES},
    }
    with mariadb_server.connect(maria_url) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT CONCAT(TABLE_NAME, '.', COLUMN_NAME), COLUMN_TYPE FROM "
            "information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE()"
        )
        types = dict(cursor.fetchall())
    assert types["PATIENTS.CREATED_AT"] == "timestamp(6)"
    assert types["SCR_MEDICATIONS.DOSE_MG"] == "decimal(8,2)"
    assert types["PATIENTS.RECORD_UID"] == "binary(16)"
    assert types["DISPENSE_EVENTS.SIGNATURE"] == "blob"
    assert types["PRESCRIPTIONS.ISSUED_AT"] == "datetime(6)"
    assert types["SCR_ADVERSE_REACTIONS.ONSET_AT"] == "datetime"
    assert types["ORGANISATIONS.EXTRA_ATTRS"] == "longtext"  # MariaDB's JSON
    dumps, results = _migrate(project)
    assert '"snapshot": "mysql:binlog=' in results[-1].output
    for service in SERVICES:
        assert dumps[service] == sqlite_dumps[service], service

    # The password in no output, and in no file the project folder holds (migrate.toml, the
    # ledger, staged chunks, reject files, the embedded target).
    secret = PASSWORD.encode()
    for result in [created, *results]:
        assert secret not in result.stdout_bytes and secret not in result.stderr_bytes
    for path in project.rglob("*"):
        if path.is_file():
            assert secret not in path.read_bytes(), path


@pytest.mark.mariadb
def test_a_refused_login_exits_3_with_the_masked_url(
    tmp_path: Path, maria_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    project, _ = _server_project(tmp_path, maria_url, "--password-env", PASSWORD_ENV)
    wrong = "wrong-password-5150"
    monkeypatch.setenv(PASSWORD_ENV, wrong)
    for command in (["check"], ["run", "--workers", "1"]):
        result = _invoke(*command, project=project)
        assert result.exit_code == 3, result.output
        assert "migrate:***@127.0.0.1" in result.output and "Access denied" in result.output
        assert wrong not in result.output and PASSWORD not in result.output
        assert "Traceback" not in result.output


def test_demo_source_refuses_a_password_in_the_url(tmp_path: Path) -> None:
    result = _invoke(
        "demo", str(tmp_path / "p"), "--source", "mysql+pymysql://u:hunter2@127.0.0.1/x"
    )
    assert result.exit_code == 2
    assert "holds a password" in result.output and "hunter2" not in result.output
    assert not (tmp_path / "p").exists()


@pytest.fixture
def _no_password_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("NO_SUCH_PASSWORD_VAR", raising=False)
    yield


@pytest.mark.usefixtures("_no_password_env")
def test_demo_source_needs_the_named_password_variable(tmp_path: Path) -> None:
    result = _invoke(
        "demo", str(tmp_path / "p"), "--source", "mysql+pymysql://u@127.0.0.1/x",
        "--password-env", "NO_SUCH_PASSWORD_VAR",
    )  # fmt: skip
    assert result.exit_code == 2 and "NO_SUCH_PASSWORD_VAR" in result.output
