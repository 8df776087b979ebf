"""Owner-only files and folders: staged chunks, reject files and dumps hold personal data."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO
from urllib.parse import quote

from migrate.errors import disk_error


def private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) readable by the owner only."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.chmod(0o700)
    except OSError as exc:
        raise disk_error(path, exc, "the folder") from exc
    return path


@contextlib.contextmanager
def private_writer(path: Path) -> Iterator[IO[bytes]]:
    """Write `path` atomically and owner-only: a temporary sibling, fsync, then rename into place.

    A crash leaves either the old file or the new one, never half of one. A failing disk is a
    `DiskError` naming the path.
    """
    private_dir(path.parent)
    # Unique across hosts too: processes of other hosts may write in a shared work folder.
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise disk_error(path, exc, "the file") from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(exc, OSError):
            raise disk_error(path, exc, "the file") from exc
        raise


def open_private(path: Path) -> IO[bytes]:
    """Open `path` for writing, owner-only, truncating it (for streamed outputs such as dumps)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "wb")


def sqlite_reader_uri(path: Path) -> str:
    """A URI that reads `path` without changing anything on disk.

    With no write-ahead log beside it (no writer has it open) the file is opened immutable, which
    creates no -wal/-shm side files; while a writer is active it is opened mode=ro, which shares the
    writer's side files and sees its commits.
    """
    wal = path.with_name(path.name + "-wal")
    mode = "mode=ro" if wal.exists() else "immutable=1"
    return f"file:{quote(str(path))}?{mode}"
