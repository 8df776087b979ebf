"""Secrets stay secret (issue 15): the whole demo migrated from a PostgreSQL source that needs a
password, into a Riak node that needs basic auth, with a PostgreSQL state database that needs a
password of its own, all three from the environment. Then everything the toolkit wrote or said
is searched for the three passwords: every command's stdout and stderr (run, check, status,
reconcile in every format, dump, repair, the failures), every file in the project and its work
folder (staged Parquet, reject files, differences files, reports, dumps), every row of every
ledger table (audit rows, leases, checkpoints...) and every object, index entry and metadata the
Riak node holds. Zero hits. Failing logins (source, state, Riak) exit 3 and mask the URL.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from postgres_server import PostgresServer
from riak_fake import RiakFake
from test_resume_kill import MIGRATE

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SOURCE_ENV, STATE_ENV = "SECRETS_TEST_SOURCE_PW", "SECRETS_TEST_STATE_PW"
RIAK_USER = "migrator"


class Secrets:
    """The three passwords (fresh each run, shaped so that no other text holds them)."""

    def __init__(self) -> None:
        self.source = f"Src{secrets.token_hex(6)}!pw"
        self.state = f"St@te{secrets.token_hex(6)}"
        self.riak = f"Riak:{secrets.token_hex(6)}/pw"

    def all(self) -> dict[str, str]:
        return {"source": self.source, "state": self.state, "riak": self.riak}


class Estate:
    """The project, the environment its commands run in, and everything they said."""

    def __init__(self, project: Path, env: dict[str, str]) -> None:
        self.project = project
        self.env = env
        self.said: list[tuple[str, str]] = []  # (command, stdout and stderr)

    def migrate(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(MIGRATE), "--config", str(self.project / "migrate.toml"), *args],
            capture_output=True,
            text=True,
            timeout=600,
            env=env or self.env,
            check=False,
        )
        self.said.append((" ".join(args), done.stdout + done.stderr))
        return done


def _config(project: Path, riak_url: str, state_url: str) -> None:
    text = (project / "migrate.toml").read_text()
    text = text.replace('url = "local:///.migrate/target.db"', f'url = "{riak_url}"')
    text = text.replace(
        'url = "sqlite:///.migrate/state.db"', f'url = "{state_url}"\npassword_env = "{STATE_ENV}"'
    )
    text = re.sub(r"^chunk_size = .*$", "chunk_size = 40", text, flags=re.M)
    # Documents over 900 bytes are rejected: there are reject files to search too.
    text = re.sub(
        r"^max_rejects = .*$", "max_rejects = 100000\nmax_document_bytes = 900", text, flags=re.M
    )
    (project / "migrate.toml").write_text(text)


@pytest.fixture
def estate(
    postgres_server: PostgresServer, riak_fake: RiakFake, tmp_path: Path
) -> Iterator[tuple[Estate, Secrets, PostgresServer]]:
    keys = Secrets()
    tag = secrets.token_hex(3)
    source_url = postgres_server.create_login(f"legacy_{tag}", keys.source)
    state_url = postgres_server.create_login(f"ledger_{tag}", keys.state)
    riak_fake.auth = (RIAK_USER, keys.riak)
    env = {
        **os.environ,
        SOURCE_ENV: keys.source,
        STATE_ENV: keys.state,
        "RIAK_USER": RIAK_USER,
        "RIAK_PASSWORD": keys.riak,
    }
    project = tmp_path / "project"
    created = subprocess.run(
        [str(MIGRATE), "demo", str(project), "--patients", "120", "--seed", "4",
         "--source", source_url, "--password-env", SOURCE_ENV],
        capture_output=True, text=True, timeout=600, env=env, check=False,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    _config(project, f"riak://127.0.0.1:{riak_fake.port}", state_url)
    found = Estate(project, env)
    found.said.append(("demo", created.stdout + created.stderr))
    yield found, keys, postgres_server


def _ledger_rows(server: PostgresServer, state_url: str) -> list[str]:
    """Every row of every table of the state database, as text (read as the superuser)."""
    database = state_url.rsplit("/", 1)[1]
    engine = sa.create_engine(server.url(database))
    try:
        with engine.connect() as conn:
            tables = sa.inspect(conn).get_table_names()
            assert {"runs", "chunks", "checkpoints", "audit", "verifications"} <= set(tables)
            return [
                f"{table}: {tuple(row)}"
                for table in tables
                for row in conn.execute(sa.text(f'SELECT * FROM "{table}"'))
            ]
    finally:
        engine.dispose()


def _files(root: Path) -> Iterator[tuple[Path, bytes]]:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            yield path, path.read_bytes()


def _hits(haystack: Any, keys: Secrets) -> list[str]:
    text = haystack if isinstance(haystack, str | bytes) else repr(haystack)
    found = []
    for name, secret in keys.all().items():
        needle: str | bytes = secret.encode() if isinstance(text, bytes) else secret
        if needle in text:  # type: ignore[operator]
            found.append(name)
    return found


def test_no_secret_in_any_output_file_ledger_row_or_stored_object(
    estate: tuple[Estate, Secrets, PostgresServer], riak_fake: RiakFake, tmp_path: Path
) -> None:
    run, keys, server = estate
    assert run.migrate("check").returncode == 0, run.said[-1]
    assert run.migrate("run", "--workers", "2").returncode == 0, run.said[-1]
    assert run.migrate("run").returncode == 0, run.said[-1]  # nothing left: a resumed no-op
    assert run.migrate("status").returncode == 0
    assert run.migrate("status", "--format", "json").returncode == 0

    # The source changes: a reconciliation finds it, repair fixes it.
    source_db = (run.project / "migrate.toml").read_text().split('url = "', 1)[1].split('"')[0]
    engine = sa.create_engine(server.url(source_db.rsplit("/", 1)[1]))
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE patients SET family_name = family_name || '-x' WHERE gender = 'F'")
        )
    engine.dispose()
    reports = tmp_path / "reports"
    reports.mkdir()
    done = run.migrate("reconcile", "--dry-run", "--show-values")
    assert done.returncode == 1, run.said[-1]
    for fmt in ("json", "junit"):
        output = str(reports / f"dry.{fmt}")
        done = run.migrate("reconcile", "--dry-run", "--format", fmt, "--output", output)
        assert done.returncode == 1, run.said[-1]
    done = run.migrate("reconcile", "--dry-run", "--format", "json", "--show-values")
    assert done.returncode == 1, run.said[-1]
    assert run.migrate("reconcile", "pds", "--accept-rejects").returncode == 1  # recorded
    # Repair's own check fails on the rejected rows alone (repair does not accept them).
    assert run.migrate("repair", "pds").returncode == 1, run.said[-1]
    assert "rejected patient" in run.said[-1][1]
    assert run.migrate("reconcile", "--accept-rejects", "--format", "json").returncode == 0
    for service in ("ods", "pds", "scr", "eps"):
        assert run.migrate("dump", service).returncode == 0
    assert run.migrate("dump", "pds", "--output", str(reports / "pds.jsonl")).returncode == 0

    # Failing logins: exit 3, the URL shown with its password masked, neither password shown.
    wrong = f"wrong-{secrets.token_hex(4)}"
    failing = (
        (SOURCE_ENV, "source", ()),
        (SOURCE_ENV, "source", ("--debug",)),  # with a traceback
        (STATE_ENV, "state", ()),
        ("RIAK_PASSWORD", "riak", ()),
    )
    for variable, what, debug in failing:
        done = run.migrate(*debug, "run", "pds", env={**run.env, variable: wrong})
        said = done.stdout + done.stderr
        assert done.returncode == 3, (what, said)
        assert wrong not in said, (what, said)
        assert "unexpected failure" not in said, (what, said)
        if what != "riak":  # a database URL names its user and masks the password
            assert re.search(r"postgresql\+psycopg://\w+:\*\*\*@127\.0\.0\.1", said), said
        else:
            assert "401" in said and "RIAK_USER" in said, said

    leaks = [f"{command}: {_hits(said, keys)}" for command, said in run.said if _hits(said, keys)]
    files = list(_files(run.project)) + list(_files(reports))
    assert any(p.suffix == ".parquet" for p, _ in files), "nothing staged: nothing searched"
    assert any(p.name == "rejects.jsonl" for p, _ in files), "no reject file to search"
    assert any(p.parent.name == "reconcile" for p, _ in files), "no differences file to search"
    leaks += [f"{path}: {_hits(data, keys)}" for path, data in files if _hits(data, keys)]
    state_url = re.search(r'\[state\]\nurl = "([^"]+)"', (run.project / "migrate.toml").read_text())
    assert state_url is not None
    rows = _ledger_rows(server, state_url.group(1))
    assert any(row.startswith("audit: ") for row in rows)
    leaks += [f"ledger {row[:80]}: {_hits(row, keys)}" for row in rows if _hits(row, keys)]
    stored = riak_fake._data  # every object: values, metadata, index entries
    assert stored, "nothing stored in Riak"
    leaks += [f"riak: {_hits(stored, keys)}"] if _hits(stored, keys) else []
    assert leaks == []
    assert len(run.said) == 22  # every output above was searched
