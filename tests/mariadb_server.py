"""A throwaway MariaDB server from the Debian `mariadb-server` binaries, for tests that need one.

Its data folder is a new temporary folder holding its unix socket too; it listens on 127.0.0.1 on
a free port, writes a binary log (so a consistent snapshot has a position other processes can
prove they share), and serves a user `migrate` whose password is `PASSWORD`: tests reach it
as a migration would, over TCP with a password. Root logs in over the socket, with no password,
to create databases. As root, the server runs as the `mysql` user on a folder it owns.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

USER = "migrate"
PASSWORD = "maria-secret-4417"  # what a test's password variable holds; searched for in outputs
PASSWORD_ENV = "MIGRATE_TEST_MARIADB_PASSWORD"  # set for the whole test session (conftest.py)
_START_SECONDS = 60.0


def find_server() -> tuple[Path, Path] | None:
    """(mariadbd, mariadb-install-db) when the Debian package is installed."""
    server = shutil.which("mariadbd") or (
        "/usr/sbin/mariadbd" if Path("/usr/sbin/mariadbd").exists() else None
    )
    install = shutil.which("mariadb-install-db")
    if server is None or install is None:
        return None
    return Path(server), Path(install)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class MariaDBServer:
    root: Path
    port: int
    process: subprocess.Popen[bytes]

    @property
    def socket(self) -> Path:
        return self.root / "mysqld.sock"

    @classmethod
    def start(cls, server: Path, install: Path) -> MariaDBServer:
        root = Path(tempfile.mkdtemp(prefix="migrate-maria-"))
        os_user = ["--user=mysql"] if os.geteuid() == 0 else []
        if os_user:
            entry = pwd.getpwnam("mysql")
            os.chmod(root, 0o755)
            os.chown(root, entry.pw_uid, entry.pw_gid)
        data = root / "data"
        subprocess.run(
            [str(install), "--no-defaults", f"--datadir={data}", "--skip-test-db",
             "--auth-root-authentication-method=normal", "--skip-name-resolve", *os_user],
            check=True, capture_output=True, timeout=180,
        )  # fmt: skip
        port = _free_port()
        process = subprocess.Popen(
            [str(server), "--no-defaults", f"--datadir={data}", f"--socket={root / 'mysqld.sock'}",
             f"--port={port}", "--bind-address=127.0.0.1", f"--pid-file={root / 'mysqld.pid'}",
             f"--log-error={root / 'error.log'}", f"--log-bin={root / 'binlog'}", "--server-id=1",
             "--skip-name-resolve", "--innodb-buffer-pool-size=64M", "--innodb-log-file-size=16M",
             "--innodb-flush-log-at-trx-commit=0", "--sync-binlog=0",
             "--character-set-server=utf8mb4", "--collation-server=utf8mb4_bin",
             "--max-connections=200", *os_user],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        instance = cls(root, port, process)
        try:
            instance._wait()
            with instance.admin() as connection, connection.cursor() as cursor:
                cursor.execute(f"CREATE USER '{USER}'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'")
                cursor.execute(
                    f"GRANT RELOAD, PROCESS, BINLOG MONITOR ON *.* TO '{USER}'@'127.0.0.1'"
                )
        except BaseException:
            instance.stop()
            raise
        return instance

    def _wait(self) -> None:
        deadline = time.monotonic() + _START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.root / "error.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"mariadbd exited with {self.process.returncode}:\n{log}")
            with socket.socket(socket.AF_UNIX) as probe:  # closed here, whether it connects or not
                try:
                    probe.connect(str(self.socket))
                    return
                except OSError:  # not listening yet
                    pass
            time.sleep(0.2)
        raise RuntimeError(f"mariadbd did not answer within {_START_SECONDS:g} s")

    def admin(self, database: str | None = None) -> Any:
        """A PyMySQL connection as root over the socket (autocommit)."""
        import pymysql

        return pymysql.connect(
            unix_socket=str(self.socket), user="root", database=database, autocommit=True,
            charset="utf8mb4",
        )  # fmt: skip

    def stop(self) -> None:
        try:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(60)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(10)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str) -> str:
        """The SQLAlchemy URL, with no password (it comes from an environment variable)."""
        return f"mysql+pymysql://{USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A fresh, empty utf8mb4 database the `migrate` user may use; returns its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        with self.admin() as connection, connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
            cursor.execute(f"GRANT ALL ON `{name}`.* TO '{USER}'@'127.0.0.1'")
        return self.url(name)

    def connect(self, url: str) -> Any:
        """A PyMySQL connection as root (autocommit) to a database made by `create_database`."""
        return self.admin(url.rsplit("/", 1)[1].split("?", maxsplit=1)[0])
