"""The embedded target: one SQLite file with Riak's data model, for rehearsals, demos, CI and tests.

Objects live under (bucket_type, bucket, key) with a value, its checksum, secondary indexes
(`_bin` text, `_int` integers) and user metadata. A write replaces an object's indexes and metadata
wholesale, as a Riak PUT does. It is not a Riak replacement: no siblings, vclocks or quorums.
The file's layout is in `migrate.target.local_schema`.
"""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

import msgspec

from migrate.document import Document, IndexValue
from migrate.errors import ConfigError, TargetError
from migrate.files import sqlite_reader_uri
from migrate.target.base import StoredObject, WriteStats
from migrate.target.local_schema import check_current, ensure_layout, layout_version

SCHEME = "local"
_PAGE = 500
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
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


class _Prepared(NamedTuple):
    """A checked document in the shape its rows are written in."""

    bucket_type: str
    bucket: str
    key: str
    value: bytes
    checksum: str
    indexes: dict[str, Sequence[IndexValue]]  # by name, distinct terms in order
    indexes_text: str


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
                hint="the file is not an embedded target store; move it aside or set [target] url",
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

    def write(self, documents: Sequence[Document], *, meta: Mapping[str, str]) -> WriteStats:
        """Store the batch in one transaction; returns after the commit is durable."""
        meta_text = json.dumps(dict(meta), sort_keys=True, ensure_ascii=False)
        batch = [_prepare(document) for document in documents]
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                if len({(p.bucket_type, p.bucket, p.key) for p in batch}) == len(batch):
                    written = self._put_batch(conn, batch, meta_text)
                else:  # the same key twice in one batch: store them in order, one by one
                    written = sum(self._put_batch(conn, [p], meta_text) for p in batch)
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
        return WriteStats(written=written, unchanged=len(batch) - written)

    def _put_batch(self, conn: sqlite3.Connection, batch: list[_Prepared], meta_text: str) -> int:
        """Store documents with distinct keys in a few set-based statements; returns how many
        were written (the others are stored already with the same value and indexes)."""
        stored = _stored_indexes(conn, batch)
        changed = [
            p
            for p in batch
            if stored.get((p.bucket_type, p.bucket, p.key)) != (p.checksum, p.indexes_text)
        ]
        if not changed:
            return 0
        conn.executemany(
            _UPSERT,
            [
                (p.bucket_type, p.bucket, p.key, p.checksum, p.indexes_text, meta_text, p.value)
                for p in changed
            ],
        )
        removed: list[_Entry] = []
        added: list[_Entry] = []
        add = added.append
        for p in changed:
            ids = self._ids(conn, p.bucket_type, p.bucket, p.indexes)
            before = stored.get((p.bucket_type, p.bucket, p.key))
            if before is None:
                key = p.key
                for name, terms in p.indexes.items():
                    index_id = ids[name]
                    for term in terms:
                        add((index_id, term, key))
            elif before[1] != p.indexes_text:  # only the entries that differ are touched
                old = set(self._entries(conn, p.bucket_type, p.bucket, p.key, before[1]))
                new = self._entries(conn, p.bucket_type, p.bucket, p.key, p.indexes)
                removed.extend(old.difference(new))
                added.extend(entry for entry in new if entry not in old)
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
        _check_identity(bucket_type, bucket, key)
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
        _check_identity(bucket_type, bucket, key)
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
        _check_identity(bucket_type, bucket)
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
        _check_identity(bucket_type, bucket)
        where = f"index {name} of {bucket_type}/{bucket}"
        _check_term(name, value, where)
        if end is not None:
            _check_term(name, end, where)
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
        _check_identity(bucket_type, bucket)
        where = f"index {name} of {bucket_type}/{bucket}"
        _check_term(name, start, where)
        _check_term(name, end, where)
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
    conn: sqlite3.Connection, batch: list[_Prepared]
) -> dict[tuple[str, str, str], tuple[str, str]]:
    """(checksum, indexes text) of the batch's objects that are stored already."""
    stored: dict[tuple[str, str, str], tuple[str, str]] = {}
    by_bucket: dict[tuple[str, str], list[str]] = {}
    for p in batch:
        by_bucket.setdefault((p.bucket_type, p.bucket), []).append(p.key)
    for (bucket_type, bucket), keys in by_bucket.items():
        for start in range(0, len(keys), _LOOKUP_SLICE):
            part = keys[start : start + _LOOKUP_SLICE]
            marks = ", ".join("?" * len(part))
            rows = conn.execute(
                "SELECT key, checksum, indexes FROM objects"
                f" WHERE bucket_type = ? AND bucket = ? AND key IN ({marks})",
                (bucket_type, bucket, *part),
            )
            for key, checksum, indexes in rows:
                stored[(bucket_type, bucket, key)] = (checksum, indexes)
    return stored


def _prepare(document: Document) -> _Prepared:
    """Check a document before any write; its rows' values."""
    _check_identity(document.bucket_type, document.bucket, document.key)
    if not isinstance(document.value, bytes):
        where = f"{document.bucket_type}/{document.bucket}/{document.key}"
        raise TargetError(
            f"document {where}: the value is {type(document.value).__name__}, not bytes",
            hint="this is a bug in the document builder worth reporting",
        )
    indexes = _index_entries(document)
    return _Prepared(
        document.bucket_type,
        document.bucket,
        document.key,
        document.value,
        document.checksum,
        indexes,
        msgspec.json.encode(indexes).decode(),
    )


def _check_identity(bucket_type: str, bucket: str, key: str | None = None) -> None:
    """Riak refuses empty names, and SQLite cannot store text that is not valid Unicode."""
    if _plain(bucket_type) and _plain(bucket) and (key is None or _plain(key)):
        return
    named = [("bucket type", bucket_type), ("bucket", bucket)]
    for label, text in [*named, ("key", key)] if key is not None else named:
        if not isinstance(text, str) or not text:
            raise TargetError(
                f"an empty {label} was given ({bucket_type}/{bucket}/{key})",
                hint="bucket types, buckets and keys must be non-empty text",
            )
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise TargetError(
                f"the {label} of {bucket_type!r}/{bucket!r} is not valid Unicode text",
                hint="keys are built from text columns; check the key template's columns",
            ) from exc


def _plain(text: object) -> bool:
    """Non-empty ASCII text: valid without encoding it (the common case, checked cheaply)."""
    return type(text) is str and text != "" and text.isascii()


def _check_term(name: str, value: object, where: str) -> None:
    """Check that `value` has the type of index `name` (text for _bin, integers for _int)."""
    if name.endswith("_bin"):
        if isinstance(value, str):
            return
        raise TargetError(f"{where}: a _bin index takes text, not {type(value).__name__}")
    if name.endswith("_int"):
        if isinstance(value, int) and not isinstance(value, bool):
            if not _INT_MIN <= value <= _INT_MAX:
                raise TargetError(
                    f"{where}: an integer is beyond the 64-bit range the embedded target holds",
                    hint="use a _bin index for values this large",
                )
            return
        raise TargetError(f"{where}: an _int index takes integers, not {type(value).__name__}")
    raise TargetError(
        f"{where}: index names end in _bin or _int", hint="rename the index in the mapping file"
    )


def _index_entries(document: Document) -> dict[str, Sequence[IndexValue]]:
    """Distinct, sorted terms per index name, names in order, each checked against its name's
    type. Documents from the builder are in that form already and are taken as they are."""
    indexes: dict[str, Sequence[IndexValue]] = {}
    previous = ""
    canonical = True
    for name, values in document.indexes:
        kind = str if name.endswith("_bin") else int if name.endswith("_int") else None
        for value in values:
            if type(value) is not kind or (
                type(value) is int and not _INT_MIN <= value <= _INT_MAX
            ):
                where = f"{document.bucket_type}/{document.bucket}/{document.key}"
                _check_term(name, value, f"document {where}, index {name}")
                canonical = False  # a subclass of str or int: made plain below
        if not values:
            continue
        if name <= previous or (len(values) > 1 and not _increasing(values)):
            canonical = False
        previous = name
        indexes[name] = values
    if canonical:
        return indexes
    merged: dict[str, set[IndexValue]] = {}
    for name, values in document.indexes:
        merged.setdefault(name, set()).update(
            str(value) if isinstance(value, str) else int(value) for value in values
        )
    # One index holds only text or only integers, so terms sort without a key.
    return {name: sorted(merged[name]) for name in sorted(merged) if merged[name]}


def _increasing(values: Sequence[IndexValue]) -> bool:
    return all(a < b for a, b in itertools.pairwise(values))  # type: ignore[operator]


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
