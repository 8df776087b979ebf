"""Fixtures shared across test folders: a small demo project copied fresh for each test, a fake
Riak node, real Riak nodes (from the Riak test server folder beside the checkout, skipped when it
is absent), and throwaway PostgreSQL and MariaDB servers."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from mariadb_server import PASSWORD, PASSWORD_ENV, MariaDBServer, find_server
from postgres_server import PostgresServer, find_bin_dir
from riak_fake import SIBLINGS_TYPE_PROPS, RiakFake
from riak_projects import embedded_dumps_of
from support import DEMO_CHUNK_SIZE, DEMO_PATIENTS, DEMO_SEED, Invoke, set_run_option

from benchmarks.riak_node import RiakNodes, absent_reason, riak_home

# Set before any worker process starts (the forkserver passes its environment on to every
# worker), as a shell that runs migrate would export it.
os.environ[PASSWORD_ENV] = PASSWORD


@pytest.fixture
def riak_fake() -> Iterator[RiakFake]:
    """A running fake Riak node with the `default` type and a `siblings` type (allow_mult=true)."""
    fake = RiakFake(seed=1)
    fake.create_bucket_type("siblings", **SIBLINGS_TYPE_PROPS)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


def _start_riak(folder: Path, nodes: int) -> RiakNodes:
    if riak_home() is None:
        pytest.skip(absent_reason())
    return RiakNodes.start(folder, nodes=nodes)


@pytest.fixture(scope="session")
def riak_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RiakNodes]:
    """A real three-node Riak cluster for the whole session (about 19 s to start): tests that
    stop one of its nodes start it again before they end."""
    cluster = _start_riak(tmp_path_factory.mktemp("riak-cluster"), 3)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def riak_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RiakNodes]:
    """A real one-node Riak of the module's own, which its tests may stop and start again."""
    node = _start_riak(tmp_path_factory.mktemp("riak-node"), 1)
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole session; skipped only when the binaries are missing."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.skip(
            "PostgreSQL binaries not found under /usr/lib/postgresql/*/bin (CI installs them)"
        )
    server = PostgresServer.start(bin_dir)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> str:
    """The URL of a fresh, empty PostgreSQL database."""
    return postgres_server.create_database()


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[MariaDBServer]:
    """A MariaDB server for the whole session; skipped only when the binaries are missing."""
    found = find_server()
    if found is None:
        pytest.skip("MariaDB binaries (mariadbd, mariadb-install-db) not found (CI installs them)")
    server = MariaDBServer.start(*found)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def maria_url(mariadb_server: MariaDBServer) -> str:
    """The URL (no password: see `mariadb_server.PASSWORD`) of a fresh, empty database."""
    return mariadb_server.create_database()


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from migrate.demo import create_demo

    directory = tmp_path_factory.mktemp("demo-template") / "project"
    create_demo(directory, patients=DEMO_PATIENTS, seed=DEMO_SEED)
    set_run_option(directory, "chunk_size", DEMO_CHUNK_SIZE)
    return directory


@pytest.fixture(scope="session")
def embedded_dumps(
    demo_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, bytes]:
    """`migrate dump` of every demo service after the demo ran into the embedded target: what a
    run into Riak must dump byte for byte."""
    return embedded_dumps_of(demo_template, tmp_path_factory.mktemp("embedded"))


@pytest.fixture
def demo_project(tmp_path: Path, demo_template: Path) -> Path:
    """A fresh copy of the demo project (nothing migrated yet)."""
    target = tmp_path / "project"
    shutil.copytree(demo_template, target)
    return target


@pytest.fixture
def migrate_cli(demo_project: Path) -> Invoke:
    """Run `migrate --config PROJECT ARGS...` in-process and return click's Result."""
    from migrate.cli.main import cli

    def invoke(*args: str, project: Path = demo_project) -> Result:
        runner = CliRunner()
        return runner.invoke(cli, ["--config", str(project / "migrate.toml"), *args])

    return invoke
