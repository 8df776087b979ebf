"""Fixtures of the target tests."""

from riak_nodes import node

__all__ = ["node"]
