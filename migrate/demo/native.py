"""The demo estate loaded into a PostgreSQL or MariaDB/MySQL server, with that engine's own types.

The same rows as the SQLite estate (one seed), in the types a DBA of that engine would have chosen
for the Oracle schema: NUMERIC/DECIMAL for NUMBER(p,s), integers for NUMBER(p), DATE for dates,
TIMESTAMP(6)/DATETIME(6) for TIMESTAMP, TIMESTAMPTZ (MariaDB: TIMESTAMP, an instant stored in
UTC) for TIMESTAMP WITH TIME ZONE, BYTEA/BINARY/BLOB for RAW and BLOB, TEXT/LONGTEXT for CLOB,
JSONB/JSON for the CLOB that holds JSON, BOOLEAN for the Y/N flag, DOUBLE for BINARY_DOUBLE.

An Oracle DATE that holds a time of day has no such type elsewhere: it becomes TIMESTAMP(0) /
DATETIME, as ora2pg and MariaDB's own Oracle mode make it. By its declared type such a column
would then be written with `T00:00:00` at midnight, where Oracle's DATE is written as a date;
the project says so in `[source.types]` (`ORACLE_DATES`), so its documents are the same.

Values go in as the driver's native Python types, converted from the generator's Oracle-shaped
values (text dates, binary floats for NUMBER(p,s), Y/N) exactly: decimals through their shortest
text, zoned timestamps through their offset.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL

from migrate.demo.estate import estate_rows
from migrate.demo.schema import INDEXES, TABLES
from migrate.errors import SourceError, UsageError

BATCH = 5_000

# Oracle DATE columns of the estate that hold a time of day (table, column).
ORACLE_DATES: tuple[tuple[str, str], ...] = (
    ("PATIENTS", "DATE_OF_DEATH"),
    ("SCR_ADVERSE_REACTIONS", "ONSET_AT"),
    ("DISPENSE_EVENTS", "DISPENSED_AT"),
)
_JSON_COLUMNS = {("ORGANISATIONS", "EXTRA_ATTRS")}
_FLAG_COLUMNS = {("ORG_ROLES", "IS_PRIMARY")}

_COLUMN = re.compile(r"^\s+(\w+) (.+?)(,)?$")
_NUMBER = re.compile(r"^NUMBER\((\d+)(?:,(\d+))?\)")

Convert = Callable[[Any], Any]


def _native_type(engine: str, table: str, column: str, declared: str) -> tuple[str, str]:
    """(the engine's type, how a value is converted) for one Oracle column declaration."""
    postgres = engine == "postgresql"
    rest = ""
    if declared.endswith(" NOT NULL"):
        declared, rest = declared[: -len(" NOT NULL")], " NOT NULL"
    number = _NUMBER.match(declared)
    if (table, column) in _JSON_COLUMNS:
        return ("JSONB" if postgres else "JSON") + rest, "text"
    if (table, column) in _FLAG_COLUMNS:
        return "BOOLEAN" + rest, "flag"
    if (table, column) in ORACLE_DATES:
        return ("TIMESTAMP(0)" if postgres else "DATETIME") + rest, "datetime"
    if number:
        precision, scale = int(number.group(1)), int(number.group(2) or 0)
        if scale:
            return f"{'NUMERIC' if postgres else 'DECIMAL'}({precision},{scale})" + rest, "decimal"
        return ("INTEGER" if precision <= 9 else "BIGINT") + rest, "plain"
    if declared.startswith(("VARCHAR2(", "NVARCHAR2(")):
        return "VARCHAR(" + declared.split("(", 1)[1] + rest, "plain"
    if declared.startswith("CHAR("):
        return declared + rest, "plain"
    if declared == "DATE":
        return "DATE" + rest, "date"
    if declared == "TIMESTAMP WITH TIME ZONE":
        return ("TIMESTAMPTZ" + rest if postgres else "TIMESTAMP(6)" + (rest or " NULL")), "zoned"
    if declared.startswith("TIMESTAMP"):
        return ("TIMESTAMP(6)" if postgres else "DATETIME(6)") + rest, "datetime"
    if declared.startswith("RAW("):
        return ("BYTEA" if postgres else "BINARY" + declared[3:]) + rest, "plain"
    if declared == "BLOB":
        return ("BYTEA" if postgres else "BLOB") + rest, "plain"
    if declared == "CLOB":
        return ("TEXT" if postgres else "LONGTEXT") + rest, "plain"
    if declared == "BINARY_DOUBLE":
        return ("DOUBLE PRECISION" if postgres else "DOUBLE") + rest, "plain"
    raise AssertionError(f"no native type for {table}.{column} {declared}")  # the schema's own


def native_ddl(engine: str) -> list[tuple[str, str, list[str]]]:
    """(table, CREATE TABLE, each column's conversion) for every demo table on `engine`."""
    tables = []
    for name, ddl in TABLES:
        lines = ddl.splitlines()
        out, conversions = [lines[0]], []
        for line in lines[1:]:
            match = _COLUMN.match(line)
            if match and not line.strip().startswith(("CONSTRAINT", "REFERENCES", ")")):
                column, declared, comma = match.group(1), match.group(2), match.group(3) or ""
                native, conversion = _native_type(engine, name, column, declared)
                out.append(f"    {column} {native}{comma}")
                conversions.append(conversion)
            else:
                out.append(line)
        text = "\n".join(out)
        if engine != "postgresql":
            text += " DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"  # Oracle compares bytes too
        tables.append((name, text, conversions))
    return tables


def _date(value: Any) -> Any:
    moment = dt.datetime.fromisoformat(value)
    if moment.time() != dt.time():
        raise AssertionError(f"a DATE column holds a time of day: {value}")
    return moment.date()


def _zoned(utc_naive: bool) -> Convert:
    def convert(value: Any) -> Any:
        moment = dt.datetime.fromisoformat(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)  # the value rules read it as UTC
        moment = moment.astimezone(dt.UTC)
        return moment.replace(tzinfo=None) if utc_naive else moment

    return convert


def _converters(engine: str) -> dict[str, Convert]:
    return {
        "plain": lambda v: v,
        "text": lambda v: v,
        "flag": lambda v: v == "Y",
        "date": _date,
        "datetime": dt.datetime.fromisoformat,
        "zoned": _zoned(utc_naive=engine != "postgresql"),
        "decimal": lambda v: Decimal(repr(v)),  # the shortest text of the float SQLite keeps
    }


def _rows(rows: Iterable[tuple[Any, ...]], convert: list[Convert]) -> list[tuple[Any, ...]]:
    return [
        tuple(None if v is None else c(v) for v, c in zip(row, convert, strict=True))
        for row in rows
    ]


def load_server(
    url: URL,
    *,
    patients: int,
    seed: int,
    progress: Callable[[str], None],
    display_url: str,
) -> dict[str, int]:
    """Create the demo tables in the (empty) database at `url` and load the estate; returns the
    row count of every table."""
    engine = sa.create_engine(url)
    name = engine.dialect.name
    if name not in ("postgresql", "mysql", "mariadb"):
        engine.dispose()
        raise UsageError(
            f"`migrate demo --source` loads PostgreSQL or MariaDB/MySQL, not {name}",
            hint="give a postgresql+psycopg:// or mysql+pymysql:// URL, or no --source for "
            "a SQLite file",
        )
    kind = "postgresql" if name == "postgresql" else "mysql"
    try:
        return _load(engine, kind, patients, seed, progress)
    except sa.exc.DBAPIError as exc:
        detail = (str(exc.orig).strip().splitlines() or [type(exc.orig).__name__])[0][:300]
        raise SourceError(
            f"could not load the demo estate into {display_url}: {detail}",
            hint="give an empty database the user may create tables in, and check the URL "
            "and the password variable",
        ) from exc
    finally:
        engine.dispose()


def _load(
    engine: sa.Engine, kind: str, patients: int, seed: int, say: Callable[[str], None]
) -> dict[str, int]:
    tables = native_ddl(kind)
    with engine.begin() as connection:
        existing = {t.casefold() for t in sa.inspect(connection).get_table_names()}
        clash = [t for t, _, _ in tables if t.casefold() in existing]
        if clash:
            raise UsageError(
                f"the database already holds {', '.join(clash)}",
                hint="give `migrate demo --source` an empty database",
            )
        if kind == "postgresql":
            connection.exec_driver_sql("SET TIME ZONE 'UTC'")
        else:
            connection.exec_driver_sql("SET time_zone = '+00:00'")
        for _, ddl, _ in tables:
            connection.exec_driver_sql(ddl)
    conversions = {t: [_converters(kind)[c] for c in cs] for t, _, cs in tables}
    counts: dict[str, int] = {}
    marker = "%s"
    for table, rows in estate_rows(seed, patients):
        with engine.begin() as connection:
            if kind == "mysql":
                connection.exec_driver_sql("SET time_zone = '+00:00'")
            converted = _rows(rows, conversions[table])
            if converted:
                marks = ", ".join([marker] * len(converted[0]))
                sql = f"INSERT INTO {table} VALUES ({marks})"
                cursor = connection.connection.cursor()
                try:
                    for start in range(0, len(converted), BATCH):
                        cursor.executemany(sql, converted[start : start + BATCH])
                finally:
                    cursor.close()
        counts[table] = len(rows)
        say(f"{table}: {len(rows):,} rows")
    say("indexing foreign-key columns")
    with engine.begin() as connection:
        for statement in INDEXES:
            connection.exec_driver_sql(statement)
        if kind == "postgresql":
            for table, _, _ in tables:
                connection.exec_driver_sql(f"ANALYZE {table}")
    return counts
