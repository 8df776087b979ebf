"""`migrate demo DIR`: a ready migration project around a freshly generated legacy database.

The folder is what a team would start from: `migrate.toml`, one mapping file per service and the
legacy database itself (a SQLite file in the folder, or with `source` the tables loaded into a
PostgreSQL or MariaDB/MySQL server, see `native`), so `migrate check` and `migrate run` work in
it straight away.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from migrate.demo.estate import build_database
from migrate.errors import ConfigError, UsageError, register_secret

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

SERVICES: tuple[str, ...] = ("ods", "pds", "scr", "eps")

SOURCE_TOML = """\
[source]
url = "sqlite:///legacy.db"
"""

CONFIG_TOML = """\
[target]
url = "local:///.migrate/target.db"
[state]
url = "sqlite:///.migrate/state.db"
[run]
chunk_size = 2000
max_rejects = 0
[services.ods]
mapping = "mappings/ods.yaml"
[services.pds]
mapping = "mappings/pds.yaml"
[services.scr]
mapping = "mappings/scr.yaml"
[services.eps]
mapping = "mappings/eps.yaml"
[cutover]
order = ["ods", "pds", "scr", "eps"]
"""

GITIGNORE = """\
# Work folder of `migrate`: state, staged chunks and the embedded target hold personal data.
.migrate/
"""


@dataclass(frozen=True, slots=True)
class DemoSummary:
    """What `create_demo` wrote: the paths, and the row count of every legacy table."""

    directory: Path
    database: Path | None  # the SQLite file; None when the estate is on a server
    config: Path
    mappings: dict[str, Path]
    rows: dict[str, int] = field(default_factory=dict)
    source: str = "sqlite:///legacy.db"  # the project's source URL (password masked)

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


def mapping_text(service: str) -> str:
    """The packaged mapping file of a demo service."""
    return resources.files("migrate.demo").joinpath(f"mappings/{service}.yaml").read_text("utf-8")


def create_demo(
    directory: Path,
    *,
    patients: int = 10000,
    seed: int = 1,
    source: str | None = None,
    password_env: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> DemoSummary:
    """Write a demo project into `directory` (created if missing; refused if it holds anything).

    With `source` (a PostgreSQL or MariaDB/MySQL URL without a password; the password, if the
    server needs one, in the environment variable `password_env`) the estate is loaded into that
    server's empty database and the project reads from it.
    """
    if patients < 1:
        raise UsageError(
            f"--patients must be at least 1, not {patients}",
            hint="try `migrate demo DIR --patients 10000`",
        )
    server = None if source is None else _server_url(source, password_env)
    directory = Path(directory)
    _prepare(directory)
    say = progress or (lambda _message: None)
    database: Path | None = None
    if server is None:
        say(f"generating the legacy database for {patients:,} patients (seed {seed})")
        database = directory / "legacy.db"
        counts = build_database(database, patients=patients, seed=seed, progress=say)
        source_toml, shown = SOURCE_TOML, "sqlite:///legacy.db"
    else:
        from migrate.demo.native import load_server

        shown = server.render_as_string(hide_password=True)
        say(f"loading the legacy estate for {patients:,} patients (seed {seed}) into {shown}")
        counts = load_server(server, patients=patients, seed=seed, progress=say, display_url=shown)
        assert source is not None
        source_toml = _server_toml(source, password_env)
    say("writing migrate.toml, mappings/ and .gitignore")
    try:
        config = directory / "migrate.toml"
        config.write_text(source_toml + CONFIG_TOML, encoding="utf-8")
        (directory / ".gitignore").write_text(GITIGNORE, encoding="utf-8")
        mappings_dir = directory / "mappings"
        mappings_dir.mkdir()
        mappings: dict[str, Path] = {}
        for service in SERVICES:
            path = mappings_dir / f"{service}.yaml"
            path.write_text(mapping_text(service), encoding="utf-8")
            mappings[service] = path
        (directory / ".migrate").mkdir(mode=0o700)
    except OSError as exc:
        raise UsageError(
            f"could not write the demo project in {directory}: {exc.strerror}",
            hint="choose a folder you can write to, with free space",
        ) from exc
    return DemoSummary(directory, database, config, mappings, counts, shown)


def _server_url(source: str, password_env: str | None) -> URL:
    """The server's URL with the password from `password_env` (never from the URL itself: the
    project's migrate.toml will hold the URL)."""
    from sqlalchemy.engine import make_url  # only a server demo needs it

    try:
        url = make_url(source)
    except Exception:  # SQLAlchemy's ArgumentError, or a URL it cannot even split
        raise UsageError(
            "--source is not a database URL",
            hint="e.g. --source postgresql+psycopg://user@host/db or mysql+pymysql://user@host/db",
        ) from None
    if url.password is not None:
        register_secret(str(url.password))
        raise UsageError(
            "--source holds a password; secrets never live in migrate.toml",
            hint="remove it from the URL, export it in a variable and name that with "
            "--password-env",
        )
    if password_env is not None:
        password = os.environ.get(password_env)
        if password is None:
            raise ConfigError(
                f"--password-env names {password_env}, which is not set",
                hint=f"export {password_env}=... in the shell that runs migrate",
            )
        register_secret(password)
        url = url.set(password=password)
    return url


def _server_toml(source: str, password_env: str | None) -> str:
    """[source] of a project reading the estate on a server (its URL as given: no password in
    it), and the Oracle DATE columns whose server type holds a time of day (see `native`)."""
    from migrate.demo.native import ORACLE_DATES

    lines = ["[source]", f"url = {_toml_string(source)}"]
    if password_env is not None:
        lines.append(f"password_env = {_toml_string(password_env)}")
    lines += [
        "[source.types]",
        "# Oracle DATEs that hold a time of day, a TIMESTAMP(0)/DATETIME on this server: read",
        "# by Oracle's DATE rules (a date at midnight is written as a date)",
        *(f'"{table}.{column}" = "DATE"' for table, column in ORACLE_DATES),
    ]
    return "\n".join(lines) + "\n"


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _prepare(directory: Path) -> None:
    """Create the folder, or accept an existing empty one; anything else is refused."""
    if directory.exists():
        if not directory.is_dir():
            raise UsageError(
                f"{directory} exists and is not a folder",
                hint="give `migrate demo` the path of a new or empty folder",
            )
        if any(directory.iterdir()):
            raise UsageError(
                f"{directory} is not empty: the demo writes a whole project there",
                hint="give `migrate demo` a new or empty folder, e.g. `migrate demo demo-project`",
            )
        return
    try:
        directory.mkdir(parents=True)
    except OSError as exc:
        raise UsageError(
            f"could not create {directory}: {exc.strerror}",
            hint="choose a folder you can write to",
        ) from exc
