"""What `run` would refuse in the settings, found without creating anything."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from migrate.config import load_config
from migrate.preflight import config_problems, unwritable


def test_a_folder_run_can_create_is_fine_and_nothing_is_created(tmp_path: Path) -> None:
    assert unwritable(tmp_path) is None
    assert unwritable(tmp_path / "a" / "b" / "c") is None
    assert not (tmp_path / "a").exists()


def test_a_file_in_the_way_is_named(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    assert unwritable(tmp_path / "f") == f"{tmp_path / 'f'} is a file, not a folder"
    assert unwritable(tmp_path / "f" / "x" / "y") == (
        f"{tmp_path / 'f' / 'x' / 'y'} cannot be created: {tmp_path / 'f'} is a file, not a folder"
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in a read-only folder")
def test_a_read_only_folder_is_named(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        assert unwritable(locked / "work") == f"{locked / 'work'} is not writable ({locked} exists)"
    finally:
        locked.chmod(0o700)


def test_every_setting_at_fault_is_one_problem_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("")
    config = tmp_path / "migrate.toml"
    config.write_text(
        '[source]\nurl = "sqlite:///legacy.db"\n'
        '[target]\nurl = "local:///blocker/target.db"\n'
        '[state]\nurl = "sqlite:///blocker/state.db"\n'
        '[run]\nchunk_size = 10\nwork_dir = "blocker/work"\n'
    )
    problems = config_problems(load_config(config))
    assert [(p.line, p.field) for p in problems] == [
        (4, "[target] url"),
        (6, "[state] url"),
        (9, "[run] work_dir"),
    ]
    assert all("blocker is a file, not a folder" in p.message for p in problems)
    assert not any(tmp_path.joinpath(name).exists() for name in ("target.db", "state.db", "work"))
