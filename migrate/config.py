"""migrate.toml: finding it, reading it, and refusing anything it should not hold.

Secrets never live in the file: `password_env` names the environment variable that holds the
source password, and a URL with a password in it is refused.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migrate.errors import QUERY_SECRET, ConfigError, register_secret

CONFIG_NAME = "migrate.toml"
CONFIG_ENV = "MIGRATE_CONFIG"

_SECTIONS: dict[str, set[str]] = {
    "source": {"url", "password_env", "schema", "types"},
    "target": {
        "url",
        "bucket_type",
        "w",
        "dw",
        "pw",
        "r",
        "max_in_flight",
        "timeout",
        "failure_threshold",
        "patience",
    },
    "state": {"url", "password_env", "lease_seconds"},
    "run": {"chunk_size", "max_rejects", "max_document_bytes", "workers", "work_dir", "executor"},
    "cutover": {"order"},
}
_SERVICE_KEYS = {"mapping", "capture", "watermark"}
CAPTURE_MODES = ("triggers", "watermark", "scn")
DASK_SCHEME = "dask://"
_DASK_ADDRESS = re.compile(
    r"^dask://(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(?P<port>[0-9]{1,5})$"
)
_SERVICE_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


@dataclass(frozen=True, slots=True)
class SourceConfig:
    """A database URL and the environment variable holding its password (source or state DB);
    for the source, the schema whose tables are read (None: the user's own)."""

    url: str
    password_env: str | None = None
    schema: str | None = None
    # "TABLE.COLUMN" -> a declared type whose value rules the column is read by instead of its
    # own (an Oracle DATE that an earlier move made a TIMESTAMP(0), say)
    types: dict[str, str] = field(default_factory=dict)

    def password(self) -> str | None:
        """The source password from the environment variable the file names (None if none named)."""
        if self.password_env is None:
            return None
        value = os.environ.get(self.password_env)
        if value is None:
            raise ConfigError(
                f"password_env names {self.password_env}, which is not set",
                hint=f"export {self.password_env}=... in the shell that runs migrate",
            )
        register_secret(value)
        return value


@dataclass(frozen=True, slots=True)
class TargetConfig:
    """Where documents go. Quorums (w, dw, pw, r) default to the bucket's own; Riak credentials come
    from the environment (RIAK_USER, RIAK_PASSWORD), never from the file."""

    url: str
    bucket_type: str = "default"  # for document types whose mapping names none
    w: str | None = None
    dw: str | None = None
    pw: str | None = None
    r: str | None = None
    max_in_flight: int = 64
    timeout: float = 10.0
    failure_threshold: int = 20  # transient failures in a row that pause the load
    patience: float = 0.0  # seconds to wait for a node that stopped serving (0: pause at once)


@dataclass(frozen=True, slots=True)
class RunConfig:
    chunk_size: int = 5000
    max_rejects: int = 0
    max_document_bytes: int = (
        1024 * 1024
    )  # Riak's recommended ceiling; larger documents are rejects
    workers: int = 0  # 0: one per core
    work_dir: str = ".migrate/work"
    # Where chunks run: "local" (worker processes of this machine) or "dask://host:port" (the
    # workers of a Dask distributed cluster, which then load their own chunks)
    executor: str = "local"

    @property
    def scheduler(self) -> str | None:
        """The Dask scheduler's address (`tcp://host:port`), or None for the local executor."""
        if self.executor == "local":
            return None
        return "tcp://" + self.executor.removeprefix(DASK_SCHEME)


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    name: str
    mapping: Path
    # How delta finds the source's changes: "triggers" (a change log the toolkit installs),
    # "watermark" or "scn"; None: no capture (the service cannot be caught up or cut over).
    capture: str | None = None
    # With capture = "watermark": each table's last-modified column, by table name ("*": the
    # column of every table not named).
    watermark: tuple[tuple[str, str], ...] = ()

    def watermark_column(self, table: str) -> str | None:
        """The last-modified column configured for `table` (matched without regard to case)."""
        named = {t.casefold(): c for t, c in self.watermark}
        return named.get(table.casefold(), named.get("*"))


@dataclass(frozen=True, slots=True)
class Config:
    path: Path
    source: SourceConfig
    target: TargetConfig
    state: SourceConfig
    run: RunConfig = field(default_factory=RunConfig)
    services: dict[str, ServiceConfig] = field(default_factory=dict)
    cutover_order: tuple[str, ...] = ()
    # How long a service's lease lasts unless renewed (its holder renews it every third of it).
    lease_seconds: float = 60.0

    @property
    def base_dir(self) -> Path:
        """The project folder: relative paths and URLs in the file are relative to it."""
        return self.path.parent

    @property
    def work_dir(self) -> Path:
        return self.base_dir / self.run.work_dir

    def service(self, name: str) -> ServiceConfig:
        try:
            return self.services[name]
        except KeyError:
            known = ", ".join(self.services) or "none"
            raise ConfigError(
                f"no service {name!r} in {self.path}",
                hint=f"services defined there: {known}",
            ) from None

    def select(self, names: tuple[str, ...] | list[str]) -> list[ServiceConfig]:
        """The named services (all, in cutover order then file order, when none are named)."""
        if names:
            return [self.service(name) for name in names]
        ordered = [n for n in self.cutover_order if n in self.services]
        ordered += [n for n in self.services if n not in ordered]
        return [self.services[n] for n in ordered]


def find_config(explicit: Path | None = None) -> Path:
    """`--config`, else $MIGRATE_CONFIG, else ./migrate.toml."""
    candidate = explicit or (Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else None)
    if candidate is None:
        candidate = Path.cwd() / CONFIG_NAME
        if not candidate.is_file():
            raise ConfigError(
                f"no {CONFIG_NAME} in {Path.cwd()}",
                hint="run migrate in a project folder, pass --config PATH, "
                "or create a sample project with `migrate demo DIR`",
            )
    if candidate.is_dir():
        candidate = candidate / CONFIG_NAME
    if not candidate.is_file():
        raise ConfigError(f"config file {candidate} does not exist", hint="check --config")
    return candidate.resolve()


def load_config(path: Path) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}", hint="fix the syntax") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    return _parse(path, text, data)


def _parse(path: Path, text: str, data: dict[str, Any]) -> Config:
    lines = _Lines(path, text)
    for section, value in data.items():
        if section == "services":
            continue
        if section not in _SECTIONS:
            raise ConfigError(
                f"unknown section [{section}]",
                where=lines.at(section),
                hint=f"sections are {', '.join(sorted([*_SECTIONS, 'services']))}",
            )
        if not isinstance(value, dict):
            raise ConfigError(f"[{section}] must be a table", where=lines.at(section))
        for key in value:
            if key not in _SECTIONS[section]:
                raise ConfigError(
                    f"unknown key {key!r} in [{section}]",
                    where=lines.at(section, key),
                    hint=f"[{section}] takes {', '.join(sorted(_SECTIONS[section]))}",
                )

    source = _table(data, "source", lines, required=True)
    source_url = _required(source, "url", "source", lines)
    _refuse_password(source_url, "source", lines)
    password_env = _string(source, "password_env", "source", lines)
    target_table = _table(data, "target", lines, required=True)
    target_url = _required(target_table, "url", "target", lines)
    _refuse_password(target_url, "target", lines)
    target = TargetConfig(
        url=target_url,
        bucket_type=_string(target_table, "bucket_type", "target", lines) or "default",
        w=_quorum(target_table, "w", lines),
        dw=_quorum(target_table, "dw", lines),
        pw=_quorum(target_table, "pw", lines),
        r=_quorum(target_table, "r", lines),
        max_in_flight=_int(target_table, "max_in_flight", lines, 64, minimum=1, section="target"),
        timeout=_seconds(target_table, "timeout", lines, 10.0),
        failure_threshold=_int(
            target_table, "failure_threshold", lines, 20, minimum=1, section="target"
        ),
        patience=_seconds(target_table, "patience", lines, 0.0, minimum=0.0),
    )
    state = _table(data, "state", lines, required=True)
    state_url = _required(state, "url", "state", lines)
    _refuse_password(state_url, "state", lines)

    run_table = _table(data, "run", lines)
    run = RunConfig(
        chunk_size=_int(run_table, "chunk_size", lines, 5000, minimum=1),
        max_rejects=_int(run_table, "max_rejects", lines, 0, minimum=0),
        max_document_bytes=_int(run_table, "max_document_bytes", lines, 1024 * 1024, minimum=1),
        workers=_int(run_table, "workers", lines, 0, minimum=0),
        work_dir=_work_dir(run_table, lines),
        executor=_executor(run_table, lines, state_url=state_url, target_url=target_url),
    )

    services: dict[str, ServiceConfig] = {}
    raw_services = data.get("services", {})
    if not isinstance(raw_services, dict):
        raise ConfigError("[services] must hold [services.NAME] tables", where=lines.at("services"))
    for name, body in raw_services.items():
        where = lines.at(f"services.{name}")
        if not _SERVICE_NAME.match(name):
            raise ConfigError(
                f"service name {name!r} is not allowed",
                where=where,
                hint="use lowercase letters, digits, '-' and '_', starting with a letter",
            )
        if not isinstance(body, dict):
            raise ConfigError(f"[services.{name}] must be a table", where=where)
        for key in body:
            if key not in _SERVICE_KEYS:
                raise ConfigError(
                    f"unknown key {key!r} in [services.{name}]",
                    where=lines.at(f"services.{name}", key),
                    hint="a service takes: mapping, capture, watermark",
                )
        mapping = _required(body, "mapping", f"services.{name}", lines)
        capture = _string(body, "capture", f"services.{name}", lines)
        if capture is not None and capture not in CAPTURE_MODES:
            raise ConfigError(
                f"[services.{name}] capture must be one of {', '.join(CAPTURE_MODES)}",
                where=lines.at(f"services.{name}", "capture"),
                hint="triggers: a change log and triggers the toolkit installs (SQLite, "
                "PostgreSQL, Oracle); watermark: each table's last-modified column",
            )
        services[name] = ServiceConfig(
            name=name,
            mapping=(path.parent / mapping).resolve(),
            capture=capture,
            watermark=_watermark(body, name, capture, lines),
        )

    order_raw = _table(data, "cutover", lines).get("order", [])
    if not isinstance(order_raw, list) or not all(isinstance(o, str) for o in order_raw):
        raise ConfigError(
            "[cutover] order must be a list of service names", where=lines.at("cutover")
        )
    for name in order_raw:
        if name not in services:
            raise ConfigError(
                f"[cutover] order names {name!r}, which is not a service",
                where=lines.at("cutover", "order"),
                hint=f"define [services.{name}] or remove it from the order",
            )
    return Config(
        path=path,
        source=SourceConfig(
            url=source_url,
            password_env=password_env,
            schema=_string(source, "schema", "source", lines),
            types=_types(source, lines),
        ),
        target=target,
        state=SourceConfig(
            url=state_url, password_env=_string(state, "password_env", "state", lines)
        ),
        run=run,
        services=services,
        cutover_order=tuple(order_raw),
        lease_seconds=_seconds(state, "lease_seconds", lines, 60.0, section="state"),
    )


class _Lines:
    """Finds the line of a section or key, so config errors can say file:line."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()

    def at(self, section: str, key: str | None = None) -> str:
        header = re.compile(r"^\s*\[\s*" + re.escape(section) + r"\s*\]")
        start = next((i for i, line in enumerate(self.lines) if header.match(line)), None)
        if start is None:
            return str(self.path)
        if key is None:
            return f"{self.path}:{start + 1}"
        pattern = re.compile(r"^\s*" + re.escape(key) + r"\s*=")
        for i in range(start + 1, len(self.lines)):
            if self.lines[i].lstrip().startswith("["):
                break
            if pattern.match(self.lines[i]):
                return f"{self.path}:{i + 1}"
        return f"{self.path}:{start + 1}"


def _table(
    data: dict[str, Any], name: str, lines: _Lines, required: bool = False
) -> dict[str, Any]:
    value = data.get(name)
    if value is None:
        if required:
            raise ConfigError(
                f"missing section [{name}]",
                where=str(lines.path),
                hint=f"add [{name}] with a url (see the README)",
            )
        return {}
    return value if isinstance(value, dict) else {}


def _required(table: dict[str, Any], key: str, section: str, lines: _Lines) -> str:
    value = _string(table, key, section, lines)
    if value is None:
        raise ConfigError(f"[{section}] needs {key}", where=lines.at(section))
    return value


def _string(table: dict[str, Any], key: str, section: str, lines: _Lines) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(
            f"[{section}] {key} must be a non-empty string", where=lines.at(section, key)
        )
    return value


def _int(
    table: dict[str, Any],
    key: str,
    lines: _Lines,
    default: int,
    minimum: int,
    *,
    section: str = "run",
) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(
            f"[{section}] {key} must be an integer >= {minimum}", where=lines.at(section, key)
        )
    return value


_QUORUM = re.compile(r"^(all|quorum|one|default|[0-9]+)$")


def _quorum(table: dict[str, Any], key: str, lines: _Lines) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not _QUORUM.match(text):
        raise ConfigError(
            f"[target] {key} must be all, quorum, one, default or a number of replicas",
            where=lines.at("target", key),
        )
    return text


def _watermark(
    body: dict[str, Any], name: str, capture: str | None, lines: _Lines
) -> tuple[tuple[str, str], ...]:
    """`watermark = "COLUMN"` (every table's) or `watermark = {TABLE = "COLUMN", ...}`, with
    capture = "watermark" and only then."""
    section = f"services.{name}"
    raw = body.get("watermark")
    where = lines.at(section, "watermark")
    example = f'[services.{name}] watermark = "LAST_UPDATED" (or {{ TABLE = "COLUMN", ... }})'
    if raw is None:
        if capture == "watermark":
            raise ConfigError(
                f'[services.{name}] capture = "watermark" needs the last-modified column of '
                "each table the mapping reads",
                where=lines.at(section, "capture"),
                hint=f"set {example}",
            )
        return ()
    if capture != "watermark":
        raise ConfigError(
            f'[services.{name}] watermark is only read with capture = "watermark"',
            where=where,
            hint=f'set capture = "watermark" under [services.{name}], or remove watermark',
        )
    pairs = (
        [("*", raw)] if isinstance(raw, str) else list(raw.items()) if isinstance(raw, dict) else []
    )
    if not pairs or not all(
        isinstance(t, str) and t and isinstance(c, str) and c for t, c in pairs
    ):
        raise ConfigError(
            f"[services.{name}] watermark must be a column name or a table of "
            'TABLE = "COLUMN" pairs',
            where=where,
            hint=f"for example {example}",
        )
    return tuple(pairs)


def _seconds(
    table: dict[str, Any],
    key: str,
    lines: _Lines,
    default: float,
    *,
    section: str = "target",
    minimum: float | None = None,
) -> float:
    """A number of seconds: > 0, or >= `minimum` when one is given."""
    value = table.get(key, default)
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or (value < minimum if minimum is not None else value <= 0):
        bound = f">= {minimum:g}" if minimum is not None else "> 0"
        raise ConfigError(
            f"[{section}] {key} must be a number of seconds {bound}", where=lines.at(section, key)
        )
    return float(value)


def _work_dir(run: dict[str, Any], lines: _Lines) -> str:
    """[run] work_dir: a folder (a shared one for a distributed executor), not an object store."""
    value = _string(run, "work_dir", "run", lines) or ".migrate/work"
    if "://" in value:
        raise ConfigError(
            "[run] work_dir must be a folder: staging to object storage is not supported",
            where=lines.at("run", "work_dir"),
            hint="name a local folder, or for a distributed executor a shared filesystem (NFS, "
            "CephFS, ...) mounted at the same path on every worker and on this host",
        )
    return value


def _executor(run: dict[str, Any], lines: _Lines, *, state_url: str, target_url: str) -> str:
    """[run] executor: "local", or "dask://host:port" with a ledger and a target every worker
    can reach (PostgreSQL, Riak)."""
    value = _string(run, "executor", "run", lines) or "local"
    where = lines.at("run", "executor")
    if value == "local":
        return value
    if not _DASK_ADDRESS.match(value) or not 0 < int(value.rpartition(":")[2]) < 65536:
        raise ConfigError(
            f'[run] executor must be "local" or "dask://HOST:PORT", not {value!r}',
            where=where,
            hint='e.g. executor = "dask://scheduler.example:8786" (the Dask scheduler\'s address)',
        )
    if not state_url.lower().startswith("postgresql"):
        raise ConfigError(
            "a Dask executor needs a [state] url on PostgreSQL: every worker records its chunks "
            "in the one ledger",
            where=where,
            hint='set [state] url = "postgresql+psycopg://USER@HOST/DB" (password_env for its '
            'password), or executor = "local"',
        )
    if target_url.lower().startswith("local:"):
        raise ConfigError(
            "a Dask executor needs a Riak [target]: every worker writes its own chunks, and the "
            "embedded target is a file on this host",
            where=where,
            hint='set [target] url = "riak://HOST:8098,...", or executor = "local"',
        )
    return value


_COLUMN_NAME = re.compile(r"^[^.\s]+\.[^.\s]+$")


def _types(source: dict[str, Any], lines: _Lines) -> dict[str, str]:
    """[source.types]: "TABLE.COLUMN" = "DECLARED TYPE"."""
    raw = source.get("types", {})
    where = lines.at("source.types")
    if not isinstance(raw, dict):
        raise ConfigError("[source.types] must be a table of column = type", where=where)
    types = {}
    for column, declared in raw.items():
        if not _COLUMN_NAME.match(column) or not isinstance(declared, str) or not declared:
            raise ConfigError(
                f"[source.types] {column!r} must be TABLE.COLUMN = a declared type",
                where=lines.at("source.types", f'"{column}"'),
                hint='e.g. "SCR_ADVERSE_REACTIONS.ONSET_AT" = "DATE"',
            )
        types[column] = declared
    return types


_URL_WITH_PASSWORD = re.compile(r"^[a-z][a-z0-9+.\-]*://[^:/@\s]*:[^@\s]+@", re.I)


def _refuse_password(url: str, section: str, lines: _Lines) -> None:
    """Refuse a URL holding a password, in its user part or its query string."""
    if _URL_WITH_PASSWORD.match(url) or QUERY_SECRET.search(url):
        if section == "target":
            hint = (
                "remove it from the URL: Riak credentials come from the environment variables "
                "RIAK_USER and RIAK_PASSWORD"
            )
        else:
            hint = "remove it from the URL and name an environment variable with password_env"
        raise ConfigError(
            f"[{section}] url holds a password; secrets never live in migrate.toml",
            where=lines.at(section, "url"),
            hint=hint,
        )


def locate(config: Config, section: str, key: str | None = None) -> tuple[str, int]:
    """The file and line of `[section] key` in the project's migrate.toml (the section's line when
    the key is not written there), for messages that point at the setting at fault."""
    try:
        text = config.path.read_text(encoding="utf-8")
    except OSError:
        return str(config.path), 1
    where = _Lines(config.path, text).at(section, key)
    file, _, line = where.rpartition(":")
    if not file or not line.isdigit():
        return str(config.path), 1
    return file, int(line)
