"""Record exchanges with a real Riak node into `tests/riak_recordings/`, in the form of the shared
recordings (`curl -i` commands and raw answers, `Date` and `Server` dropped, the host written as
riak:8098).

    .venv/bin/python tests/record_riak.py [--only NAME]

It starts its own throw-away nodes from the Riak test server folder (see `benchmarks.riak_node`),
on free ports: one node for the deletes and for a node stopping and starting, a three-node cluster
for a quorum that cannot be met. Lines `$ riak ...` and `$ sleep N` in a recording are what was
done to the node between two exchanges; the fake's replay (`tests/target/test_riak_fake.py`) does
the same to the fake.
"""

from __future__ import annotations

import argparse
import http.client
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.riak_node import RiakNodes  # noqa: E402

RECORDINGS = Path(__file__).resolve().parent / "riak_recordings"
DROPPED = {"date", "server"}
JSON = ("Content-Type", "application/json")


@dataclass
class Answer:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for n, v in self.headers if n.lower() == name.lower()), None)


@dataclass
class Recorder:
    """Sends requests to one node and writes each exchange as the shared recordings do."""

    port: int
    blocks: list[str] = field(default_factory=list)

    def exchange(
        self,
        title: str,
        method: str,
        target: str,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes | None = None,
        *,
        write: bool = True,
    ) -> Answer:
        answer = send(self.port, method, target, headers, body)
        if write:
            self.write(title, method, target, headers, body, answer)
        return answer

    def write(
        self,
        title: str,
        method: str,
        target: str,
        headers: Sequence[tuple[str, str]],
        body: bytes | None,
        answer: Answer,
    ) -> None:
        parts = ["curl", "-i"]
        if method != "GET" or body is not None:
            parts += ["-X", method]
        for name, value in headers:
            parts += ["-H", f"{name}: {value}"]
        if body is not None:
            parts += ["-d", body.decode("utf-8")]
        parts.append(f"http://riak:8098{target}")
        head = [f"# {title}", "$ " + " ".join(parts), f"HTTP/1.1 {answer.status} {answer.reason}"]
        head += [f"{n}: {v}" for n, v in answer.headers if n.lower() not in DROPPED]
        text = answer.body.decode("utf-8", errors="replace")
        # as in the shared recordings: the body as sent, one line end, then a blank line
        self.blocks.append(
            "\n".join(head) + "\n\n" + text + ("\n" if text and not text.endswith("\n") else "")
        )

    def action(self, title: str, command: str, do: Callable[[], object]) -> None:
        """Something done to the node between two exchanges (the replay does it to the fake)."""
        self.blocks.append(f"# {title}\n$ {command}\n")
        do()

    def save(self, name: str) -> Path:
        path = RECORDINGS / name
        path.write_text("\n".join(self.blocks) + "\n", encoding="utf-8")
        return path


def send(
    port: int,
    method: str,
    target: str,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes | None = None,
) -> Answer:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest(method, target, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value.encode("utf-8"))
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        try:
            data = response.read()
        except http.client.IncompleteRead as cut:  # a stopping node may close mid-answer
            data = cut.partial
        decoded = [(n, v.encode("latin-1").decode("utf-8")) for n, v in response.getheaders()]
        return Answer(response.status, response.reason, decoded, data)
    finally:
        conn.close()


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


# ---- the recordings -----------------------------------------------------------------------------


def deletes(node: RiakNodes) -> Path:
    rec = Recorder(port_of(node.urls[0]))
    people = "/types/default/buckets/people/keys"
    sibs = "/types/siblings/buckets/people/keys"
    rec.exchange("a key to delete", "PUT", f"{people}/d1", [JSON], b'{"v":1}')
    head = rec.exchange("HEAD: its vclock", "HEAD", f"{people}/d1")
    vclock = head.header("X-Riak-Vclock") or ""
    rec.exchange(
        "DELETE carrying the vclock just read",
        "DELETE",
        f"{people}/d1",
        [("X-Riak-Vclock", vclock)],
    )
    rec.exchange(
        "a GET of the deleted key: 404, with the tombstone's vclock", "GET", f"{people}/d1"
    )
    rec.exchange("HEAD of the deleted key", "HEAD", f"{people}/d1")
    rec.exchange("DELETE of a key that was never stored: 404", "DELETE", f"{people}/never")
    rec.exchange(
        "a create-only PUT over the tombstone (allow_mult false): stored",
        "PUT",
        f"{people}/d1",
        [JSON, ("If-None-Match", "*")],
        b'{"v":2}',
    )
    rec.exchange("read back: one value", "GET", f"{people}/d1")
    rec.exchange("on allow_mult: a key to delete", "PUT", f"{sibs}/t1", [JSON], b'{"v":1}')
    rec.exchange("DELETE without a vclock", "DELETE", f"{sibs}/t1")
    gone = rec.exchange("the tombstone's vclock", "GET", f"{sibs}/t1")
    rec.exchange(
        "a blind PUT over the tombstone: the tombstone stays as a sibling",
        "PUT",
        f"{sibs}/t1",
        [JSON],
        b'{"v":2}',
    )
    rec.exchange(
        "every sibling: the tombstone is one (X-Riak-Deleted)",
        "GET",
        f"{sibs}/t1",
        [("Accept", "multipart/mixed")],
    )
    rec.exchange("a second key, deleted", "PUT", f"{sibs}/t2", [JSON], b'{"v":1}')
    rec.exchange("DELETE", "DELETE", f"{sibs}/t2")
    gone = rec.exchange("the tombstone's vclock", "GET", f"{sibs}/t2")
    rec.exchange(
        "a PUT carrying the tombstone's vclock replaces it: no sibling",
        "PUT",
        f"{sibs}/t2",
        [JSON, ("X-Riak-Vclock", gone.header("X-Riak-Vclock") or "")],
        b'{"v":2}',
    )
    rec.exchange("read back: one value", "GET", f"{sibs}/t2")
    rec.exchange(
        "asking for multipart/mixed alone of a key with one value: 406",
        "GET",
        f"{sibs}/t2",
        [("Accept", "multipart/mixed")],
    )
    rec.exchange(
        "multipart/mixed or, less preferred, anything: the value",
        "GET",
        f"{sibs}/t2",
        [("Accept", "multipart/mixed, */*;q=0.5")],
    )
    rec.exchange("a third key", "PUT", f"{sibs}/t3", [JSON], b'{"v":1}')
    seen = rec.exchange("HEAD: its vclock", "HEAD", f"{sibs}/t3").header("X-Riak-Vclock") or ""
    rec.exchange(
        "someone else updates it meanwhile",
        "PUT",
        f"{sibs}/t3",
        [JSON, ("X-Riak-Vclock", seen)],
        b'{"v":2}',
    )
    rec.exchange(
        "a DELETE carrying the vclock read before that update",
        "DELETE",
        f"{sibs}/t3",
        [("X-Riak-Vclock", seen)],
    )
    rec.exchange(
        "the update it did not see is kept, beside the tombstone",
        "GET",
        f"{sibs}/t3",
        [("Accept", "multipart/mixed")],
    )
    rec.exchange(
        "siblings, asked for multipart/mixed or anything: webmachine offers text/plain first",
        "GET",
        f"{sibs}/t3",
        [("Accept", "multipart/mixed, */*")],
    )
    rec.exchange(
        "and multipart/mixed when anything else is less preferred",
        "GET",
        f"{sibs}/t3",
        [("Accept", "multipart/mixed, */*;q=0.5")],
    )
    rec.exchange("a key deleted, then left alone", "PUT", f"{people}/r1", [JSON], b'{"v":1}')
    rec.exchange("DELETE", "DELETE", f"{people}/r1")
    rec.action(
        "the tombstone is reaped after delete_mode (3 s by default)",
        "sleep 4",
        lambda: time.sleep(4),
    )
    rec.exchange("after that: a plain 404, no vclock left", "GET", f"{people}/r1")
    return rec.save("08-deletes.txt")


def stopping(node: RiakNodes) -> Path:
    """A node answering while it stops and while it starts again: the answers a loader must not
    take for refusals."""
    port = port_of(node.urls[0])
    for _ in range(5):
        rec = Recorder(port)
        rec.exchange("a key", "PUT", "/types/default/buckets/people/keys/p1", [JSON], b"{}")
        rec.exchange(
            "a node that is up answers a path Riak does not serve with its web server's own page",
            "GET",
            "/nosuch",
        )
        rec.blocks.append("# the node is told to stop (from another shell)\n$ riak stop\n")
        if _record_while_stopping(rec, node) and _record_while_starting(rec, node):
            return rec.save("09-stopping-starting.txt")
        node.restart()
    raise SystemExit("could not catch the node's answers while it stopped and started")


def _record_while_stopping(rec: Recorder, node: RiakNodes) -> bool:
    """Stop the node while three threads send a read, a write and /ping in a loop; each keeps the
    first 404 it gets (the window lasts some tens of milliseconds before the node stops
    listening). True when all three caught one."""
    exchanges: list[tuple[str, str, str, list[tuple[str, str]], bytes | None]] = [
        ("an object", "GET", "/types/default/buckets/people/keys/p1", [], None),
        ("a write", "PUT", "/types/default/buckets/people/keys/p2", [JSON], b"{}"),
        ("/ping itself", "GET", "/ping", [], None),
    ]
    caught: dict[int, Answer] = {}

    def poll(slot: int) -> None:
        _, method, target, headers, body = exchanges[slot]
        while True:
            try:
                answer = send(rec.port, method, target, headers, body)
            except (OSError, http.client.HTTPException):
                return  # it stopped listening
            if answer.status == 404:
                caught[slot] = answer
                return

    pollers = [threading.Thread(target=poll, args=(slot,)) for slot in range(len(exchanges))]
    for poller in pollers:
        poller.start()
    node.stop_node(1)
    for poller in pollers:
        poller.join()
    if len(caught) < len(exchanges):
        return False
    for slot, (what, method, target, headers, body) in enumerate(exchanges):
        cut = " (it closed the connection before the page's body)" if not caught[slot].body else ""
        title = f"while it stops: {what}, the web server's 404 page{cut}"
        rec.write(title, method, target, headers, body, caught[slot])
    return True


def _record_while_starting(rec: Recorder, node: RiakNodes) -> bool:
    rec.action(
        "(it stopped listening: connection refused) and is started again",
        "riak start",
        lambda: node.admin(1, "start"),
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            ping = send(rec.port, "GET", "/ping")
        except OSError:
            time.sleep(0.05)
            continue
        if ping.status != 200:
            time.sleep(0.02)
            continue
        key = "/types/default/buckets/people/keys/p1"
        query = "/types/default/buckets/people/index/$bucket/_"
        got = send(rec.port, "GET", key)
        put = send(rec.port, "PUT", "/types/default/buckets/people/keys/p3", [JSON], b"{}")
        listed = send(rec.port, "GET", query)
        if min(got.status, put.status, listed.status) < 500:
            return False  # served already: too late to catch it
        rec.write("while its vnodes start: /ping answers OK", "GET", "/ping", [], None, ping)
        rec.write("but a read is not served yet", "GET", key, [], None, got)
        rec.write("nor a write", "PUT", "/types/default/buckets/people/keys/p3", [JSON], b"{}", put)
        rec.write("nor an index query", "GET", query, [], None, listed)
        node.restart()  # waits until it serves
        return True
    return False


def quorum(cluster: RiakNodes) -> Path:
    """A three-node cluster with one node stopped: a quorum on primaries cannot be met."""
    rec = Recorder(port_of(cluster.urls[0]))
    keys = [f"q{n}" for n in range(20)]
    for key in keys:
        send(rec.port, "PUT", f"/types/default/buckets/people/keys/{key}", [JSON], b'{"v":1}')
    rec.action(
        "one node of the three is stopped",
        "riak-local admin DIR node2 stop",
        lambda: cluster.stop_node(2),
    )
    try:
        for key in keys:  # a key with two of its three primaries up
            answer = send(
                rec.port,
                "PUT",
                f"/types/default/buckets/people/keys/{key}?pw=3",
                [JSON],
                b'{"v":2}',
            )
            if answer.status == 503 and b"2/3" in answer.body:
                break
        else:
            raise SystemExit("no key with two primaries up was found")
        path = f"/types/default/buckets/people/keys/{key}"
        rec.exchange(
            "pw=3 (all primaries) with a primary down", "PUT", path + "?pw=3", [JSON], b'{"v":2}'
        )
        rec.exchange("pr=3 likewise on a read", "GET", path + "?pr=3")
        rec.exchange(
            "w=3 is met by a fallback vnode (sloppy quorum)",
            "PUT",
            path + "?w=3",
            [JSON],
            b'{"v":3}',
        )
    finally:
        cluster.restart()
    return rec.save("10-quorum.txt")


RECORDINGS_BY_NAME: dict[str, tuple[int, Callable[[RiakNodes], Path]]] = {
    "deletes": (1, deletes),
    "stopping": (1, stopping),
    "quorum": (3, quorum),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=sorted(RECORDINGS_BY_NAME), action="append")
    args = parser.parse_args(argv)
    for name in args.only or list(RECORDINGS_BY_NAME):
        nodes, record = RECORDINGS_BY_NAME[name]
        with tempfile.TemporaryDirectory(prefix="migrate-record-") as tmp:
            started = RiakNodes.start(Path(tmp) / "riak", nodes=nodes)
            try:
                print(f"recorded {record(started)}")
            finally:
                started.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
