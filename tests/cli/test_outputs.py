"""Unix manners of every command's outputs, through the installed `migrate` command and real
pipes: a reader that leaves is no error (the exit code is the work's), a write error names the path
and exits 3."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from migrate.cli.main import cli

MIGRATE = Path(sys.executable).parent / "migrate"


def _reader_gone(project: Path, *args: str, stderr_too: bool = False) -> tuple[int, str]:
    """Run `migrate ARGS` with a standard output (and, `stderr_too`, error) whose reader has
    closed it before the first write: every write meets EPIPE. Returns (exit code, stderr)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [str(MIGRATE), "--config", str(project / "migrate.toml"), *args],
            stdout=write_end,
            stderr=write_end if stderr_too else subprocess.PIPE,
            timeout=300,
            check=False,
        )
    finally:
        os.close(write_end)
    return done.returncode, (done.stderr or b"").decode()


def _errors(stderr: str) -> list[str]:
    """The lines of standard error that are not progress."""
    return [line for line in stderr.splitlines() if not line.startswith("ods: ")]


def _migrate(
    project: Path, *args: str, stdout: int | object = subprocess.PIPE
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MIGRATE), "--config", str(project / "migrate.toml"), *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def loaded(demo_project: Path) -> Path:
    """The demo project with ods migrated."""
    assert MIGRATE.exists(), "the package must be installed (make venv)"
    done = _migrate(demo_project, "run", "ods", "--workers", "1")
    assert done.returncode == 0, done.stderr
    return demo_project


@pytest.mark.slow
def test_a_reader_that_leaves_is_no_error_and_the_exit_code_is_the_works(loaded: Path) -> None:
    # an equal target: CI piping a dry run into `head` must read success (progress lines go to
    # standard error, which is still read)
    code, err = _reader_gone(loaded, "reconcile", "ods", "--dry-run")
    assert (code, _errors(err)) == (0, [])
    code, err = _reader_gone(loaded, "reconcile", "ods", "--dry-run", "--format", "json")
    assert (code, _errors(err)) == (0, [])
    # the dump stops, quietly, with success
    code, err = _reader_gone(loaded, "dump", "ods")
    assert (code, err) == (0, "")
    for args in (("status",), ("status", "--format", "json"), ("check",)):
        code, err = _reader_gone(loaded, *args)
        assert (code, err) == (0, ""), args
    # progress on standard error too: the run still does its work and succeeds
    code, _ = _reader_gone(loaded, "run", "pds", "--workers", "1", stderr_too=True)
    assert code == 0
    assert "pds" in _migrate(loaded, "status", "--format", "json").stdout
    with sqlite3.connect(loaded / ".migrate" / "state.db") as db:
        (loaded_chunks,) = db.execute(
            "SELECT count(*) FROM chunks c JOIN runs r ON r.run_id = c.run_id "
            "WHERE r.service = 'pds' AND c.state = 'loaded'"
        ).fetchone()
    assert loaded_chunks > 0

    # a target that differs: the reader leaving does not turn a failed verification into success
    target = loaded / ".migrate" / "target.db"
    with sqlite3.connect(target) as db:
        (key,) = db.execute("SELECT key FROM objects WHERE bucket = 'organisations'").fetchone()
        db.execute("DELETE FROM objects WHERE key = ?", (key,))
        db.execute("DELETE FROM index_entries WHERE key = ?", (key,))
    code, err = _reader_gone(loaded, "reconcile", "ods", "--dry-run")
    assert (code, _errors(err)) == (1, [])


@pytest.mark.slow
def test_head_in_a_shell_pipeline(loaded: Path) -> None:
    config = loaded / "migrate.toml"
    script = (
        f"'{MIGRATE}' --config '{config}' dump ods | head -1 >/dev/null; "
        "echo ${PIPESTATUS[0]}; "
        f"'{MIGRATE}' --config '{config}' reconcile ods --dry-run | head -1 >/dev/null; "
        "echo ${PIPESTATUS[0]}"
    )
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False)
    assert done.stdout.split() == ["0", "0"], done.stderr
    assert _errors(done.stderr) == []


@pytest.mark.slow
def test_write_errors_name_the_path_and_exit_3(loaded: Path, tmp_path: Path) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    for args in (("dump", "ods"), ("status",), ("reconcile", "ods", "--dry-run")):
        with open("/dev/full", "wb") as full:
            done = _migrate(loaded, *args, stdout=full)
        assert done.returncode == 3, (args, done.stderr)
        assert "cannot write to standard output (/dev/full): No space left on device" in (
            done.stderr
        )
        assert "Traceback" not in done.stderr and "unexpected" not in done.stderr

    missing = tmp_path / "no-such-folder" / "ods.jsonl"
    for args in (
        ("dump", "ods", "--output", str(missing)),
        ("reconcile", "ods", "--dry-run", "--format", "json", "--output", str(missing)),
    ):
        done = _migrate(loaded, *args)
        assert done.returncode == 3, done.stderr
        assert f"cannot write the output file {missing}: No such file or directory" in done.stderr
        assert f"the folder {missing.parent} does not exist" in done.stderr
        assert not missing.parent.exists()

    done = _migrate(loaded, "dump", "ods", "--output", "/dev/full")
    assert done.returncode == 3
    assert "cannot write the output file /dev/full: No space left on device" in done.stderr


def test_every_commands_help_is_quiet_when_its_reader_left(demo_project: Path) -> None:
    """The handling is the CLI's, not each command's: every command, asked for its help with
    nobody reading, exits 0 and says nothing."""
    for name in [None, *sorted(cli.commands)]:
        args = ["--help"] if name is None else [name, "--help"]
        code, err = _reader_gone(demo_project, *args)
        assert (code, err) == (0, ""), name


def test_a_non_blocking_standard_output_is_written_whole(loaded: Path) -> None:
    """A reader slower than the writer, on a non-blocking pipe (as some CI runners hand out):
    the writer waits instead of failing with EAGAIN."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    process = subprocess.Popen(
        [str(MIGRATE), "--config", str(loaded / "migrate.toml"), "dump", "ods"],
        stdout=write_end,
        stderr=subprocess.PIPE,
    )
    os.close(write_end)
    chunks = []
    with os.fdopen(read_end, "rb") as reader:
        while block := reader.read(4096):
            chunks.append(block)
            time.sleep(0.001)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    lines = b"".join(chunks).decode().splitlines()
    assert lines and all(json.loads(line)["bucket"] for line in lines)


@pytest.mark.slow
def test_a_closed_descriptor_is_a_reader_that_left(loaded: Path) -> None:
    config = loaded / "migrate.toml"
    script = (
        f"'{MIGRATE}' --config '{config}' dump ods >&-; echo $?; "
        f"'{MIGRATE}' --config '{config}' status >&- 2>&-; echo $?; "
        f"'{MIGRATE}' --config '{config}' reconcile ods --dry-run >&-; echo $?"
    )
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False)
    assert done.stdout.split() == ["0", "0", "0"], done.stderr
    assert "Traceback" not in done.stderr and "error" not in done.stderr
