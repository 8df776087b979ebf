"""Targets: where documents go. `open_target` picks the adapter from the URL's scheme."""

from __future__ import annotations

import os
from pathlib import Path

from migrate.config import TargetConfig
from migrate.errors import ConfigError, register_secret
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


def open_target(config: TargetConfig, *, base_dir: Path, read_only: bool = False) -> Target:
    """The adapter for `[target] url`: `local://` (embedded), `riak://` or `riaks://` (HTTP)."""
    url = config.url
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "local":
        from migrate.target.local import LocalTarget

        return LocalTarget(local_path(url, base_dir), read_only=read_only)
    if scheme in ("riak", "riaks", "http", "https"):
        from migrate.target.riak import RiakTarget

        register_secret(os.environ.get("RIAK_PASSWORD"))
        return RiakTarget(
            url,
            max_in_flight=config.max_in_flight,
            timeout=config.timeout,
            w=config.w,
            dw=config.dw,
            pw=config.pw,
            r=config.r,
            failure_threshold=config.failure_threshold,
            patience=config.patience,
        )
    raise ConfigError(
        f"[target] url scheme {scheme or url!r} is not supported",
        hint="use local:///.migrate/target.db (embedded) or riak://host:8098 (Riak KV)",
    )
