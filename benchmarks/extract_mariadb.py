"""Extract rate from MariaDB (issue 20), beside the engine's own fastest dump of the same tables.

The demo estate is loaded with `migrate demo --source` (the engine's native types) into a
throwaway server started from the Debian binaries (the test suite's fixture), and the pds
`patient` document type is extracted as `migrate run` does: on one connection, and by one worker
process per core under the snapshot they share (a MariaDB snapshot proved by its binary-log
position, `migrate.source.dialects.mysql`). The baseline is the `mariadb` client itself,
`mariadb --quick --batch` (rows streamed, tab-separated, to /dev/null): one process per table,
every row of the pds tables, wall time. Beside them, with no goal, the toolkit's own chunk
statements (parameters inlined as PyMySQL quotes them) run through that same client in one
process: the ceiling of any extract through those statements.

The bench connects as the server's root user over its unix socket, with no password, so the
workers need no password variable (the forkserver may predate this case).
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from benchmarks.harness import Figure, Goal, as_in_the_toolkit, repeat, skipped
from benchmarks.sink import TESTS_DIR
from migrate.demo import create_demo
from migrate.project import Project
from migrate.source import Source
from migrate.spec import ExtractSpec

CASE = "extract"
NAME = "extract pds rows/s, MariaDB"
DUMP = "mariadb --quick --batch"
PDS_TABLES = (
    "PATIENTS",
    "PATIENT_PHARMACIES",
    "PATIENT_NAMES",
    "PATIENT_ADDRESSES",
    "PATIENT_TELECOMS",
)
GOAL = Goal(">=", 0.6, "ratio")
TIMEOUT = 600.0


@contextmanager
def _mariadb() -> Iterator[Any]:
    if str(TESTS_DIR) not in sys.path:
        sys.path.insert(0, str(TESTS_DIR))
    # The test suite's throwaway server, not part of the package (so not type-checked with it).
    module: Any = importlib.import_module("mariadb_server")
    found = module.find_server()
    if found is None or shutil.which("mariadb") is None:
        yield None
        return
    server = module.MariaDBServer.start(*found)
    try:
        yield server
    finally:
        server.stop()


def _client(server: Any, database: str) -> list[str]:
    return [
        "mariadb", "--no-defaults", "--quick", "--batch", "--skip-column-names",
        f"--socket={server.socket}", "--user=root", database,
    ]  # fmt: skip


def _dump_rate(server: Any, database: str, rows: int) -> float:
    started = time.perf_counter()
    for table in PDS_TABLES:
        subprocess.run(
            [*_client(server, database), "-e", f"SELECT * FROM {table}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            check=True,
            timeout=TIMEOUT,
        )
    return rows / (time.perf_counter() - started)


def _script_rate(server: Any, database: str, script: str, rows: int) -> float:
    started = time.perf_counter()
    subprocess.run(
        _client(server, database),
        input=script.encode("utf-8"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=True,
        timeout=TIMEOUT,
    )
    return rows / (time.perf_counter() - started)


def _script(server: Any, database: str, statements: list[Any]) -> str:
    """The statements with their parameters inlined as PyMySQL quotes them."""
    with server.admin(database) as connection, connection.cursor() as cursor:
        return "\n".join(cursor.mogrify(sql, params) + ";" for sql, params in statements) + "\n"


def _count(server: Any, database: str) -> int:
    with server.admin(database) as connection, connection.cursor() as cursor:
        total = 0
        for table in PDS_TABLES:
            cursor.execute(f"SELECT count(*) FROM {table}")
            total += int(cursor.fetchone()[0])
        return total


def figures(
    patients: int,
    repeats: int,
    *,
    toolkit_rate: Any,
    parallel_rate: Any,
    toolkit_rows: Any,
    chunk_statements: Any,
    workers: int,
) -> list[Figure]:
    """The one-connection and the workers' figure against the client's dump, and the ceiling.

    The rate functions are `benchmarks.extract`'s own, so every engine is measured alike."""
    with _mariadb() as server, _project(server, patients) as (url, spec, chunk_size):
        if server is None:
            return [skipped(CASE, NAME, "rows/s", "no mariadbd or mariadb client installed")]
        database = str(make_url(url).database)
        rows = _count(server, database)
        script = _script(server, database, chunk_statements(url, spec, chunk_size, copy=False))
        counted = toolkit_rows(url, spec, chunk_size)
        with as_in_the_toolkit():
            fast, parallel, raw, ceiling = repeat(
                repeats,
                partial(toolkit_rate, url, spec, chunk_size),
                partial(parallel_rate, url, spec, chunk_size),
                partial(_dump_rate, server, database, rows),
                partial(_script_rate, server, database, script, counted),
            )
    note = (
        f"{patients:,}-patient demo loaded by `migrate demo --source` (native types) into a "
        f"throwaway local server; baseline {rows:,} rows of {len(PDS_TABLES)} tables, one "
        "client process each, wall time"
    )
    ceiling_note = (
        "no goal: the toolkit's chunk statements, parameters inlined, run by the same client "
        "in one process and discarded; counted as the toolkit's rows"
    )
    return [
        Figure(CASE, f"{NAME}, one connection", "rows/s", tuple(fast), DUMP, tuple(raw), GOAL,
               note),
        Figure(CASE, f"{NAME}, {workers} workers", "rows/s", tuple(parallel), DUMP, tuple(raw),
               GOAL, note),
        Figure(CASE, f"{NAME}, chunk statements alone, {DUMP}", "rows/s", tuple(ceiling), DUMP,
               tuple(raw), None, ceiling_note),
    ]  # fmt: skip


@contextmanager
def _project(server: Any, patients: int) -> Iterator[tuple[str, ExtractSpec, int]]:
    """The demo loaded into a new database of `server`: (its URL, the pds spec, chunk size)."""
    if server is None:
        yield ("", ExtractSpec("", "", "", (), None, ()), 0)
        return
    import tempfile

    created = server.create_database()
    database = created.rsplit("/", 1)[1]
    url = f"mysql+pymysql://root@localhost/{database}?unix_socket={server.socket}"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "demo"
        create_demo(folder, patients=patients, seed=1, source=url)
        project = Project.load(folder / "migrate.toml")
        try:
            spec = project.plan(project.config.service("pds")).doc_type("patient").extract
            chunk_size = project.config.run.chunk_size
        finally:
            project.close()
        Source(url).close()  # the URL opens as the toolkit would open it
        yield url, spec, chunk_size
