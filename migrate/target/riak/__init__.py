"""The Riak KV target: Riak's HTTP API spoken directly (the official client does not import on
Python 3.10+). `RiakTarget` implements `migrate.target.base.Target`."""

from __future__ import annotations

from migrate.target.riak.answers import Reply
from migrate.target.riak.client import RiakHTTP, RiakURL, parse_url
from migrate.target.riak.store import RiakTarget

SCHEMES = ("riak", "riaks")

__all__ = ["SCHEMES", "Reply", "RiakHTTP", "RiakTarget", "RiakURL", "parse_url"]
