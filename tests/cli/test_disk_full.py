"""A full disk while staging (issue 15): `[run] work_dir` on a small filesystem of its own that
fills up during the run. The run stops with exit 3 and a message naming the path, never a
traceback; once there is space again (space freed on that disk, or work_dir moved to a bigger
one, as the message's hint says) `migrate run` resumes and ends exact.

The filesystem is a tmpfs, else an ext4 image on a loop device; both need root (CAP_SYS_ADMIN):
without it the test skips, saying why."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_fault_matrix import _dumps
from test_resume_kill import MIGRATE, _migrate

from migrate.cli.main import cli

SIZE_MB = 8


def _mount(*args: str) -> str | None:
    """Run mount; None when it worked, else why not."""
    try:
        done = subprocess.run(["mount", *args], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return None if done.returncode == 0 else (done.stderr.strip() or f"exit {done.returncode}")


@contextmanager
def _small_filesystem(where: Path) -> Iterator[Path]:
    """A filesystem of SIZE_MB mounted at `where`: a tmpfs, else a loop-mounted ext4 image."""
    where.mkdir()
    tmpfs = _mount("-t", "tmpfs", "-o", f"size={SIZE_MB}m,mode=0700", "tmpfs", str(where))
    loop = None
    if tmpfs is not None:
        image = where.parent / "small.img"
        with image.open("wb") as handle:
            handle.truncate(SIZE_MB * 1024 * 1024)
        try:
            made = subprocess.run(
                ["mkfs.ext4", "-q", "-F", str(image)], capture_output=True, text=True, timeout=60
            )
            loop = f"mkfs.ext4: {made.stderr.strip()}" if made.returncode else None
        except (OSError, subprocess.TimeoutExpired) as exc:
            loop = f"mkfs.ext4: {exc}"
        if loop is None:
            loop = _mount("-o", "loop", str(image), str(where))
    if tmpfs is not None and loop is not None:
        pytest.skip(
            f"cannot make a small filesystem for a full disk (needs root): tmpfs: {tmpfs}; "
            f"loop-mounted ext4: {loop}"
        )
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], capture_output=True, check=False, timeout=60)


def _fill(filesystem: Path, leave: int) -> Path:
    """A ballast file taking all but `leave` bytes of the filesystem's free space."""
    stats = os.statvfs(filesystem)
    free = stats.f_bfree * stats.f_frsize  # root may use the reserved blocks too
    ballast = filesystem / "ballast"
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.posix_fallocate(fd, 0, max(1, free - leave))
    finally:
        os.close(fd)
    return ballast


def _set_work_dir(project: Path, work_dir: Path) -> None:
    config = project / "migrate.toml"
    text = config.read_text()
    text = "\n".join(line for line in text.splitlines() if not line.startswith("work_dir ="))
    config.write_text(text.replace("[run]\n", f'[run]\nwork_dir = "{work_dir}"\n') + "\n")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("leave", "then"),
    [(0, "free space"), (200 * 1024, "move work_dir")],
    ids=["full-from-the-start-then-freed", "full-mid-run-then-moved"],
)
def test_a_full_work_dir_stops_the_run_with_its_path_and_the_rerun_ends_exact(
    leave: int, then: str, demo_project: Path, tmp_path: Path
) -> None:
    assert MIGRATE.exists(), "the package must be installed (make venv)"
    with _small_filesystem(tmp_path / "small") as small:
        clean = tmp_path / "clean"
        shutil.copytree(demo_project, clean)
        assert _migrate(clean, "run", "--workers", "1").returncode == 0
        work_dir = small / "work"
        _set_work_dir(demo_project, work_dir)
        ballast = _fill(small, leave)

        failed = _migrate(demo_project, "run", "--workers", "2")
        assert failed.returncode == 3, failed.stdout + failed.stderr
        assert "Traceback" not in failed.stderr
        assert "unexpected failure" not in failed.stderr
        error = failed.stderr[failed.stderr.index("error: ") :]
        assert f"{work_dir}" in error.splitlines()[0], error
        assert "No space left on device" in error
        assert "hint: free space on the disk holding" in error

        if then == "free space":
            ballast.unlink()
        else:  # the old disk stays full; what it staged stays readable
            _set_work_dir(demo_project, tmp_path / "bigger")
        resumed = _migrate(demo_project, "run", "--workers", "2")
        assert resumed.returncode == 0, resumed.stderr
        assert "resuming run" in resumed.stdout + resumed.stderr
        assert _dumps(demo_project) == _dumps(clean)
        result = CliRunner().invoke(
            cli,
            [
                "--config",
                str(demo_project / "migrate.toml"),
                "reconcile",
                "--dry-run",
                "--workers",
                "1",
            ],
        )
        assert result.exit_code == 0, result.output
        with suppress(FileNotFoundError):
            ballast.unlink()
