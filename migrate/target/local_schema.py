"""The embedded target's file layout, its version, and the upgrade of stores written earlier.

Layout 1 keeps each object in a rowid table (a ~1 KB document fits in its page, where a WITHOUT
ROWID row over ~1,000 bytes spills into an overflow page of its own and triples the file) and
each index entry in one WITHOUT ROWID b-tree keyed by (index, term, key), the index being a small
integer for (bucket_type, bucket, name): one compact b-tree to update per entry instead of a table
and three indexes. An object's entries are found from its `indexes` column (compact JSON, names
in order), so no index by key is needed to replace or delete them.
"""

from __future__ import annotations

import json
import sqlite3

import msgspec

from migrate.errors import TargetError

VERSION = 1

_LAYOUT = (
    """CREATE TABLE objects (
        id INTEGER PRIMARY KEY,
        bucket_type TEXT NOT NULL,
        bucket TEXT NOT NULL,
        key TEXT NOT NULL,
        checksum TEXT NOT NULL,
        indexes TEXT NOT NULL,
        meta TEXT NOT NULL,
        value BLOB NOT NULL,
        UNIQUE (bucket_type, bucket, key)
    )""",
    """CREATE TABLE index_names (
        id INTEGER PRIMARY KEY,
        bucket_type TEXT NOT NULL,
        bucket TEXT NOT NULL,
        name TEXT NOT NULL,
        UNIQUE (bucket_type, bucket, name)
    )""",
    # index_id is an index_names id. `term` has no declared type, so it keeps what it is given:
    # text for _bin names, integers for _int names (a declared type such as ANY would turn the
    # text "0123" into a number).
    """CREATE TABLE index_entries (
        index_id INTEGER NOT NULL,
        term NOT NULL,
        key TEXT NOT NULL,
        PRIMARY KEY (index_id, term, key)
    ) WITHOUT ROWID""",
)

# Layout 0 (user_version 0): objects WITHOUT ROWID with indexes as spaced JSON; entries in a rowid
# table with value_bin/value_int columns and three indexes.
_UPGRADE_FROM_0 = (
    "ALTER TABLE objects RENAME TO objects_layout0",
    "ALTER TABLE index_entries RENAME TO index_entries_layout0",
    *_LAYOUT,
    "INSERT INTO objects (bucket_type, bucket, key, checksum, indexes, meta, value)"
    " SELECT bucket_type, bucket, key, checksum, migrate_compact_json(indexes), meta, value"
    " FROM objects_layout0 ORDER BY bucket_type, bucket, key",
    "INSERT INTO index_names (bucket_type, bucket, name)"
    " SELECT DISTINCT bucket_type, bucket, name FROM index_entries_layout0",
    "INSERT OR IGNORE INTO index_entries (index_id, term, key)"
    " SELECT n.id, coalesce(e.value_bin, e.value_int), e.key FROM index_entries_layout0 AS e"
    " JOIN index_names AS n USING (bucket_type, bucket, name)",
    "DROP TABLE objects_layout0",
    "DROP TABLE index_entries_layout0",
)


def compact_json(text: str) -> str:
    """The stored form of an object's indexes: compact JSON, in the order given."""
    return msgspec.json.encode(json.loads(text)).decode()


def layout_version(conn: sqlite3.Connection) -> int | None:
    """The store's layout version, or None for a file that holds no store yet."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version:
        return int(version)
    found = conn.execute(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'objects'"
    ).fetchone()
    return 0 if found[0] else None


def ensure_layout(conn: sqlite3.Connection, display_url: str) -> None:
    """Create the layout in a new store, or upgrade an older one in place, in one transaction
    (checked again under the write lock: another process may have done it meanwhile)."""
    if layout_version(conn) == VERSION:
        return
    conn.create_function("migrate_compact_json", 1, compact_json, deterministic=True)
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = layout_version(conn)
        check_readable(version, display_url)
        if version is None:
            statements: tuple[str, ...] = _LAYOUT
        elif version == 0:
            statements = _UPGRADE_FROM_0
        else:
            statements = ()
        for statement in statements:
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def check_readable(version: int | None, display_url: str) -> None:
    """Refuse a store written by a newer version of the toolkit (its layout is unknown here)."""
    if version is not None and version > VERSION:
        raise TargetError(
            f"the embedded target {display_url} has layout version {version}; this version of "
            f"migrate reads layouts up to {VERSION}",
            hint="upgrade migrate, or point [target] url at another file",
        )


def check_current(version: int | None, display_url: str) -> None:
    """A read-only open cannot upgrade: an older layout must be upgraded by a writer first."""
    check_readable(version, display_url)
    if version == 0:
        raise TargetError(
            f"the embedded target {display_url} was written by an earlier version of migrate "
            "and must be upgraded before it can be read",
            hint="any command that writes to it upgrades it in place (`migrate run` does, and "
            "resumes where it was); then read it again",
        )
