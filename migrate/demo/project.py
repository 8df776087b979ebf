"""`migrate demo DIR`: a ready migration project around a freshly generated legacy database.

The folder is what a team would start from: `migrate.toml`, one mapping file per service and the
legacy database itself, so `migrate check` and `migrate run` work in it straight away.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from migrate.demo.estate import build_database
from migrate.errors import UsageError

SERVICES: tuple[str, ...] = ("ods", "pds", "scr", "eps")

CONFIG_TOML = """\
[source]
url = "sqlite:///legacy.db"
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
    database: Path
    config: Path
    mappings: dict[str, Path]
    rows: dict[str, int] = field(default_factory=dict)

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
    progress: Callable[[str], None] | None = None,
) -> DemoSummary:
    """Write a demo project into `directory` (created if missing; refused if it holds anything)."""
    if patients < 1:
        raise UsageError(
            f"--patients must be at least 1, not {patients}",
            hint="try `migrate demo DIR --patients 10000`",
        )
    directory = Path(directory)
    _prepare(directory)
    say = progress or (lambda _message: None)
    say(f"generating the legacy database for {patients:,} patients (seed {seed})")
    database = directory / "legacy.db"
    counts = build_database(database, patients=patients, seed=seed, progress=say)
    say("writing migrate.toml, mappings/ and .gitignore")
    try:
        config = directory / "migrate.toml"
        config.write_text(CONFIG_TOML, encoding="utf-8")
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
    return DemoSummary(directory, database, config, mappings, counts)


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
