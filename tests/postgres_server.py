"""A throwaway PostgreSQL server from the Debian binaries, for tests that need a real one.

initdb refuses to run as root, so as root the binaries run as the `postgres` user on a data folder
it owns. The server listens on 127.0.0.1 on a free port, with trust authentication and its unix
socket inside its own temporary folder.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path


def find_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin holding initdb and pg_ctl, if any."""
    found = []
    for initdb in glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        bin_dir = Path(initdb).parent
        if (bin_dir / "pg_ctl").exists():
            version = bin_dir.parent.name
            found.append((int(version) if version.isdigit() else 0, bin_dir))
    return max(found)[1] if found else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PostgresServer:
    bin_dir: Path
    root: Path
    port: int
    user: str | None  # the OS user the server runs as when the tests run as root

    @property
    def data(self) -> Path:
        return self.root / "data"

    def _run(self, *args: str) -> None:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    @classmethod
    def start(cls, bin_dir: Path) -> PostgresServer:
        root = Path(tempfile.mkdtemp(prefix="migrate-pg-"))
        user = "postgres" if os.geteuid() == 0 else None
        server = cls(bin_dir, root, _free_port(), user)
        (root / "socket").mkdir()
        if user:
            entry = pwd.getpwnam(user)
            os.chmod(root, 0o755)
            for path in (root, root / "socket"):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        server._run("initdb", "-D", str(server.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                    "--no-sync", "--locale=C")  # fmt: skip
        options = (
            f"-p {server.port} -k {root / 'socket'} -c listen_addresses=127.0.0.1 -c fsync=off"
        )
        server._run("pg_ctl", "-D", str(server.data), "-o", options, "-l",
                    str(root / "server.log"), "-w", "-t", "60", "start")  # fmt: skip
        return server

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A fresh, empty database; returns its SQLAlchemy URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        dsn = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def create_login(self, user: str, password: str) -> str:
        """A role that must give `password` to log in (scram-sha-256 over TCP, ahead of the trust
        rule everyone else meets) and a fresh database it owns; returns the database's URL,
        without the password."""
        import time

        import psycopg
        from psycopg import sql

        name = f"t_{uuid.uuid4().hex[:12]}"
        dsn = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(user), sql.Literal(password)
                )
            )
            connection.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(user)
                )
            )
            hba = self.data / "pg_hba.conf"
            hba.write_text(f"host all {user} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
            connection.execute("SELECT pg_reload_conf()")
        deadline = time.monotonic() + 30
        while True:  # the reload is asynchronous: until a login without the password fails
            try:
                psycopg.connect(
                    f"host=127.0.0.1 port={self.port} user={user} dbname={name}"
                ).close()
            except psycopg.OperationalError:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server still lets {user} in without a password")
            time.sleep(0.05)
        return f"postgresql+psycopg://{user}@127.0.0.1:{self.port}/{name}"

    def connect(self, url: str, *, autocommit: bool = True) -> object:
        """A psycopg connection (autocommit unless asked) to a database `create_database`
        made."""
        import psycopg

        database = url.rsplit("/", 1)[1]
        dsn = f"host=127.0.0.1 port={self.port} user=postgres dbname={database}"
        return psycopg.connect(dsn, autocommit=autocommit)
