"""Extract rate (issue 5, goal 1): the toolkit's extraction of the demo's pds tables (PATIENTS and
its child tables) against the raw rate of the same tables in the same run.

- SQLite: the `sqlite3` CLI (`sqlite3 -batch -noheader legacy.db "SELECT * FROM T" > /dev/null`,
  one process per table, whole-process wall time) against `Source(url).snapshot()` -> plan_chunks +
  extract of every chunk of the pds `patient` document type (engine, reflection and snapshot
  included). Without the CLI the baseline is Python's sqlite3 cursor, and the figure says so.
- PostgreSQL (when its binaries are installed): a throwaway server holding the same tables, raw
  `COPY (SELECT * FROM t) TO STDOUT (FORMAT binary)` through psycopg against the same extract.
- MariaDB (when its binaries are installed): the demo loaded with `migrate demo --source` into a
  throwaway server, `mariadb --quick --batch` against the same extract (`extract_mariadb`).

Rates are rows/s: the toolkit's rows are every row returned over all node tables (lookups of
ORGANISATIONS included), the baseline's every row of the five tables.

Each source gets two figures: one connection reading every chunk (the extract alone), and the
chunks read as `migrate run` and `migrate reconcile` read them, by one worker process per core
under the snapshot they share (`migrate.source.shared`; pool start-up included). The workers
return row counts only: in a run each stages and builds the rows it read.

Every figure is measured with cyclic garbage collection as the toolkit's own processes have it
(`as_in_the_toolkit`): the console script that reads on one connection, and the workers.

Beside them, with no goal, the ceilings the goal meets before any of the toolkit's own work: the
toolkit's chunk statements (the SQL it sends for every node of every chunk, compiled beforehand)
run by the baseline's own reader, which discards the rows: through the `sqlite3` CLI and
Python's sqlite3 cursor (`fetchall`), and as PostgreSQL COPY binary. The baseline reads each whole
table in one scan; chunks are read in key order, children through their foreign-key index and
lookups once per chunk, which costs the database more than the scan.
"""

from __future__ import annotations

import importlib
import itertools
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks import extract_mariadb
from benchmarks.harness import Figure, Goal, Settings, as_in_the_toolkit, repeat, skipped
from benchmarks.sink import TESTS_DIR
from migrate.demo import create_demo
from migrate.demo.schema import INDEXES, TABLES
from migrate.errors import MigrateError
from migrate.processes import worker_pool
from migrate.project import Project
from migrate.source import Source
from migrate.source.shared import ChunkRead, read_chunk, share_view
from migrate.spec import ExtractSpec

CASE = "extract"
PDS_TABLES = (
    "PATIENTS",
    "PATIENT_PHARMACIES",
    "PATIENT_NAMES",
    "PATIENT_ADDRESSES",
    "PATIENT_TELECOMS",
)
PG_TABLES = ("ORGANISATIONS", *PDS_TABLES)  # the lookups read ORGANISATIONS too
CLI = "sqlite3 CLI"
CURSOR = "Python sqlite3 cursor (no sqlite3 CLI)"
COPY = "COPY TO STDOUT binary (psycopg)"
GOAL = Goal(">=", 0.6, "ratio")
CLI_TIMEOUT = 120.0
WORKERS = os.cpu_count() or 1  # as `migrate run` and `reconcile` use by default


class BenchError(MigrateError):
    """A baseline read went wrong (the figure would not mean what it says)."""


def _toolkit_rate(url: str, spec: ExtractSpec, chunk_size: int) -> float:
    """rows/s of the toolkit's extraction, from a fresh Source to the last chunk's tables."""
    started = time.perf_counter()
    rows = _toolkit_rows(url, spec, chunk_size)
    return rows / (time.perf_counter() - started)


def _toolkit_rows(url: str, spec: ExtractSpec, chunk_size: int) -> int:
    """Every chunk extracted from a fresh Source: the rows of all node tables (lookups too)."""
    source = Source(url)
    try:
        with source.snapshot() as snapshot:
            rows = 0
            for chunk in snapshot.plan_chunks(spec, chunk_size):
                rows += sum(t.num_rows for t in snapshot.extract(spec, chunk).values())
    finally:
        source.close()
    return rows


def _count_chunk(read: ChunkRead, spec: ExtractSpec) -> int:
    return sum(t.num_rows for t in read_chunk(read, spec).values())


def _parallel_rate(url: str, spec: ExtractSpec, chunk_size: int) -> float:
    """rows/s of the chunks read by one worker process per core under one shared snapshot."""
    started = time.perf_counter()
    source = Source(url)
    try:
        with (
            source.snapshot() as snapshot,
            worker_pool(WORKERS) as pool,
        ):
            view = share_view(source, snapshot, [spec])
            if view is None:
                raise BenchError(f"{source.display_url} cannot share its snapshot")
            chunks = snapshot.plan_chunks(spec, chunk_size)
            reads = [ChunkRead(view, c.index, *c.bounds_json()) for c in chunks]
            rows = sum(pool.map(partial(_count_chunk, spec=spec), reads))
    finally:
        source.close()
    return rows / (time.perf_counter() - started)


def _figures(
    title: str,
    fast: list[float],
    *,
    parallel: list[float],
    baseline: str,
    raw: list[float],
    note: str,
) -> list[Figure]:
    """The one-connection and the one-worker-per-core figure, against the same baseline."""
    return [
        Figure(CASE, f"{title}, {how}", "rows/s", tuple(samples), baseline, tuple(raw), GOAL, note)
        for how, samples in (("one connection", fast), (f"{WORKERS} workers", parallel))
    ]


def _counts(database: Path) -> dict[str, int]:
    with sqlite3.connect(database) as db:
        return {t: int(db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in PDS_TABLES}


def _cli_rate(cli: str, database: Path, rows: int) -> float:
    started = time.perf_counter()
    for table in PDS_TABLES:
        subprocess.run(
            [cli, "-batch", "-noheader", str(database), f"SELECT * FROM {table}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            check=True,
            timeout=CLI_TIMEOUT,
        )
    return rows / (time.perf_counter() - started)


def _cursor_rate(database: Path, rows: int) -> float:
    started = time.perf_counter()
    with sqlite3.connect(database) as db:
        for table in PDS_TABLES:
            for _ in db.execute(f"SELECT * FROM {table}"):
                pass
    return rows / (time.perf_counter() - started)


def _chunk_statements(url: str, spec: ExtractSpec, chunk_size: int, *, copy: bool) -> list[Any]:
    """(sql, params) of every statement the toolkit sends to extract every chunk: for the
    cursor (`rows`) or for PostgreSQL's COPY (`copy_rows`)."""
    source = Source(url)
    try:
        with source.snapshot() as snapshot:
            queries = snapshot._queries(spec)
            compile_one = queries.copy_rows if copy else queries.rows
            chunks = snapshot.plan_chunks(spec, chunk_size)
            return [compile_one(node, chunk) for chunk in chunks for node in spec.nodes]
    finally:
        source.close()


def _sqlite_script(database: Path, statements: list[Any]) -> str:
    """The statements with their parameters inlined as SQLite quotes them, for the CLI."""
    lines = []
    with sqlite3.connect(database) as db:
        for sql, params in statements:
            parts = str(sql).split("?")
            if len(parts) != len(params) + 1 or isinstance(params, dict):
                raise BenchError(f"cannot inline the parameters of {sql[:80]!r}")
            quoted = [db.execute("SELECT quote(?)", (p,)).fetchone()[0] for p in params]
            lines.append("".join(itertools.chain(*zip(parts, [*quoted, ""], strict=True))) + ";")
    return "\n".join(lines) + "\n"


def _cli_statements_rate(cli: str, database: Path, script: str, rows: int) -> float:
    started = time.perf_counter()
    subprocess.run(
        [cli, "-batch", "-noheader", str(database)],
        input=script.encode("utf-8"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=True,
        timeout=CLI_TIMEOUT,
    )
    return rows / (time.perf_counter() - started)


def _cursor_statements_rate(database: Path, statements: list[Any], rows: int) -> float:
    started = time.perf_counter()
    with sqlite3.connect(database) as db:
        for sql, params in statements:
            db.execute(sql, params).fetchall()
    return rows / (time.perf_counter() - started)


def _ceilings(
    title: str, names: list[str], samples: list[list[float]], baseline: str, raw: list[float]
) -> list[Figure]:
    note = (
        "no goal: the toolkit's chunk statements, compiled beforehand, run by that reader and "
        "discarded (the CLI: one process for all of them); counted as the toolkit's rows"
    )
    return [
        Figure(
            CASE,
            f"{title}, chunk statements alone, {name}",
            "rows/s",
            tuple(got),
            baseline,
            tuple(raw),
            None,
            note,
        )
        for name, got in zip(names, samples, strict=True)
    ]


def _pds_spec(project: Project) -> ExtractSpec:
    return project.plan(project.config.service("pds")).doc_type("patient").extract


def _sqlite_figures(folder: Path, patients: int, repeats: int) -> list[Figure]:
    database = folder / "legacy.db"
    rows = sum(_counts(database).values())
    project = Project.load(folder / "migrate.toml")
    try:
        spec = _pds_spec(project)
        chunk_size = project.config.run.chunk_size
    finally:
        project.close()
    cli = shutil.which("sqlite3")
    baseline: Callable[[], float]
    if cli is not None:
        name, baseline = CLI, partial(_cli_rate, cli, database, rows)
    else:
        name, baseline = CURSOR, partial(_cursor_rate, database, rows)
    url = f"sqlite:///{database}"
    statements = _chunk_statements(url, spec, chunk_size, copy=False)
    toolkit_rows = _toolkit_rows(url, spec, chunk_size)
    ceilings = {
        "Python cursor": partial(_cursor_statements_rate, database, statements, toolkit_rows)
    }
    if cli is not None:
        script = _sqlite_script(database, statements)
        ceilings = {
            "sqlite3 CLI": partial(_cli_statements_rate, cli, database, script, toolkit_rows),
            **ceilings,
        }
    with as_in_the_toolkit():
        fast, parallel, raw, *ceiling_samples = repeat(
            repeats,
            partial(_toolkit_rate, url, spec, chunk_size),
            partial(_parallel_rate, url, spec, chunk_size),
            baseline,
            *ceilings.values(),
        )
    title = "extract pds rows/s, SQLite" + ("" if cli else " (vs Python cursor: no sqlite3 CLI)")
    note = (
        f"{patients:,}-patient demo, baseline {rows:,} rows of {len(PDS_TABLES)} tables "
        f"(one CLI process each, wall time); toolkit: chunks of {chunk_size:,}, every node "
        "table's rows (lookups included) from a fresh Source"
    )
    return [
        *_figures(title, fast, parallel=parallel, baseline=name, raw=raw, note=note),
        *_ceilings(title, list(ceilings), ceiling_samples, name, raw),
    ]


# ---- PostgreSQL ----------------------------------------------------------------------------------

_PG_TYPES = (
    (re.compile(r"\bN?VARCHAR2\("), "VARCHAR("),
    (re.compile(r"\bNUMBER\("), "NUMERIC("),
    (re.compile(r"\bRAW\(\d+\)"), "BYTEA"),
    (re.compile(r"\bTIMESTAMP WITH TIME ZONE\b"), "TIMESTAMPTZ"),
    (re.compile(r"\bDATE\b"), "TIMESTAMP(0)"),  # an Oracle DATE holds a time of day
    (re.compile(r"\bCLOB\b"), "TEXT"),
)


def pg_ddl(table: str) -> str:
    """The demo table's Oracle DDL with the PostgreSQL type for each Oracle type."""
    ddl = dict(TABLES)[table]
    for pattern, replacement in _PG_TYPES:
        ddl = pattern.sub(replacement, ddl)
    return ddl


def _load_pg(connection: Any, database: Path) -> int:
    """Create the pds tables in PostgreSQL and COPY the SQLite rows in; the pds rows loaded."""
    rows = 0
    with sqlite3.connect(database) as db:
        for table in PG_TABLES:
            connection.execute(pg_ddl(table))
            cursor = db.execute(f"SELECT * FROM {table}")
            loaded = 0
            with connection.cursor().copy(f"COPY {table} FROM STDIN") as copy:
                for row in cursor:
                    copy.write_row(row)
                    loaded += 1
            if table in PDS_TABLES:
                rows += loaded
            for index in INDEXES:  # the demo's foreign-key indexes, as the SQLite copy has them
                if f" ON {table} (" in index:
                    connection.execute(index)
            connection.execute(f"ANALYZE {table}")
    return rows


def _copy_rate(server: Any, url: str, rows: int) -> float:
    selects = [f"SELECT * FROM {table}" for table in PDS_TABLES]
    return _copy_selects_rate(server, url, selects, rows)


def _copy_selects_rate(server: Any, url: str, selects: list[str], rows: int) -> float:
    """rows/s of each SELECT run as COPY binary, every block read and discarded."""
    started = time.perf_counter()
    with server.connect(url) as connection, connection.cursor() as cursor:
        for select_sql in selects:
            with cursor.copy(f"COPY ({select_sql}) TO STDOUT (FORMAT binary)") as copy:
                for _ in copy:
                    pass
    return rows / (time.perf_counter() - started)


def _pg_selects(server: Any, url: str, statements: list[Any]) -> list[str]:
    """The COPY statements' SELECTs with their parameters inlined, as the toolkit's reader does."""
    import psycopg

    with server.connect(url) as connection, psycopg.ClientCursor(connection) as quoting:
        return [quoting.mogrify(sql, params) for sql, params in statements]


@contextmanager
def throwaway_postgres() -> Iterator[Any]:
    """The test suite's throwaway PostgreSQL server, started for a bench case (None when its
    binaries are not installed)."""
    if str(TESTS_DIR) not in sys.path:
        sys.path.insert(0, str(TESTS_DIR))
    # The test suite's throwaway server, not part of the package (so not type-checked with it).
    module: Any = importlib.import_module("postgres_server")
    bin_dir = module.find_bin_dir()
    if bin_dir is None:
        yield None
        return
    server = module.PostgresServer.start(bin_dir)
    try:
        yield server
    finally:
        server.stop()


def _pg_figures(folder: Path, patients: int, repeats: int) -> list[Figure]:
    name = "extract pds rows/s, PostgreSQL"
    with throwaway_postgres() as server:
        if server is None:
            return [skipped(CASE, name, "rows/s", "no PostgreSQL binaries in /usr/lib/postgresql")]
        url = server.create_database()
        with server.connect(url) as connection:
            rows = _load_pg(connection, folder / "legacy.db")
        config = folder / "migrate.toml"
        text = config.read_text("utf-8")
        pg_config = folder / "migrate-pg.toml"
        pg_config.write_text(text.replace('url = "sqlite:///legacy.db"', f'url = "{url}"'))
        project = Project.load(pg_config)
        try:
            if project.config.source.url != url:
                raise BenchError(
                    "the demo's migrate.toml no longer names sqlite:///legacy.db as its source",
                    hint="update benchmarks/extract.py to the demo's [source] url",
                )
            spec = _pds_spec(project)
            chunk_size = project.config.run.chunk_size
        finally:
            project.close()
        selects = _pg_selects(server, url, _chunk_statements(url, spec, chunk_size, copy=True))
        toolkit_rows = _toolkit_rows(url, spec, chunk_size)
        with as_in_the_toolkit():
            fast, parallel, raw, ceiling = repeat(
                repeats,
                partial(_toolkit_rate, url, spec, chunk_size),
                partial(_parallel_rate, url, spec, chunk_size),
                partial(_copy_rate, server, url, rows),
                partial(_copy_selects_rate, server, url, selects, toolkit_rows),
            )
    note = (
        f"the same {rows:,} rows in a throwaway local server (fsync off), Oracle DATE as "
        "TIMESTAMP(0); baseline reads and discards every COPY block on one connection"
    )
    return [
        *_figures(name, fast, parallel=parallel, baseline=COPY, raw=raw, note=note),
        *_ceilings(name, ["COPY binary"], [ceiling], COPY, raw),
    ]


def run(settings: Settings) -> list[Figure]:
    patients = settings.documents or (5_000 if settings.quick else 20_000)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "demo"
        create_demo(folder, patients=patients, seed=1)
        return [
            *_sqlite_figures(folder, patients, settings.repeats),
            *_pg_figures(folder, patients, settings.repeats),
            *extract_mariadb.figures(
                patients,
                settings.repeats,
                toolkit_rate=_toolkit_rate,
                parallel_rate=_parallel_rate,
                toolkit_rows=_toolkit_rows,
                chunk_statements=_chunk_statements,
                workers=WORKERS,
            ),
        ]
