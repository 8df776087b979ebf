"""Fixtures shared by the end-to-end tests: a small demo project, copied fresh for each test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from support import DEMO_CHUNK_SIZE, DEMO_PATIENTS, DEMO_SEED, Invoke, set_run_option


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from migrate.demo import create_demo

    directory = tmp_path_factory.mktemp("demo-template") / "project"
    create_demo(directory, patients=DEMO_PATIENTS, seed=DEMO_SEED)
    set_run_option(directory, "chunk_size", DEMO_CHUNK_SIZE)
    return directory


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
