"""Change capture: which columns of which tables a service's capture records, the objects that
record them (a change-log table and triggers, per engine), and reading the log back.

A change to ANY row a mapping reads (the root, an embedded child at any depth, a lookup) must mark
the roots whose documents it touches. So, per table, the log keeps the values of the columns
that lead from a row to its roots: the root table's primary key, and for a table read as an
embed or lookup, the columns that link it to its parent node. Old and new values are both kept,
so a child moved from one parent to another marks both. Delta then finds the roots set-based,
through the mapping's join chain (`Queries.dirty_roots`), never row by row.

Where the log starts and how it is read without losing a change depends on the engine:

- SQLite runs one write transaction at a time, so a change's sequence number is also its commit
  order: a position is the highest sequence number a snapshot saw.
- PostgreSQL transactions commit out of the order they took sequence numbers in, so a position
  is a snapshot (`pg_current_snapshot()`, `xmin:xmax:xip`): the next read takes every logged
  change whose transaction that snapshot did not see, whatever its number.
- Oracle: the log table keeps row dependencies, so `ORA_ROWSCN` is each change's commit SCN, and
  a position is an SCN (compiled and checked here; no Oracle server runs in this project's tests).
- MySQL/MariaDB: not built (its log would need the same care, without snapshots to lean on).

Watermark mode (`WatermarkCapture`, any engine) installs nothing: the plan names each table's
last-modified column, and `migrate.watermark` finds what changed by comparing rows.

Values are logged as text the engine can read back exactly: SQLite's `quote()` literals,
PostgreSQL's text form of each value (bound back untyped, so the server casts it to the column's
type), Oracle's JSON.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from migrate.errors import ConfigError, SourceError
from migrate.schema import TableInfo, ValueKind
from migrate.spec import ExtractSpec

MODES = ("triggers", "watermark", "scn")
# What a last-modified column may hold: a time, or a number or text that grows with each change.
_WATERMARK_KINDS = frozenset(ValueKind) - {ValueKind.BOOLEAN, ValueKind.BINARY, ValueKind.JSON}


@dataclass(frozen=True, slots=True)
class CaptureTable:
    """One table the capture records, and the columns logged for it, in order; in watermark
    mode, its last-modified column."""

    name: str
    columns: tuple[str, ...]
    watermark: str | None = None


@dataclass(frozen=True, slots=True)
class CapturePlan:
    """What a service's capture records. Its fingerprint changes when the mapping reads other
    tables or links them otherwise: the installed capture is then out of date."""

    service: str
    mode: str
    tables: tuple[CaptureTable, ...]

    def fingerprint(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    def to_json(self) -> str:
        return json.dumps(
            {
                "service": self.service,
                "mode": self.mode,
                "tables": [
                    [t.name, list(t.columns), *([t.watermark] if t.watermark else [])]
                    for t in self.tables
                ],
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> CapturePlan:
        data = json.loads(text)
        tables = tuple(
            CaptureTable(item[0], tuple(item[1]), item[2] if len(item) > 2 else None)
            for item in data["tables"]
        )
        return cls(data["service"], data["mode"], tables)

    def table(self, name: str) -> CaptureTable | None:
        for table in self.tables:
            if table.name.casefold() == name.casefold():
                return table
        return None


def capture_plan(
    service: str,
    mode: str,
    specs: Sequence[ExtractSpec],
    tables: Mapping[str, TableInfo],
    watermark: Callable[[str], str | None] = lambda _table: None,
) -> CapturePlan:
    """The columns to log per table: each root table's key, each other node's link columns; in
    watermark mode, each table's last-modified column (`watermark(table)`, which must name a
    column of every table the mapping reads)."""
    wanted: dict[str, list[str]] = {}
    names: dict[str, str] = {}

    def add(table: str, columns: Iterable[str]) -> None:
        info = _info(tables, table)
        names[info.name.casefold()] = info.name
        found = wanted.setdefault(info.name.casefold(), [])
        for column in columns:
            exact = info.column(column)
            name = exact.name if exact is not None else column
            if name not in found:
                found.append(name)

    for spec in specs:
        add(spec.root_table, spec.primary_key)
        for node in spec.nodes[1:]:
            add(node.table, (child for child, _parent in node.link))
    ordered = sorted(wanted)
    marks = {n: _watermark_of(service, tables, names[n], watermark) for n in ordered}
    if mode == "watermark":
        missing = [names[n] for n in ordered if marks[n] is None]
        if missing:
            raise ConfigError(
                f'{service}: capture = "watermark" names no last-modified column for '
                f"{', '.join(missing)}",
                hint=f"add them to [services.{service}] watermark in migrate.toml (a table of "
                'TABLE = "COLUMN" pairs, or one column name every table has)',
            )
    return CapturePlan(
        service,
        mode,
        tuple(
            CaptureTable(names[n], tuple(wanted[n]), marks[n] if mode == "watermark" else None)
            for n in ordered
        ),
    )


def _watermark_of(
    service: str,
    tables: Mapping[str, TableInfo],
    table: str,
    watermark: Callable[[str], str | None],
) -> str | None:
    """The table's last-modified column as the schema names it, or None when none is set."""
    column = watermark(table)
    if column is None:
        return None
    found = _info(tables, table).column(column)
    if found is None:
        raise ConfigError(
            f"{service}: table {table} has no column {column} (its watermark)",
            hint=f"name the table's last-modified column in [services.{service}] watermark",
        )
    if found.type.kind not in _WATERMARK_KINDS:
        raise ConfigError(
            f"{service}: {table}.{found.name} is {found.type.kind.value}, not a date, time or "
            "number, so it cannot say when a row last changed",
            hint=f"name the table's last-modified column in [services.{service}] watermark",
        )
    return found.name


def _info(tables: Mapping[str, TableInfo], name: str) -> TableInfo:
    for key, info in tables.items():
        if key.casefold() == name.casefold():
            return info
    raise SourceError(f"table {name} is not in the source schema", hint="run `migrate check`")


@dataclass(frozen=True, slots=True)
class Change:
    """One logged row change: its table, `I`/`U`/`D`, and the logged columns' values before and
    after (None for the side an insert or delete lacks)."""

    table: str
    op: str
    old: tuple[Any, ...] | None
    new: tuple[Any, ...] | None


@dataclass(frozen=True, slots=True)
class Pending:
    """Changes logged after a position: how many, and when the oldest was logged."""

    count: int
    oldest: dt.datetime | None


def object_suffix(service: str) -> str:
    """The service's name as it appears in the names of capture objects."""
    return re.sub(r"[^A-Za-z0-9]", "_", service).upper()


def table_tag(table: str) -> str:
    """A short, stable tag for a table in trigger names (engines limit identifier lengths)."""
    return hashlib.sha256(table.encode()).hexdigest()[:8].upper()


class CaptureEngine:
    """How one engine records and reads changes (see the module's notes). The statements are
    plain SQL text: DDL is not something SQLAlchemy builds portably."""

    supported = True

    def __init__(self, plan: CapturePlan, *, schema: str | None = None) -> None:
        self.plan = plan
        self.schema = schema
        self.suffix = object_suffix(plan.service)

    # names
    def log_name(self) -> str:
        return f"MIGRATE_LOG_{self.suffix}"

    def trigger_names(self, table: CaptureTable) -> list[str]:
        base = f"MIGRATE_{self.suffix}_{table_tag(table.name)}"
        return [f"{base}_I", f"{base}_U", f"{base}_D"]

    def quote(self, name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    def qualified(self, name: str) -> str:
        quoted = self.quote(name)
        return f"{self.quote(self.schema)}.{quoted}" if self.schema else quoted

    # what subclasses give
    def install(self) -> list[str]:
        raise NotImplementedError

    def uninstall(self) -> list[str]:
        raise NotImplementedError

    def log_exists(self) -> tuple[str, dict[str, Any]]:
        """A statement returning a row when the log table exists."""
        raise NotImplementedError

    def position(self) -> str:
        """A statement whose one value, under a snapshot, is where the log stands."""
        raise NotImplementedError

    def read(self, since: str) -> tuple[str, Any]:
        """The statement and parameters of every change after position `since`."""
        raise NotImplementedError

    def pending(self, since: str) -> tuple[str, Any]:
        """Count and oldest time of the changes after `since`."""
        raise NotImplementedError

    def position_of(self, value: Any) -> str:
        raise NotImplementedError

    def decode(self, text: str | None) -> tuple[Any, ...] | None:
        raise NotImplementedError

    def change(self, row: Sequence[Any]) -> Change:
        _seq, table, op, old, new = row[:5]
        return Change(str(table), str(op), self.decode(old), self.decode(new))


class SQLiteCapture(CaptureEngine):
    """SQLite: an AUTOINCREMENT sequence (never reused), `quote()` literals in a JSON array."""

    def install(self) -> list[str]:
        log = self.quote(self.log_name())
        statements = [
            f"CREATE TABLE {log} (SEQ INTEGER PRIMARY KEY AUTOINCREMENT, TABLE_NAME TEXT NOT NULL,"
            " OP TEXT NOT NULL, OLD_KEYS TEXT, NEW_KEYS TEXT, AT TEXT NOT NULL DEFAULT"
            " (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))"
        ]
        for table in self.plan.tables:
            insert, update, delete = self.trigger_names(table)
            name = self.quote(table.name)
            label = "'" + table.name.replace("'", "''") + "'"

            def keys(side: str, table: CaptureTable = table) -> str:
                values = ", ".join(f"quote({side}.{self.quote(c)})" for c in table.columns)
                return f"json_array({values})"

            statements += [
                f"CREATE TRIGGER {self.quote(insert)} AFTER INSERT ON {name} BEGIN INSERT INTO "
                f"{log} (TABLE_NAME, OP, NEW_KEYS) VALUES ({label}, 'I', {keys('NEW')}); END",
                f"CREATE TRIGGER {self.quote(update)} AFTER UPDATE ON {name} BEGIN INSERT INTO "
                f"{log} (TABLE_NAME, OP, OLD_KEYS, NEW_KEYS) VALUES ({label}, 'U', "
                f"{keys('OLD')}, {keys('NEW')}); END",
                f"CREATE TRIGGER {self.quote(delete)} AFTER DELETE ON {name} BEGIN INSERT INTO "
                f"{log} (TABLE_NAME, OP, OLD_KEYS) VALUES ({label}, 'D', {keys('OLD')}); END",
            ]
        return statements

    def uninstall(self) -> list[str]:
        statements = [
            f"DROP TRIGGER IF EXISTS {self.quote(name)}"
            for table in self.plan.tables
            for name in self.trigger_names(table)
        ]
        return [*statements, f"DROP TABLE IF EXISTS {self.quote(self.log_name())}"]

    def log_exists(self) -> tuple[str, dict[str, Any]]:
        return (
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :name",
            {"name": self.log_name()},
        )

    def position(self) -> str:
        return f"SELECT coalesce(max(SEQ), 0) FROM {self.quote(self.log_name())}"

    def position_of(self, value: Any) -> str:
        return f"seq:{int(value)}"

    def read(self, since: str) -> tuple[str, Any]:
        return (
            f"SELECT SEQ, TABLE_NAME, OP, OLD_KEYS, NEW_KEYS FROM {self.quote(self.log_name())}"
            " WHERE SEQ > :since ORDER BY SEQ",
            {"since": _seq(since)},
        )

    def pending(self, since: str) -> tuple[str, Any]:
        return (
            f"SELECT count(*), min(AT) FROM {self.quote(self.log_name())} WHERE SEQ > :since",
            {"since": _seq(since)},
        )

    def decode(self, text: str | None) -> tuple[Any, ...] | None:
        if text is None:
            return None
        return tuple(_sqlite_literal(item) for item in json.loads(text))


class PostgreSQLCapture(CaptureEngine):
    """PostgreSQL: each change with its transaction id; positions are snapshots."""

    def log_name(self) -> str:
        return super().log_name().lower()

    def trigger_names(self, table: CaptureTable) -> list[str]:
        base = f"migrate_{self.suffix.lower()}_{table_tag(table.name).lower()}"
        return [base]  # one trigger (and function) for the three operations

    def install(self) -> list[str]:
        log = self.qualified(self.log_name())
        statements = [
            f"CREATE TABLE {log} (seq bigserial PRIMARY KEY, table_name text NOT NULL,"
            " op char(1) NOT NULL, old_keys text, new_keys text,"
            " tx xid8 NOT NULL DEFAULT pg_current_xact_id(),"
            " at timestamptz NOT NULL DEFAULT clock_timestamp())",
            f"CREATE INDEX {self.quote(self.log_name() + '_tx')} ON {log} (tx)",
        ]
        for table in self.plan.tables:
            (name,) = self.trigger_names(table)
            function = self.qualified(name)

            def keys(side: str, table: CaptureTable = table) -> str:
                values = ", ".join(f"{side}.{self.quote(c)}::text" for c in table.columns)
                return f"json_build_array({values})::text"

            label = "'" + table.name.replace("'", "''") + "'"
            statements += [
                f"CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $mig$ BEGIN "
                f"IF TG_OP = 'INSERT' THEN INSERT INTO {log} (table_name, op, new_keys) VALUES "
                f"({label}, 'I', {keys('NEW')}); "
                f"ELSIF TG_OP = 'UPDATE' THEN INSERT INTO {log} (table_name, op, old_keys, "
                f"new_keys) VALUES ({label}, 'U', {keys('OLD')}, {keys('NEW')}); "
                f"ELSE INSERT INTO {log} (table_name, op, old_keys) VALUES ({label}, 'D', "
                f"{keys('OLD')}); END IF; RETURN NULL; END $mig$",
                f"CREATE TRIGGER {self.quote(name)} AFTER INSERT OR UPDATE OR DELETE ON "
                f"{self.qualified(table.name)} FOR EACH ROW EXECUTE FUNCTION {function}()",
            ]
        return statements

    def uninstall(self) -> list[str]:
        statements = []
        for table in self.plan.tables:
            (name,) = self.trigger_names(table)
            statements += [
                f"DROP TRIGGER IF EXISTS {self.quote(name)} ON {self.qualified(table.name)}",
                f"DROP FUNCTION IF EXISTS {self.qualified(name)}()",
            ]
        return [*statements, f"DROP TABLE IF EXISTS {self.qualified(self.log_name())}"]

    def log_exists(self) -> tuple[str, dict[str, Any]]:
        return (
            "SELECT 1 FROM pg_catalog.pg_tables WHERE tablename = %(name)s"
            + (" AND schemaname = %(schema)s" if self.schema else ""),
            {"name": self.log_name(), "schema": self.schema},
        )

    def position(self) -> str:
        return "SELECT pg_current_snapshot()::text"

    def position_of(self, value: Any) -> str:
        return f"pg:{value}"

    def read(self, since: str) -> tuple[str, Any]:
        return (
            "SELECT seq, table_name, op, old_keys, new_keys FROM "
            f"{self.qualified(self.log_name())} WHERE {_pg_after('%(since)s')} ORDER BY seq",
            {"since": _snapshot(since)},
        )

    def pending(self, since: str) -> tuple[str, Any]:
        return (
            f"SELECT count(*), min(at) FROM {self.qualified(self.log_name())} WHERE "
            f"{_pg_after('%(since)s')}",
            {"since": _snapshot(since)},
        )

    def decode(self, text: str | None) -> tuple[Any, ...] | None:
        if text is None:
            return None
        return tuple(json.loads(text))


class OracleCapture(CaptureEngine):
    """Oracle: the log table keeps ROWDEPENDENCIES, so ORA_ROWSCN is each change's commit SCN;
    positions are SCNs. Statements are checked against Oracle's rules without a server."""

    def install(self) -> list[str]:
        log = self.qualified(self.log_name())
        statements = [
            f"CREATE TABLE {log} (SEQ NUMBER GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
            " TABLE_NAME VARCHAR2(128) NOT NULL, OP CHAR(1) NOT NULL, OLD_KEYS CLOB,"
            " NEW_KEYS CLOB, AT TIMESTAMP WITH TIME ZONE DEFAULT SYSTIMESTAMP NOT NULL)"
            " ROWDEPENDENCIES"
        ]
        for table in self.plan.tables:
            insert, _update, _delete = self.trigger_names(table)
            name = insert[:-2]

            def keys(side: str, table: CaptureTable = table) -> str:
                values = ", ".join(f":{side}.{self.quote(c)}" for c in table.columns)
                return f"JSON_ARRAY({values} NULL ON NULL)"

            label = "'" + table.name.replace("'", "''") + "'"
            statements.append(
                f"CREATE OR REPLACE TRIGGER {self.qualified(name)} AFTER INSERT OR UPDATE OR "
                f"DELETE ON {self.qualified(table.name)} FOR EACH ROW BEGIN "
                f"IF INSERTING THEN INSERT INTO {log} (TABLE_NAME, OP, NEW_KEYS) VALUES "
                f"({label}, 'I', {keys('NEW')}); "
                f"ELSIF UPDATING THEN INSERT INTO {log} (TABLE_NAME, OP, OLD_KEYS, NEW_KEYS) "
                f"VALUES ({label}, 'U', {keys('OLD')}, {keys('NEW')}); "
                f"ELSE INSERT INTO {log} (TABLE_NAME, OP, OLD_KEYS) VALUES ({label}, 'D', "
                f"{keys('OLD')}); END IF; END;"
            )
        return statements

    def uninstall(self) -> list[str]:
        statements = [
            f"DROP TRIGGER {self.qualified(self.trigger_names(table)[0][:-2])}"
            for table in self.plan.tables
        ]
        return [*statements, f"DROP TABLE {self.qualified(self.log_name())} PURGE"]

    def log_exists(self) -> tuple[str, dict[str, Any]]:
        return ("SELECT 1 FROM all_tables WHERE table_name = :name", {"name": self.log_name()})

    def position(self) -> str:
        return "SELECT current_scn FROM v$database"

    def position_of(self, value: Any) -> str:
        return f"scn:{int(value)}"

    def read(self, since: str) -> tuple[str, Any]:
        return (
            f"SELECT SEQ, TABLE_NAME, OP, OLD_KEYS, NEW_KEYS FROM {self.qualified(self.log_name())}"
            " WHERE ORA_ROWSCN > :since ORDER BY SEQ",
            {"since": _scn(since)},
        )

    def pending(self, since: str) -> tuple[str, Any]:
        return (
            f"SELECT count(*), min(AT) FROM {self.qualified(self.log_name())}"
            " WHERE ORA_ROWSCN > :since",
            {"since": _scn(since)},
        )

    def decode(self, text: str | None) -> tuple[Any, ...] | None:
        if text is None:
            return None
        return tuple(json.loads(str(text)))


class WatermarkCapture(CaptureEngine):
    """Watermark mode, on any engine: nothing is installed in the source. A position is, per
    table, its row count and newest last-modified value (`Snapshot.capture_position`), which
    is what `capture status` and the cutover's gates compare; what changed is found by
    `migrate.watermark`, comparing each root's rows with what the last delta (or the run) saw,
    never by the position alone."""

    def install(self) -> list[str]:
        return []

    def uninstall(self) -> list[str]:
        return []


class UnsupportedCapture(CaptureEngine):
    supported = False


_ENGINES: dict[str, type[CaptureEngine]] = {
    "sqlite": SQLiteCapture,
    "postgresql": PostgreSQLCapture,
    "oracle": OracleCapture,
}


def capture_engine(backend: str, plan: CapturePlan, *, schema: str | None) -> CaptureEngine:
    """The engine's capture, or a ConfigError (exit 2) saying what to use instead."""
    if plan.mode == "watermark":
        return WatermarkCapture(plan, schema=schema)
    if plan.mode != "triggers":
        raise ConfigError(
            f'capture = {plan.mode!r} is not built; use capture = "triggers" (Oracle '
            'included) or "watermark"',
            hint='set [services.NAME] capture = "triggers" in migrate.toml',
        )
    found = _ENGINES.get(backend)
    if found is None:
        raise ConfigError(
            f"change capture by triggers is not built for {backend} sources",
            hint="it is built for SQLite, PostgreSQL and Oracle; without capture, migrate "
            "run --fresh reloads a service from a new snapshot",
        )
    return found(plan, schema=schema)


# -- positions and values ---------------------------------------------------------------------


def _seq(position: str) -> int:
    kind, _, value = position.partition(":")
    if kind != "seq":
        raise SourceError(f"not a SQLite capture position: {position!r}")
    return int(value)


def _scn(position: str) -> int:
    kind, _, value = position.partition(":")
    if kind != "scn":
        raise SourceError(f"not an Oracle capture position: {position!r}")
    return int(value)


_PG_SNAPSHOT = re.compile(r"[0-9]+:[0-9]+:[0-9,]*")


def _snapshot(position: str) -> str:
    kind, _, value = position.partition(":")
    if kind != "pg" or not _PG_SNAPSHOT.fullmatch(value):
        raise SourceError(f"not a PostgreSQL capture position: {position!r}")
    return value


def _pg_after(param: str) -> str:
    """Changes whose transaction the position's snapshot did not see (committed since, or in
    flight then): exactly those, whatever order their sequence numbers came in."""
    snapshot = f"CAST({param} AS pg_snapshot)"
    return f"tx >= pg_snapshot_xmin({snapshot}) AND NOT pg_visible_in_snapshot(tx, {snapshot})"


def _sqlite_literal(text: Any) -> Any:
    """A value from SQLite's `quote()`: NULL, an integer, a real, 'text' or X'hex'."""
    if text is None or text == "NULL":
        return None
    if not isinstance(text, str):
        return text
    if text.startswith("'") and text.endswith("'"):
        return text[1:-1].replace("''", "'")
    if text[:2] in ("X'", "x'") and text.endswith("'"):
        return bytes.fromhex(text[2:-1])
    try:
        return int(text)
    except ValueError:
        return float(text)


__all__ = [
    "MODES",
    "CaptureEngine",
    "CapturePlan",
    "CaptureTable",
    "Change",
    "Pending",
    "WatermarkCapture",
    "capture_engine",
    "capture_plan",
]
