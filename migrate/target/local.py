"""The embedded target: one SQLite file with Riak's data model, for rehearsals, demos, CI and tests.

Objects live under (bucket_type, bucket, key) with a value, its checksum, secondary indexes
(`_bin` text, `_int` integers) and user metadata. A write replaces an object's indexes and metadata
wholesale, as a Riak PUT does. It is not a Riak replacement: no siblings, vclocks or quorums.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from migrate.document import Document, IndexValue
from migrate.errors import ConfigError, TargetError
from migrate.files import sqlite_reader_uri
from migrate.target.base import StoredObject, WriteStats

SCHEME = "local"
_PAGE = 500
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
_SIDE_FILES = ("-wal", "-shm", "-journal")
_ONE_OBJECT = "bucket_type = ? AND bucket = ? AND key = ?"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    bucket_type TEXT NOT NULL,
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    checksum TEXT NOT NULL,
    indexes TEXT NOT NULL,
    meta TEXT NOT NULL,
    PRIMARY KEY (bucket_type, bucket, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS index_entries (
    bucket_type TEXT NOT NULL,
    bucket TEXT NOT NULL,
    name TEXT NOT NULL,
    value_bin TEXT,
    value_int INTEGER,
    key TEXT NOT NULL,
    CHECK ((value_bin IS NULL) <> (value_int IS NULL))
);
CREATE INDEX IF NOT EXISTS index_entries_bin
    ON index_entries (bucket_type, bucket, name, value_bin, key) WHERE value_bin IS NOT NULL;
CREATE INDEX IF NOT EXISTS index_entries_int
    ON index_entries (bucket_type, bucket, name, value_int, key) WHERE value_int IS NOT NULL;
CREATE INDEX IF NOT EXISTS index_entries_object ON index_entries (bucket_type, bucket, key);
"""


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
            conn.execute("PRAGMA synchronous = FULL")
            conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            conn.close()
            raise TargetError(
                f"the embedded target {self.display_url} is not usable: {exc}",
                hint="the file is not an embedded target store; move it aside or set [target] url",
            ) from exc
        self._restrict_side_files()
        return conn

    def _open_read_only(self) -> sqlite3.Connection:
        try:
            if not self.path.exists():
                conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
                conn.executescript(_SCHEMA)
                return conn
            uri = sqlite_reader_uri(self.path)
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 30000")
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
        written = unchanged = 0
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                identities = {(d.bucket_type, d.bucket, d.key) for d in documents}
                if len(identities) == len(documents):
                    written = self._put_batch(conn, documents, meta_text)
                    unchanged = len(documents) - written
                else:  # the same key twice in one batch: store them in order, one by one
                    for document in documents:
                        if self._put(conn, document, meta_text):
                            written += 1
                        else:
                            unchanged += 1
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise TargetError(
                        f"writing to the embedded target {self.display_url} failed: {exc}",
                        hint="nothing of this batch was stored; run the load again",
                    ) from exc
                raise
        return WriteStats(written=written, unchanged=unchanged)

    def _put_batch(
        self, conn: sqlite3.Connection, documents: Sequence[Document], meta_text: str
    ) -> int:
        """Store documents with distinct keys in a few set-based statements; returns how many
        were written (the others are stored already with the same value and indexes)."""
        prepared = [(document, *_prepare(document)) for document in documents]
        stored: dict[tuple[str, str, str], tuple[str, str]] = {}
        by_bucket: dict[tuple[str, str], list[str]] = {}
        for document, _, _ in prepared:
            by_bucket.setdefault((document.bucket_type, document.bucket), []).append(document.key)
        for (bucket_type, bucket), keys in by_bucket.items():
            for start in range(0, len(keys), _LOOKUP_SLICE):
                part = keys[start : start + _LOOKUP_SLICE]
                marks = ", ".join("?" for _ in part)
                rows = conn.execute(
                    "SELECT key, checksum, indexes FROM objects"
                    f" WHERE bucket_type = ? AND bucket = ? AND key IN ({marks})",
                    (bucket_type, bucket, *part),
                )
                for key, checksum, indexes in rows:
                    stored[(bucket_type, bucket, key)] = (checksum, indexes)
        changed = [
            (document, entries, indexes_text)
            for document, entries, indexes_text in prepared
            if stored.get((document.bucket_type, document.bucket, document.key))
            != (document.checksum, indexes_text)
        ]
        conn.executemany(
            "INSERT OR REPLACE INTO objects"
            " (bucket_type, bucket, key, value, checksum, indexes, meta)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (d.bucket_type, d.bucket, d.key, d.value, d.checksum, text, meta_text)
                for d, _, text in changed
            ],
        )
        conn.executemany(
            f"DELETE FROM index_entries WHERE {_ONE_OBJECT}",
            [
                (d.bucket_type, d.bucket, d.key)
                for d, _, _ in changed
                if (d.bucket_type, d.bucket, d.key) in stored
            ],
        )
        conn.executemany(
            "INSERT INTO index_entries (bucket_type, bucket, name, value_bin, value_int, key)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [
                (
                    d.bucket_type,
                    d.bucket,
                    name,
                    value if isinstance(value, str) else None,
                    value if isinstance(value, int) else None,
                    d.key,
                )
                for d, entries, _ in changed
                for name, values in entries
                for value in values
            ],
        )
        return len(changed)

    def _put(self, conn: sqlite3.Connection, document: Document, meta_text: str) -> bool:
        """Store one document; False when it is already stored with the same value and indexes."""
        identity = (document.bucket_type, document.bucket, document.key)
        entries, indexes_text = _prepare(document)
        stored = conn.execute(
            f"SELECT checksum, indexes FROM objects WHERE {_ONE_OBJECT}",
            identity,
        ).fetchone()
        if stored is not None and stored == (document.checksum, indexes_text):
            return False
        conn.execute(
            "INSERT OR REPLACE INTO objects"
            " (bucket_type, bucket, key, value, checksum, indexes, meta)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (*identity, document.value, document.checksum, indexes_text, meta_text),
        )
        conn.execute(f"DELETE FROM index_entries WHERE {_ONE_OBJECT}", identity)
        conn.executemany(
            "INSERT INTO index_entries (bucket_type, bucket, name, value_bin, value_int, key)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [
                (
                    document.bucket_type,
                    document.bucket,
                    name,
                    value if isinstance(value, str) else None,
                    value if isinstance(value, int) else None,
                    document.key,
                )
                for name, values in entries
                for value in values
            ],
        )
        return True

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
                deleted = conn.execute(
                    f"DELETE FROM objects WHERE {_ONE_OBJECT}", identity
                ).rowcount
                conn.execute(
                    f"DELETE FROM index_entries WHERE {_ONE_OBJECT}",
                    identity,
                )
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise TargetError(
                    f"deleting {bucket_type}/{bucket}/{key} from {self.display_url} failed: {exc}"
                ) from exc
        return deleted == 1

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
        column = _check_term(name, value, where)
        if end is not None:
            _check_term(name, end, where)
        condition = f"{column} = ?" if end is None else f"{column} BETWEEN ? AND ?"
        params: list[Any] = [bucket_type, bucket, name, value]
        if end is not None:
            params.append(end)
        with self._lock:
            rows = (
                self._connection()
                .execute(
                    "SELECT key FROM index_entries"
                    " WHERE bucket_type = ? AND bucket = ? AND name = ?"
                    f" AND {condition} ORDER BY {column}, key",
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
        column = _check_term(name, start, where)
        _check_term(name, end, where)
        after: tuple[Any, str] | None = None
        while True:
            params: list[Any] = [bucket_type, bucket, name, start, end]
            condition = ""
            if after is not None:
                condition = f" AND ({column}, key) > (?, ?)"
                params.extend(after)
            with self._lock:
                rows = (
                    self._connection()
                    .execute(
                        f"SELECT {column}, key FROM index_entries"
                        " WHERE bucket_type = ? AND bucket = ? AND name = ?"
                        f" AND {column} BETWEEN ? AND ?{condition}"
                        f" ORDER BY {column}, key LIMIT {_TERMS_PAGE}",
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


def _prepare(document: Document) -> tuple[list[tuple[str, list[IndexValue]]], str]:
    """Check a document before any write; its index entries and their stored text form."""
    where = f"{document.bucket_type}/{document.bucket}/{document.key}"
    _check_identity(document.bucket_type, document.bucket, document.key)
    if not isinstance(document.value, bytes):
        raise TargetError(
            f"document {where}: the value is {type(document.value).__name__}, not bytes",
            hint="this is a bug in the document builder worth reporting",
        )
    entries = _index_entries(document, where)
    return entries, _indexes_json(entries)


def _check_identity(bucket_type: str, bucket: str, key: str | None = None) -> None:
    """Riak refuses empty names, and SQLite cannot store text that is not valid Unicode."""
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


def _check_term(name: str, value: object, where: str) -> str:
    """The index_entries column for `name`, after checking the value has the name's type."""
    if name.endswith("_bin"):
        if isinstance(value, str):
            return "value_bin"
        raise TargetError(f"{where}: a _bin index takes text, not {type(value).__name__}")
    if name.endswith("_int"):
        if isinstance(value, int) and not isinstance(value, bool):
            if not _INT_MIN <= value <= _INT_MAX:
                raise TargetError(
                    f"{where}: an integer is beyond the 64-bit range the embedded target holds",
                    hint="use a _bin index for values this large",
                )
            return "value_int"
        raise TargetError(f"{where}: an _int index takes integers, not {type(value).__name__}")
    raise TargetError(
        f"{where}: index names end in _bin or _int", hint="rename the index in the mapping file"
    )


def _index_entries(document: Document, where: str) -> list[tuple[str, list[IndexValue]]]:
    """Distinct, sorted entries per index name, each checked against its name's type."""
    merged: dict[str, set[IndexValue]] = {}
    for name, values in document.indexes:
        for value in values:
            _check_term(name, value, f"document {where}, index {name}")
        merged.setdefault(name, set()).update(values)
    return [
        (name, sorted(merged[name], key=_term_order)) for name in sorted(merged) if merged[name]
    ]


def _term_order(value: IndexValue) -> tuple[int, str]:
    """Integers numerically, text by code point (one index holds only one of the two)."""
    return (value, "") if isinstance(value, int) else (0, value)


def _indexes_json(entries: list[tuple[str, list[IndexValue]]]) -> str:
    return json.dumps(dict(entries), sort_keys=True, ensure_ascii=False)


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
