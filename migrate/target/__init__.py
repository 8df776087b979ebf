"""Targets: where documents go. `open_target` picks the adapter from the URL's scheme."""

from __future__ import annotations

from pathlib import Path

from migrate.errors import ConfigError
from migrate.target.base import StoredObject, Target, WriteStats

__all__ = ["StoredObject", "Target", "WriteStats", "local_path", "open_target"]


def local_path(url: str, base_dir: Path) -> Path:
    """The file of a `local://` URL: `local:///rel/path` is relative to the project folder,
    `local:////abs/path` is absolute (the same convention as SQLAlchemy's sqlite URLs)."""
    rest = url.removeprefix("local:///")
    if not rest or rest == url:
        raise ConfigError(
            f"target url {url!r} names no file",
            hint="write it as local:///.migrate/target.db (relative) or local:////abs/path.db",
        )
    path = Path(rest)
    return path if path.is_absolute() else base_dir / path


def open_target(url: str, *, base_dir: Path) -> Target:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "local":
        from migrate.target.local import LocalTarget

        return LocalTarget(local_path(url, base_dir))
    raise ConfigError(
        f"[target] url scheme {scheme or url!r} is not supported by this version",
        hint="use the embedded target, local:///.migrate/target.db",
    )
