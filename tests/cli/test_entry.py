"""The console script's entry: which command lines start the workers' forkserver early."""

from __future__ import annotations

import subprocess
import sys

import pytest

from migrate.cli.entry import runs_worker_pools


@pytest.mark.parametrize(
    "line",
    [
        "run",
        "run pds eps",
        "run --workers 2",
        "run --workers=4 --fresh",
        "--debug run",
        "--config run/migrate.toml run",
        "--config=x.toml reconcile --dry-run",
        "reconcile pds --format junit",
    ],
)
def test_commands_that_start_worker_pools(line: str) -> None:
    assert runs_worker_pools(line.split())


@pytest.mark.parametrize(
    "line",
    [
        "",
        "status",
        "--help",
        "--version",
        "check",
        "demo run",
        "--config run status",
        "run --help",
        "reconcile -h",
        "run --workers 1",
        "run --workers=1",
        "repair pds",
    ],
)
def test_commands_that_do_not(line: str) -> None:
    assert not runs_worker_pools(line.split())


def test_the_entry_module_imports_nothing_heavy() -> None:
    """Worker processes import the console script again; that must stay cheap and start nothing."""
    code = (
        "import sys, migrate.cli.entry; "
        "print(sorted(m for m in ('sqlalchemy', 'pyarrow', 'click', 'migrate.cli.main', "
        "'multiprocessing.forkserver') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_python_m_migrate_runs_the_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "migrate", "--version"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "migrate" in done.stdout
