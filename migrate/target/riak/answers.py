"""What a Riak node's answer means: the reply asked for, a refusal that retrying will not change,
or a failure worth retrying, and on which host.

A node says no in several voices, and the loader must tell them apart (each recorded from a real
node in `tests/riak_recordings/`):

- Riak KV's own refusals, in text/plain: 404 "not found" (an absent object: the caller's to
  take), 404 "Unknown bucket type: T", 400 for a malformed index or an impossible quorum. Terminal.
- A quorum the cluster cannot meet now: 503 "PW-value unsatisfied: 2/3" when a node holding
  primary replicas is down. Terminal as well (`QuorumError`): the load stops at the first such
  answer, saying which setting and what to do, instead of retrying into the same answer.
- A node that is starting: 500 "all_nodes_down" or "{insufficient_vnodes,0,need,2}" while its
  vnodes come up, though /ping answers already. Transient, and that host is cooled off.
- The web server's own 404 page (text/html). A stopping node answers it to every path, /ping
  included, before it stops listening; so does a node whose riak_kv has not registered its routes
  yet. A node that is up answers it only to a path Riak does not serve. Only asking /ping tells the
  two apart: the clients do (`needs_ping`) and hand the answer to `judge`.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from migrate.errors import TargetError, TransientTargetError

_QUORUM = re.compile(r"\b(PR|PW|R|W|DW|RW)-value unsatisfied: (\d+)/(\d+)")
_NOT_READY = re.compile(r"(all_nodes_down|insufficient_vnodes)")
_VALUE_IN_TEXT = re.compile(r"(value\s+)'[^']*'", re.I)
_TAGS = re.compile(r"<[^>]+>")
_QUORUM_HELP = {
    "PW": "primary replicas",
    "PR": "primary replicas",
    "W": "replicas",
    "DW": "durable replicas",
    "R": "replicas",
    "RW": "replicas",
}


@dataclass(frozen=True, slots=True)
class Reply:
    """A complete answer: status, headers (lower-case names, UTF-8 values) and body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class NodeUnavailable(TransientTargetError):
    """A host that is stopping or starting answered instead of serving the request. The request
    was not carried out there; the client cools that host off, and the load carries on through
    the others (or pauses, when there are none)."""

    def __init__(self, message: str, *, kind: str, hint: str | None = None) -> None:
        self.kind = kind
        super().__init__(message, hint=hint)


class QuorumError(TargetError):
    """Riak could not meet a quorum the target asks for (`w`, `dw`, `pw`, `r`): terminal, since a
    retry now meets the same answer; the message names the setting."""


def needs_ping(reply: Reply) -> bool:
    """True for the web server's own 404 page, which a stopping node answers to everything: only
    whether the node still answers /ping tells what it means (see `judge`)."""
    return reply.status == 404 and (reply.header("content-type") or "").startswith("text/html")


def judge(
    reply: Reply, ok: Collection[int], where: str, display_url: str, *, node_up: bool = True
) -> Reply:
    """The reply when its status is in `ok`; else the error it stands for (see the module's
    docstring). `node_up`: for a `needs_ping` answer, whether that host answered /ping with OK."""
    if needs_ping(reply):
        if not node_up:
            raise NodeUnavailable(
                f"Riak at {display_url}: the node is stopping or not serving yet (its web server "
                f"answered 404 to {where}, and /ping did not answer OK)",
                kind="a node stopping",
                hint=_AGAIN,
            )
        raise TargetError(
            f"Riak at {display_url} answered 404 to {where}: its web server serves no such path "
            "(the node is up)",
            hint="check that the target URL points at the root of Riak's HTTP API",
        )
    if reply.status in ok:
        return reply
    text = riak_text(reply.body)
    message = f"Riak at {display_url} answered {reply.status} to {where}: {text}"
    if reply.status >= 500:
        quorum = _QUORUM.search(text)
        if quorum is not None:
            raise _quorum_error(message, *quorum.groups())
        not_ready = _NOT_READY.search(text)
        if not_ready is not None:
            raise NodeUnavailable(
                message + " (riak_kv is not serving there yet: the node is starting, or its "
                "vnodes are down)",
                kind=f"a node starting ({not_ready.group(1)})",
                hint=_AGAIN,
            )
        raise TransientTargetError(message, hint="the node is overloaded or failing; retry")
    if reply.status == 401:
        raise TargetError(message, hint="set RIAK_USER and RIAK_PASSWORD for this node")
    if reply.status == 400 and "w/dw/pw" in text:
        raise QuorumError(
            message,
            hint="[target] w, dw and pw in migrate.toml must be at most the bucket's n_val "
            "(or one, quorum, all)",
        )
    raise TargetError(message, hint="this request is refused as sent: retrying will not help")


_AGAIN = (
    "the load carries on through the target's other hosts; with none left, start the node again "
    "(riak ping answers pong once it is back) and re-run the same command, or set [target] "
    "patience in migrate.toml to let the load wait for it"
)


def _quorum_error(message: str, name: str, got: str, wanted: str) -> QuorumError:
    setting = name.lower()
    return QuorumError(
        f"{message} (only {got} of the {wanted} {_QUORUM_HELP[name]} that {setting} asks for "
        "answered: a node holding this key's replicas is down or leaving)",
        hint=f"start the node again (riak admin member-status shows which is down) and re-run the "
        f"same command, or lower [target] {setting} in migrate.toml",
    )


def riak_text(body: bytes) -> str:
    """Riak's error text, short, without tags and with any echoed value masked."""
    text = _TAGS.sub(" ", body[:400].decode("utf-8", errors="replace"))
    text = " ".join(text.split())
    return _VALUE_IN_TEXT.sub(r"\1'***'", text) or "(no text)"
