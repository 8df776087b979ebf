"""Staged chunks: a directory of Parquet files, one per node, written atomically and owner-only.

Staged rows are personal data read once inside the source's window, so files are 0600 and
directories 0700 whatever the umask, a chunk appears complete or not at all (written beside, then
renamed), and its checksum (xxh3-128 over the files' bytes in node order) is checked on every read.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from migrate.errors import StagingError, disk_error

MANIFEST = "manifest.json"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_HINT = (
    "re-run the extract of this chunk (its staged copy is replaced), or purge the staging folder"
)


@dataclass(frozen=True)
class StagedChunk:
    """Where a chunk is staged, its row count per node, and the checksum of its files."""

    path: str
    rows: dict[str, int]
    checksum: str


def _file_name(position: int, node_id: str) -> str:
    return f"{position:03d}-{_UNSAFE.sub('_', node_id)[:80]}.parquet"


def _mkdir_private(path: Path) -> None:
    """Create `path` and any missing parents 0700 (mkdir's mode is subject to the umask)."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=0o700)
            os.chmod(directory, 0o700)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return bytes(sink.getvalue().to_pybytes())


def _remove_leftovers(directory: Path) -> None:
    """Half-written siblings of a killed run."""
    for stale in directory.parent.glob(f".{glob.escape(directory.name)}.*"):
        shutil.rmtree(stale, ignore_errors=True)


def write_staged(directory: Path, tables: Mapping[str, pa.Table]) -> StagedChunk:
    """Stage a chunk's tables (node id -> rows) as `directory`, replacing any earlier copy. A
    failing disk is a `DiskError` naming the folder (nothing half-written is left in place)."""
    try:
        return _write_staged(Path(directory), tables)
    except OSError as exc:
        raise disk_error(directory, exc, "the staged chunk") from exc


def _write_staged(directory: Path, tables: Mapping[str, pa.Table]) -> StagedChunk:
    _mkdir_private(directory.parent)
    _remove_leftovers(directory)
    temporary = directory.parent / f".{directory.name}.tmp-{uuid.uuid4().hex}"
    temporary.mkdir(mode=0o700)
    os.chmod(temporary, 0o700)
    digest = xxhash.xxh3_128()
    entries = []
    try:
        for position, (node_id, table) in enumerate(tables.items()):
            name = _file_name(position, node_id)
            data = _parquet_bytes(table)
            digest.update(data)
            _write_private(temporary / name, data)
            entries.append({"node_id": node_id, "file": name, "rows": table.num_rows})
        checksum = digest.hexdigest()
        manifest = {"version": 1, "checksum": checksum, "nodes": entries}
        _write_private(temporary / MANIFEST, json.dumps(manifest, indent=1).encode())
        if directory.exists():
            old = directory.parent / f".{directory.name}.old-{uuid.uuid4().hex}"
            directory.rename(old)
            temporary.rename(directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            temporary.rename(directory)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    _fsync_directory(directory.parent)
    rows = {str(e["node_id"]): int(str(e["rows"])) for e in entries}
    return StagedChunk(str(directory), rows, checksum)


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fail(directory: Path, problem: str) -> StagingError:
    return StagingError(f"staged chunk {directory} {problem}", hint=_HINT)


def read_staged(directory: Path, expected: StagedChunk | None = None) -> dict[str, pa.Table]:
    """A staged chunk's tables, in node order, after checking its files against its checksum.

    With `expected` (the ledger's record) the row counts and checksum must match it too.
    """
    directory = Path(directory)
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        entries = [(str(e["node_id"]), str(e["file"]), int(e["rows"])) for e in manifest["nodes"]]
        recorded = str(manifest["checksum"])
    except FileNotFoundError:
        raise _fail(directory, "is missing or incomplete") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise _fail(directory, "has an unreadable manifest") from exc
    digest = xxhash.xxh3_128()
    contents = []
    for node_id, name, _ in entries:
        try:
            data = (directory / Path(name).name).read_bytes()
        except OSError as exc:
            raise _fail(directory, f"is missing its file for node {node_id!r}") from exc
        digest.update(data)
        contents.append(data)
    checksum = digest.hexdigest()
    if checksum != recorded or (expected is not None and checksum != expected.checksum):
        raise _fail(directory, "does not match its checksum (the files changed after staging)")
    if expected is not None and {n: rows for n, _, rows in entries} != expected.rows:
        raise _fail(directory, "does not hold the row counts the ledger recorded for it")
    tables: dict[str, pa.Table] = {}
    for (node_id, _, rows), data in zip(entries, contents, strict=True):
        try:
            table = pq.read_table(pa.BufferReader(data))
        except (pa.ArrowException, OSError) as exc:
            raise _fail(directory, f"has a corrupt file for node {node_id!r}") from exc
        if table.num_rows != rows:
            raise _fail(directory, f"holds {table.num_rows} rows for node {node_id!r}, not {rows}")
        tables[node_id] = table
    return tables
