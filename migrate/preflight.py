"""What `migrate run` would refuse in the project's settings, found by `migrate check` first.

`check` is the runbook's gate: whatever `run` would stop on for a reason in migrate.toml or a
mapping must stop `check` too, with the file and line to fix. Each check here asks the same code
`run` uses (the target's URL parser, the state database's URL resolution, the database itself for
a `where`), without opening, connecting to or creating anything.
"""

from __future__ import annotations

import os
from pathlib import Path

from migrate.config import Config, ServiceConfig, locate
from migrate.errors import ConfigError, MigrateError, Problem
from migrate.mapping import Mapping, ServicePlan
from migrate.project import Project
from migrate.source.probe import where_problem
from migrate.target import check_url


def config_problems(config: Config) -> list[Problem]:
    """Every setting of migrate.toml that `run` would refuse: the target and state URLs, and
    the folders it writes (work_dir, an embedded target's, a SQLite state file's)."""
    problems: list[Problem] = []

    def add(section: str, key: str, message: str, hint: str | None) -> None:
        file, line = locate(config, section, key)
        problems.append(Problem(file, line, f"[{section}] {key}", message, hint))

    try:
        target_file = check_url(config.target, base_dir=config.base_dir)
    except ConfigError as exc:
        add("target", "url", exc.message, exc.hint)
    else:
        if target_file is not None:
            reason = unwritable(target_file.parent)
            if reason:
                add("target", "url", f"the embedded target's folder {reason}", _FOLDER_HINT)
    state_problem = _state_problem(config)
    if state_problem is not None:
        add("state", "url", *state_problem)
    reason = unwritable(config.work_dir)
    if reason:
        add("run", "work_dir", f"the work folder {reason}", _FOLDER_HINT)
    return problems


def capture_problems(project: Project, service: ServiceConfig) -> list[Problem]:
    """The service's change capture as `capture install` would refuse it: a mode not built for
    the source's engine, a watermark column missing or of a type that cannot order changes."""
    if service.capture is None:
        return []
    from migrate.capture import engine_of

    try:
        engine_of(project, service)
    except ConfigError as exc:
        file, line = locate(project.config, f"services.{service.name}", "capture")
        return [Problem(file, line, f"[services.{service.name}] capture", exc.message, exc.hint)]
    return []


_FOLDER_HINT = "name a folder migrate can create and write, or fix its permissions"


def _state_problem(config: Config) -> tuple[str, str | None] | None:
    from migrate.ledger.engine import resolve_url

    try:
        url = resolve_url(config.state.url, config.base_dir)
        url.get_dialect()
    except ConfigError as exc:
        return exc.message, exc.hint
    except Exception:  # SQLAlchemy's NoSuchModuleError, a driver's ImportError
        return (
            "the state database URL names a driver that is not available",
            "use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB in [state] url",
        )
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        database = str(url.database)
        if not database.startswith("file:"):
            reason = unwritable(Path(database).parent)
            if reason:
                return f"the state database's folder {reason}", _FOLDER_HINT
    return None


def unwritable(folder: Path) -> str | None:
    """Why `run` could not create or write in `folder` (missing parents are created), or None.

    The nearest part of the path that exists decides: a file there is in the way; a folder
    must let this user create entries (`os.access`, which also says so on a read-only mount).
    """
    probe = folder
    while not os.path.lexists(probe):
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.is_dir():
        if not os.access(probe, os.W_OK | os.X_OK):
            where = "" if probe == folder else f" ({probe} exists)"
            return f"{folder} is not writable{where}"
        return None
    if probe == folder:
        return f"{folder} is a file, not a folder"
    return f"{folder} cannot be created: {probe} is a file, not a folder"


def where_problems(project: Project, mapping: Mapping, plan: ServicePlan) -> list[Problem]:
    """Each document type's `where` as the database sees it: the statement that plans chunks is
    run with a predicate that is always false, so bad SQL is found now, with the line to fix."""
    problems = []
    for model in mapping.documents:
        if not model.where:
            continue
        spec = plan.doc_type(model.name).extract
        try:
            tables = project.source.tables(spec)
        except MigrateError:
            continue  # the table went away since reflection: compiling said so already
        detail = where_problem(project.source, spec, tables)
        if detail is not None:
            where = model.loc.at("where")
            problems.append(
                Problem(
                    str(mapping.path),
                    where.line,
                    where.path,
                    f"the source refuses this `where`: {detail}",
                    "write a predicate on the root table's columns in the source's own SQL "
                    f"dialect ({project.source.dialect}); it is pasted into every chunk's query",
                )
            )
    return problems
