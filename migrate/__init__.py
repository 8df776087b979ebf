"""Relational-to-Riak migration toolkit."""

__version__ = "0.1.0.dev0"
