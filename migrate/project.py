"""A migration project: its config, and the source, ledger and target it opens on demand."""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path

from migrate.config import Config, ServiceConfig, find_config, load_config
from migrate.lease import Lease, holding
from migrate.ledger import Ledger
from migrate.mapping import Mapping, ServicePlan, compile_mapping, load_mapping
from migrate.schema import SchemaInfo
from migrate.source import Source
from migrate.target import Target, open_target


class Project:
    """Opens each resource once, on first use, and closes them together."""

    def __init__(self, config: Config, *, read_only: bool = False) -> None:
        """`read_only`: open the ledger and the embedded target so that nothing on disk changes
        (for `reconcile --dry-run`, which must write nothing anywhere)."""
        self.config = config
        self.read_only = read_only
        self._source: Source | None = None
        self._ledger: Ledger | None = None
        self._target: Target | None = None
        self._schema: SchemaInfo | None = None
        # Parsed mappings and compiled plans, kept while the file is unchanged (by size and
        # modification time): a command asks for a service's plan several times.
        self._mappings: dict[Path, tuple[tuple[int, int], Mapping]] = {}
        self._plans: dict[Path, tuple[Mapping, ServicePlan]] = {}

    @classmethod
    def load(cls, config_path: Path | None = None, *, read_only: bool = False) -> Project:
        return cls(load_config(find_config(config_path)), read_only=read_only)

    @property
    def source(self) -> Source:
        if self._source is None:
            cfg = self.config.source
            self._source = Source(
                cfg.url,
                password=cfg.password(),
                password_env=cfg.password_env,
                base_dir=self.config.base_dir,
                schema=cfg.schema,
                types=cfg.types,
            )
        return self._source

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            cfg = self.config.state
            url = cfg.url
            password = cfg.password()
            if password is not None:
                from sqlalchemy.engine import make_url

                url = make_url(url).set(password=password).render_as_string(hide_password=False)
            self._ledger = Ledger(url, base_dir=self.config.base_dir, read_only=self.read_only)
        return self._ledger

    @property
    def target(self) -> Target:
        if self._target is None:
            self._target = open_target(
                self.config.target, base_dir=self.config.base_dir, read_only=self.read_only
            )
        return self._target

    def schema(self) -> SchemaInfo:
        """The source schema, reflected once per project."""
        if self._schema is None:
            self._schema = self.source.reflect()
        return self._schema

    def mapping(self, service: ServiceConfig) -> Mapping:
        path = service.mapping
        try:
            stat = path.stat()
            version: tuple[int, int] | None = (stat.st_size, stat.st_mtime_ns)
        except OSError:
            version = None  # load_mapping says what is wrong with the path
        known = self._mappings.get(path)
        if known is not None and known[0] == version:
            return known[1]
        mapping = load_mapping(path, default_bucket_type=self.config.target.bucket_type)
        if version is not None:
            self._mappings[path] = (version, mapping)
        return mapping

    def plan(self, service: ServiceConfig) -> ServicePlan:
        mapping = self.mapping(service)
        known = self._plans.get(service.mapping)
        if known is not None and known[0] is mapping:
            return known[1]
        plan = compile_mapping(mapping, self.schema())
        self._plans[service.mapping] = (mapping, plan)
        return plan

    def hold(self, services: Sequence[str], command: str) -> AbstractContextManager[Lease]:
        """The services' leases for the length of a command that changes them."""
        return holding(
            self.ledger,
            services,
            command=command,
            actor=actor(),
            seconds=self.config.lease_seconds,
        )

    def close(self) -> None:
        for resource in (self._target, self._ledger, self._source):
            if resource is not None:
                resource.close()
        self._source = self._ledger = self._target = None


def actor() -> str:
    """Who is acting, for the ledger's audit log: $MIGRATE_ACTOR, else user@host."""
    explicit = os.environ.get("MIGRATE_ACTOR")
    if explicit:
        return explicit
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"
