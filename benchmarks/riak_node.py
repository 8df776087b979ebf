"""Throw-away Riak KV nodes for the tests, CI and the bench, from a Riak test server folder beside
the checkout: `../shared/riak` relative to the repository root, or the folder named by
`MIGRATE_TEST_RIAK_DIR`. That folder holds a relocatable Riak KV release and `riak-local`, which
starts nodes on loopback in a folder it is given and stops only what it started. Users never have
it: everything here says why it cannot run instead of failing.

Other people may run nodes on the same machine (Riak's default ports 8098/8099, epmd on 4369), so
every node started here gets free ports and an epmd of its own (`ERL_EPMD_PORT`); riak-local
remembers both in the node folder, so stopping needs nothing else.

`python -m benchmarks.riak_node start DIR [--nodes N]` prints the node URLs (comma separated);
`python -m benchmarks.riak_node stop DIR` stops them. `.ci/run` uses it.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DIR_ENV = "MIGRATE_TEST_RIAK_DIR"
SCRIPT = "riak-local"
START_TIMEOUT = 240.0
PORT_LOW, PORT_HIGH = 20_000, 60_000
HANDOFF_QUIET = re.compile(r"No transfers active", re.I)


class RiakNodeError(Exception):
    """A node could not be started, stopped or asked (the message says which and why)."""


def riak_home() -> Path | None:
    """The Riak test server folder (holding `riak-local`), or None when there is none."""
    named = os.environ.get(DIR_ENV)
    folder = Path(named) if named else ROOT.parent / "shared" / "riak"
    return folder if (folder / SCRIPT).is_file() else None


def absent_reason() -> str:
    """Why no real node can be started here (for a skip message)."""
    named = os.environ.get(DIR_ENV)
    where = named or str(ROOT.parent / "shared" / "riak")
    return (
        f"no Riak test server at {where} (set {DIR_ENV} to a folder holding {SCRIPT}); "
        "users' machines have none, so the real-node tests skip"
    )


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    with socket.socket() as probe:  # nothing listening there either (bound elsewhere)
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) != 0


def free_ports(nodes: int) -> tuple[int, int]:
    """(base port, epmd port): every port riak-local would use for `nodes` nodes is free now."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(PORT_LOW, PORT_HIGH - 10 * nodes) // 10 * 10
        epmd = rng.randrange(PORT_LOW, PORT_HIGH)
        wanted = [base + 10 * n + offset for n in range(nodes) for offset in range(4)]
        if epmd in wanted:
            continue
        if all(_port_free(port) for port in [*wanted, epmd]):
            return base, epmd
    raise RiakNodeError(f"no free ports found for {nodes} Riak node(s) on 127.0.0.1")


@dataclass
class RiakNodes:
    """One node or a cluster started by riak-local in `folder`."""

    home: Path
    folder: Path
    urls: list[str]
    epmd_port: int

    @property
    def url(self) -> str:
        """A `riak://` target URL listing every node."""
        hosts = ",".join(u.removeprefix("http://") for u in self.urls)
        return f"riak://{hosts}"

    def node_url(self, node: int) -> str:
        """The `riak://` URL of one node (1-based)."""
        return "riak://" + self.urls[node - 1].removeprefix("http://")

    @classmethod
    def start(cls, folder: Path, *, nodes: int = 1, home: Path | None = None) -> RiakNodes:
        """Start `nodes` nodes in `folder` (new) on free ports; raises RiakNodeError."""
        home = home or riak_home()
        if home is None:
            raise RiakNodeError(absent_reason())
        last = ""
        for _ in range(3):  # ports taken between the check and the start: try others
            base, epmd = free_ports(nodes)
            shutil.rmtree(folder, ignore_errors=True)
            env = {**os.environ, "ERL_EPMD_PORT": str(epmd)}
            args = ["start", str(folder), "--nodes", str(nodes), "--base-port", str(base)]
            done = _riak_local(home, args, env=env, timeout=START_TIMEOUT)
            if done.returncode == 0:
                urls = [line.strip() for line in done.stdout.splitlines() if line.strip()]
                return cls(home, folder, urls, epmd)
            last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            if "already in use" not in last and "already registered" not in last:
                break
        raise RiakNodeError(f"riak-local could not start {nodes} node(s) in {folder}: {last}")

    def stop(self) -> None:
        """Stop every node of the folder (and the epmd riak-local started for them)."""
        done = _riak_local(self.home, ["stop", str(self.folder)], timeout=180)
        if done.returncode != 0:
            tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise RiakNodeError(f"riak-local could not stop {self.folder}: {tail}")

    def restart(self) -> None:
        """Start again whichever nodes are stopped, and wait until they serve."""
        done = _riak_local(self.home, ["start", str(self.folder)], timeout=START_TIMEOUT)
        if done.returncode != 0:
            tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise RiakNodeError(f"riak-local could not start {self.folder} again: {tail}")

    def admin(self, node: int, *args: str, timeout: float = 120) -> str:
        """`riak admin ARGS` on one node (or `stop`, `start`, ...: see riak-local --help); its
        output. riak admin exits 0 even when a command fails, so callers read the output."""
        done = _riak_local(
            self.home, ["admin", str(self.folder), f"node{node}", *args], timeout=timeout
        )
        return done.stdout + done.stderr

    def stop_node(self, node: int) -> None:
        """Stop one node (it answers 404s while it stops, then refuses connections)."""
        out = self.admin(node, "stop", timeout=120)
        if "ok" not in out.split():
            raise RiakNodeError(f"node{node} of {self.folder} did not stop: {out.strip()[-300:]}")

    def wait_for_handoffs(self, *, timeout: float = 120.0) -> None:
        """Until node1 reports no transfer active (hinted handoff after a node came back)."""
        deadline = time.monotonic() + timeout
        out = ""
        while time.monotonic() < deadline:
            out = self.admin(1, "transfers")
            if HANDOFF_QUIET.search(out):
                return
            time.sleep(1)
        raise RiakNodeError(f"handoffs still running after {timeout:g}s: {out.strip()[-300:]}")

    def ping(self, node: int) -> bool:
        """Whether the node answers GET /ping with OK now."""
        host, _, port = self.urls[node - 1].removeprefix("http://").rpartition(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=2)
        try:
            conn.request("GET", "/ping")
            return conn.getresponse().read() == b"OK"
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()


def _riak_local(
    home: Path, args: Sequence[str], *, env: dict[str, str] | None = None, timeout: float
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [str(home / SCRIPT), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RiakNodeError(f"riak-local {' '.join(args)} took more than {timeout:g}s") from exc


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.riak_node",
        description="Start or stop throw-away Riak nodes on free ports (for CI and the bench).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start nodes in a new folder; print their URLs")
    start.add_argument("folder", type=Path)
    start.add_argument("--nodes", type=int, default=1)
    stop = sub.add_parser("stop", help="stop the nodes of a folder")
    stop.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    home = riak_home()
    if home is None:
        print(absent_reason(), file=sys.stderr)
        return 2
    try:
        if args.command == "start":
            nodes = RiakNodes.start(args.folder, nodes=args.nodes, home=home)
            print(",".join(nodes.urls))
        else:
            RiakNodes(home, args.folder, [], 0).stop()
    except RiakNodeError as exc:
        print(f"riak_node: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
