"""A Dask worker opens its own connections from the run's settings, with every password from its
own environment: no task the run submits carries one. The whole demo, from a PostgreSQL source
that needs a password, into a Riak node that needs basic auth, with a PostgreSQL ledger that
needs a password of its own, on a `LocalCluster` whose workers have the three in their
environment; every task submitted to Dask (the run's chunks, the reconciliation's builds) is
serialised and searched for them. The source's snapshot travels instead: its exported id.
"""

from __future__ import annotations

import base64
import re
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from dask_projects import address, local_cluster
from postgres_server import PostgresServer
from riak_fake import RiakFake
from riak_projects import MIGRATE, invoke

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SOURCE_ENV, STATE_ENV = "DASK_TEST_SOURCE_PW", "DASK_TEST_STATE_PW"


@pytest.fixture
def estate(
    postgres_server: PostgresServer,
    riak_fake: RiakFake,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[Path, dict[str, str]]]:
    """A demo project reading PostgreSQL, into the fake with basic auth, with a PostgreSQL
    ledger: three passwords, exported here (so the cluster's workers inherit them)."""
    tag = secrets.token_hex(3)
    keys = {
        "source": f"Src{secrets.token_hex(6)}!pw",
        "state": f"St@te{secrets.token_hex(6)}",
        "riak": f"Riak:{secrets.token_hex(6)}/pw",
    }
    source_url = postgres_server.create_login(f"legacy_{tag}", keys["source"])
    state_url = postgres_server.create_login(f"ledger_{tag}", keys["state"])
    riak_fake.auth = ("migrator", keys["riak"])
    for name, value in (
        (SOURCE_ENV, keys["source"]),
        (STATE_ENV, keys["state"]),
        ("RIAK_USER", "migrator"),
        ("RIAK_PASSWORD", keys["riak"]),
    ):
        monkeypatch.setenv(name, value)
    project = tmp_path / "project"
    created = subprocess.run(
        [str(MIGRATE), "demo", str(project), "--patients", "300", "--seed", "4",
         "--source", source_url, "--password-env", SOURCE_ENV],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    config = project / "migrate.toml"
    text = config.read_text()
    text = text.replace(
        'url = "local:///.migrate/target.db"', f'url = "riak://127.0.0.1:{riak_fake.port}"'
    )
    text = text.replace(
        'url = "sqlite:///.migrate/state.db"', f'url = "{state_url}"\npassword_env = "{STATE_ENV}"'
    )
    config.write_text(re.sub(r"^chunk_size = .*$", "chunk_size = 50", text, flags=re.M))
    basic = base64.b64encode(f"migrator:{keys['riak']}".encode()).decode()
    yield project, {**keys, "riak basic auth": basic}


def _set_executor(project: Path, executor: str) -> None:
    config = project / "migrate.toml"
    text = re.sub(r"^executor = .*\n", "", config.read_text(), flags=re.M)
    config.write_text(text.replace("[run]\n", f'[run]\nexecutor = "{executor}"\n'))


def _leaks(payloads: list[bytes], keys: dict[str, str]) -> list[str]:
    return [name for name, secret in keys.items() for p in payloads if secret.encode() in p]


def test_no_task_carries_a_secret_and_the_snapshot_travels_with_each(
    estate: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from distributed import Client

    project, keys = estate
    sent: list[bytes] = []
    submit = Client.submit

    def serialised(self: Client, fn: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(cloudpickle.dumps((fn, args, kwargs)))
        return submit(self, fn, *args, **kwargs)

    monkeypatch.setattr(Client, "submit", serialised)
    with local_cluster(2) as cluster:  # started now: its workers have the passwords
        _set_executor(project, address(cluster))
        result = invoke(project, "run")
        assert result.exit_code == 0, result.output
        check = invoke(project, "reconcile", "--dry-run")  # the target holds the source's rows
        assert check.exit_code == 0, check.output
    assert "this host reads every chunk" not in result.output  # the workers read the source

    assert len(sent) >= 4 * 2  # every chunk of every service, a task each
    assert any(b"expect_chunk" in task for task in sent)  # and the reconcile's builds
    assert not _leaks(sent, keys)
    assert all(b"postgresql:" in task for task in sent)  # the exported snapshot's id
