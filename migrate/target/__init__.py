"""Targets: where documents go. `open_target` picks the adapter from the URL's scheme."""

from __future__ import annotations

import os
from pathlib import Path

from migrate.config import TargetConfig
from migrate.errors import ConfigError, register_secret
from migrate.target.base import StoredObject, Target, WriteStats

__all__ = ["StoredObject", "Target", "WriteStats", "check_url", "local_path", "open_target"]

_RIAK_SCHEMES = ("riak", "riaks", "http", "https")
_UNSUPPORTED_HINT = "use local:///.migrate/target.db (embedded) or riak://host:8098 (Riak KV)"


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


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
    scheme = _scheme(url)
    if scheme == "local":
        from migrate.target.local import LocalTarget

        return LocalTarget(local_path(url, base_dir), read_only=read_only)
    if scheme in _RIAK_SCHEMES:
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
        f"[target] url scheme {scheme or url!r} is not supported", hint=_UNSUPPORTED_HINT
    )


def check_url(config: TargetConfig, *, base_dir: Path) -> Path | None:
    """Refuse `[target] url` as `open_target` would (scheme, host, port, path, options, TLS
    files), without opening or connecting to anything. Returns the embedded target's file."""
    url = config.url
    scheme = _scheme(url)
    if scheme == "local":
        return local_path(url, base_dir)
    if scheme in _RIAK_SCHEMES:
        from migrate.target.riak.client import parse_url, tls_context

        parsed = parse_url(url)
        if parsed.tls:
            tls_context(parsed)
        return None
    raise ConfigError(
        f"[target] url scheme {scheme or url!r} is not supported", hint=_UNSUPPORTED_HINT
    )
