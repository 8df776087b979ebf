"""The embedded target: one SQLite file with Riak's data model, for rehearsals, demos, CI and tests.

Objects live under (bucket_type, bucket, key) with a value, its checksum, secondary indexes
(`_bin` text, `_int` integers) and user metadata. A write replaces an object's indexes and metadata
wholesale, as a Riak PUT does. It is not a Riak replacement: no siblings, vclocks or quorums.
The file's layout is in `migrate.target.local_schema`.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from migrate.document import Document, IndexValue
from migrate.errors import ConfigError, TargetError
from migrate.files import sqlite_reader_uri
from migrate.target.base import StoredObject, WriteStats
from migrate.target.local_batch import (
    Entries,
    ObjectRow,
    PreparedDocuments,
    check_identity,
    check_term,
    prepare,
    prepare_documents,
)
from migrate.target.local_schema import check_current, ensure_layout, layout_version

SCHEME = "local"
_PAGE = 500
_SIDE_FILES = ("-wal", "-shm", "-journal")
_ONE_OBJECT = "bucket_type = ? AND bucket = ? AND key = ?"
_ONE_ENTRY = "index_id = ? AND term = ? AND key = ?"
_INDEX_ID = "SELECT id FROM index_names WHERE bucket_type = ? AND bucket = ? AND name = ?"
_UPSERT = (
    "INSERT INTO objects (bucket_type, bucket, key, checksum, indexes, meta, value)"
    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (bucket_type, bucket, key) DO UPDATE SET"
    " checksum = excluded.checksum, indexes = excluded.indexes, meta = excluded.meta,"
    " value = excluded.value"
)
_INSERT_ENTRY = "INSERT OR IGNORE INTO index_entries (index_id, term, key) VALUES (?, ?, ?)"
# A page cache that holds the b-tree pages a chunk's writes touch (bounded: not the store's size).
_CACHE_KIB = 32 * 1024

# (index_id, term, key): one row of index_entries.
_Entry = tuple[int, IndexValue, str]


def path_from_url(url: str, *, base_dir: Path | None = None) -> Path:
    """`local:///rel/path.db` is relative to the project folder, `local:////abs/path.db` is
    absolute (the convention of SQLite URLs)."""
    parts = urlsplit(url)
    if parts.scheme != SCHEME or parts.netloc or not parts.path.startswith("/"):
        raise ConfigError(
            f"{url!r} is not a local target URL",
            hint="write it as local:///.migrate/target.db (relative to the project folder)",
        )
    relative = unquote(parts.path[1:])
    if not relative or relative.endswith("/"):
        raise ConfigError(f"{url!r} names no file", hint="e.g. local:///.migrate/target.db")
    path = Path(relative)
    return path if path.is_absolute() else (base_dir or Path.cwd()) / path


_TERMS_PAGE = 1000
_LOOKUP_SLICE = 500  # keys per IN list: well under SQLite's bound-parameter limit


class LocalTarget:
    """A Target kept in one owner-only SQLite file; safe to share between threads."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        """Open (creating) the store; `read_only` changes nothing on disk: a missing file reads as
        an empty store, and SQLite refuses writes."""
        self.path = Path(path)
        self.read_only = read_only
        self._lock = threading.Lock()
        self._index_ids: dict[tuple[str, str], dict[str, int]] = {}  # by bucket, by name
        self._conn: sqlite3.Connection | None = (
            self._open_read_only() if read_only else self._open()
        )

    @classmethod
    def from_url(cls, url: str, *, base_dir: Path | None = None) -> LocalTarget:
        return cls(path_from_url(url, base_dir=base_dir))

    @property
    def display_url(self) -> str:
        return f"{SCHEME}:///{self.path}"

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not self.path.exists():
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600))
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise TargetError(
                f"cannot open the embedded target {self.display_url}: {exc}",
                hint="check that the folder is writable, or set [target] url in migrate.toml",
            ) from exc
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("PRAGMA journal_mode = WAL")
            # Every commit is on disk before write() returns (the ledger then records the load).
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
            ensure_layout(conn, self.display_url)
        except sqlite3.Error as exc:
            conn.close()
            raise TargetError(
                f"the embedded target {self.display_url} is not usable: {exc}",
                hint=_unusable_hint(exc),
            ) from exc
        except BaseException:
            conn.close()
            raise
        self._restrict_side_files()
        return conn

    def _open_read_only(self) -> sqlite3.Connection:
        try:
            if not self.path.exists():
                conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
                ensure_layout(conn, self.display_url)
                return conn
            uri = sqlite_reader_uri(self.path)
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 30000")
            check_current(layout_version(conn), self.display_url)
            conn.execute("SELECT count(*) FROM objects LIMIT 1").fetchone()
            return conn
        except sqlite3.Error as exc:
            raise TargetError(
                f"the embedded target {self.display_url} cannot be read: {exc}",
                hint="the file is not an embedded target store; check [target] url",
            ) from exc

    def _restrict_side_files(self) -> None:
        """SQLite copies the database file's mode to its WAL files; make sure of it anyway."""
        for suffix in _SIDE_FILES:
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                side.chmod(0o600)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise TargetError(f"the embedded target {self.display_url} is closed")
        return self._conn

    def preparer(self) -> Callable[[Sequence[Document]], Sequence[Document]]:
        """Worker processes check and lay out a chunk's rows (`local_batch`), so the one thread
        that writes only hands them to SQLite."""
        return prepare_documents

    def write(
        self,
        documents: Sequence[Document],
        *,
        meta: Mapping[str, str],
        first_load: bool = False,
    ) -> WriteStats:
        """Store the batch in one transaction; returns after the commit is durable. A first
        load costs the same here as any other write (an upsert that skips unchanged rows)."""
        meta_text = json.dumps(dict(meta), sort_keys=True, ensure_ascii=False)
        batch = prepare(documents)  # every document checked before any write
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                if batch is not None:
                    written = self._put_batch(conn, batch, meta_text)
                else:  # the same key twice in one batch: store them in order, one by one
                    written = sum(
                        self._put_batch(conn, _one(document), meta_text) for document in documents
                    )
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self._index_ids.clear()  # ids given out in the transaction are gone with it
                if isinstance(exc, sqlite3.Error):
                    raise TargetError(
                        f"writing to the embedded target {self.display_url} failed: {exc}",
                        hint="nothing of this batch was stored; run the load again",
                    ) from exc
                raise
        return WriteStats(written=written, unchanged=len(documents) - written)

    def _put_batch(self, conn: sqlite3.Connection, batch: PreparedDocuments, meta_text: str) -> int:
        """Store documents with distinct keys in a few set-based statements; returns how many
        were written (the others are stored already with the same value and indexes)."""
        stored = _stored_indexes(conn, batch.rows)
        changed = [row for row in batch.rows if stored.get(row[:3]) != (row[3], row[4])]
        if not changed:
            return 0
        conn.executemany(
            _UPSERT,
            [
                (bt, b, key, checksum, text, meta_text, value)
                for bt, b, key, checksum, text, value in changed
            ],
        )
        # Entries of objects new to the store are all added, a name's at once; an object stored
        # with other indexes has only the entries that differ touched.
        new = {row[:3] for row in changed if row[:3] not in stored} if stored else None
        groups = batch.entries.items() if new is None else _entries_of(batch.entries, new)
        for (bucket_type, bucket, name), pairs in groups:
            index_id = self._ids(conn, bucket_type, bucket, (name,))[name]
            conn.executemany(_insert_entries(index_id), pairs)
        removed: list[_Entry] = []
        added: list[_Entry] = []
        for bucket_type, bucket, key, _checksum, text, _value in changed:
            before = stored.get((bucket_type, bucket, key))
            if before is not None and before[1] != text:
                old = set(self._entries(conn, bucket_type, bucket, key, before[1]))
                fresh = self._entries(conn, bucket_type, bucket, key, text)
                removed.extend(old.difference(fresh))
                added.extend(entry for entry in fresh if entry not in old)
        conn.executemany(f"DELETE FROM index_entries WHERE {_ONE_ENTRY}", removed)
        conn.executemany(_INSERT_ENTRY, added)
        return len(changed)

    def _ids(
        self, conn: sqlite3.Connection, bucket_type: str, bucket: str, names: Iterable[str]
    ) -> dict[str, int]:
        """The bucket's index ids by name, registering new names (in the caller's transaction)."""
        known = self._index_ids.setdefault((bucket_type, bucket), {})
        for name in names:
            if name not in known:
                conn.execute(
                    "INSERT OR IGNORE INTO index_names (bucket_type, bucket, name)"
                    " VALUES (?, ?, ?)",
                    (bucket_type, bucket, name),
                )
                (known[name],) = conn.execute(_INDEX_ID, (bucket_type, bucket, name)).fetchone()
        return known

    def _entries(
        self,
        conn: sqlite3.Connection,
        bucket_type: str,
        bucket: str,
        key: str,
        indexes: Mapping[str, Sequence[IndexValue]] | str,
    ) -> list[_Entry]:
        """The index_entries rows of an object, from its indexes or its stored `indexes` text."""
        if isinstance(indexes, str):
            indexes = json.loads(indexes)
            assert isinstance(indexes, dict)
        ids = self._ids(conn, bucket_type, bucket, indexes)
        return [(ids[name], term, key) for name, terms in indexes.items() for term in terms]

    def get(self, bucket_type: str, bucket: str, key: str) -> StoredObject | None:
        check_identity(bucket_type, bucket, key)
        with self._lock:
            row = (
                self._connection()
                .execute(
                    "SELECT bucket_type, bucket, key, value, indexes, meta FROM objects"
                    f" WHERE {_ONE_OBJECT}",
                    (bucket_type, bucket, key),
                )
                .fetchone()
            )
        return _stored(row) if row is not None else None

    def delete(self, bucket_type: str, bucket: str, key: str) -> bool:
        check_identity(bucket_type, bucket, key)
        identity = (bucket_type, bucket, key)
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                row = conn.execute(
                    f"SELECT indexes FROM objects WHERE {_ONE_OBJECT}", identity
                ).fetchone()
                if row is not None:
                    conn.execute(f"DELETE FROM objects WHERE {_ONE_OBJECT}", identity)
                    conn.executemany(
                        f"DELETE FROM index_entries WHERE {_ONE_ENTRY}",
                        self._entries(conn, bucket_type, bucket, key, row[0]),
                    )
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self._index_ids.clear()
                raise TargetError(
                    f"deleting {bucket_type}/{bucket}/{key} from {self.display_url} failed: {exc}"
                ) from exc
        return row is not None

    def iter_bucket(self, bucket_type: str, bucket: str) -> Iterator[StoredObject]:
        """Objects in key order by code point (SQLite's BINARY collation compares UTF-8 bytes, which
        orders like code points); read page by page so no cursor stays open between yields."""
        check_identity(bucket_type, bucket)
        after: str | None = None
        while True:
            query = (
                "SELECT bucket_type, bucket, key, value, indexes, meta FROM objects"
                " WHERE bucket_type = ? AND bucket = ?"
            )
            params: list[Any] = [bucket_type, bucket]
            if after is not None:
                query += " AND key > ?"
                params.append(after)
            with self._lock:
                rows = self._connection().execute(f"{query} ORDER BY key LIMIT {_PAGE}", params)
                page = rows.fetchall()
            for row in page:
                yield _stored(row)
            if len(page) < _PAGE:
                return
            after = page[-1][2]

    def query_index(
        self,
        bucket_type: str,
        bucket: str,
        name: str,
        value: IndexValue,
        end: IndexValue | None = None,
    ) -> list[str]:
        """Keys whose entry equals `value` or lies in [value, end], in (term, key) order as Riak
        pages them; a key matching several terms of a range is listed once, at its first term."""
        check_identity(bucket_type, bucket)
        where = f"index {name} of {bucket_type}/{bucket}"
        check_term(name, value, where)
        if end is not None:
            check_term(name, end, where)
        condition = "term = ?" if end is None else "term BETWEEN ? AND ?"
        params: list[Any] = [bucket_type, bucket, name, value]
        if end is not None:
            params.append(end)
        with self._lock:
            rows = (
                self._connection()
                .execute(
                    f"SELECT key FROM index_entries WHERE index_id = ({_INDEX_ID})"
                    f" AND {condition} ORDER BY term, key",
                    params,
                )
                .fetchall()
            )
        return list(dict.fromkeys(row[0] for row in rows))

    def index_terms(
        self, bucket_type: str, bucket: str, name: str, start: IndexValue, end: IndexValue
    ) -> Iterator[tuple[IndexValue, str]]:
        """(term, key) pairs with the term in [start, end], in (term, key) order, read in pages so
        a whole bucket never sits in memory."""
        check_identity(bucket_type, bucket)
        where = f"index {name} of {bucket_type}/{bucket}"
        check_term(name, start, where)
        check_term(name, end, where)
        after: tuple[Any, str] | None = None
        while True:
            params: list[Any] = [bucket_type, bucket, name, start, end]
            condition = ""
            if after is not None:
                condition = " AND (term, key) > (?, ?)"
                params.extend(after)
            with self._lock:
                rows = (
                    self._connection()
                    .execute(
                        f"SELECT term, key FROM index_entries WHERE index_id = ({_INDEX_ID})"
                        f" AND term BETWEEN ? AND ?{condition}"
                        f" ORDER BY term, key LIMIT {_TERMS_PAGE}",
                        params,
                    )
                    .fetchall()
                )
            yield from rows
            if len(rows) < _TERMS_PAGE:
                return
            after = (rows[-1][0], rows[-1][1])

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> LocalTarget:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _stored_indexes(
    conn: sqlite3.Connection, rows: list[ObjectRow]
) -> dict[tuple[str, str, str], tuple[str, str]]:
    """(checksum, indexes text) of the batch's objects that are stored already."""
    stored: dict[tuple[str, str, str], tuple[str, str]] = {}
    by_bucket: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        by_bucket.setdefault((row[0], row[1]), []).append(row[2])
    for (bucket_type, bucket), keys in by_bucket.items():
        for start in range(0, len(keys), _LOOKUP_SLICE):
            part = keys[start : start + _LOOKUP_SLICE]
            marks = ", ".join("?" * len(part))
            found = conn.execute(
                "SELECT key, checksum, indexes FROM objects"
                f" WHERE bucket_type = ? AND bucket = ? AND key IN ({marks})",
                (bucket_type, bucket, *part),
            )
            for key, checksum, indexes in found:
                stored[(bucket_type, bucket, key)] = (checksum, indexes)
    return stored


def _entries_of(
    entries: Entries, keys: set[tuple[str, str, str]]
) -> Iterator[tuple[tuple[str, str, str], list[tuple[IndexValue, str]]]]:
    """The index groups of `entries` kept to the objects `keys` names."""
    for (bucket_type, bucket, name), pairs in entries.items():
        kept = [pair for pair in pairs if (bucket_type, bucket, pair[1]) in keys]
        if kept:
            yield (bucket_type, bucket, name), kept


def _one(document: Document) -> PreparedDocuments:
    batch = prepare([document])
    assert batch is not None  # one document cannot repeat its identity
    return batch


@functools.cache
def _insert_entries(index_id: int) -> str:
    """The insert of one index's entries as (term, key) pairs; its id is a literal, so SQLite
    binds two values per entry and the pairs go in as the batch laid them out."""
    return (
        f"INSERT OR IGNORE INTO index_entries (index_id, term, key) VALUES ({int(index_id)}, ?, ?)"
    )


def _stored(row: tuple[Any, ...]) -> StoredObject:
    bucket_type, bucket, key, value, indexes, meta = row
    return StoredObject(
        bucket_type=bucket_type,
        bucket=bucket,
        key=key,
        value=bytes(value),
        indexes={name: list(values) for name, values in json.loads(indexes).items()},
        meta=dict(json.loads(meta)),
    )


def _unusable_hint(exc: sqlite3.Error) -> str:
    """What to do, by what SQLite said: only a file that is no store is to be moved aside."""
    text = str(exc).lower()
    if "readonly" in text or "read-only" in text or "unable to open" in text:
        return (
            "the file or its folder is read-only (or on a read-only disk): make them writable "
            "for this user, or set [target] url to a writable place"
        )
    if "locked" in text or "busy" in text:
        return "another process holds the store locked: wait for it to finish, then run again"
    if "disk" in text or "full" in text or "i/o" in text:
        return "the disk holding it failed or is full: free space, then run again"
    return "the file is not an embedded target store; move it aside or set [target] url"
