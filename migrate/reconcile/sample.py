"""Deterministic key sampling: the same keys on every run and on both sides of a comparison."""

from __future__ import annotations

import re

import xxhash

from migrate.errors import UsageError

_PCT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%?\s*$")
_BUCKETS = 10_000


def parse_sample(text: str) -> float:
    """`1%`, `0.5%`, `10` -> the percentage; at most two decimals (the sample's resolution)."""
    match = _PCT.match(text)
    value = float(match.group(1)) if match else -1.0
    if not 0 < value <= 100 or round(value * 100) != value * 100:
        raise UsageError(
            f"--sample {text!r} is not a percentage between 0.01% and 100%",
            hint="write it like 1%, 0.5% or 10%",
        )
    return value


def sample_label(pct: float | None) -> str | None:
    return None if pct is None else f"{pct:g}%"


def in_sample(key: str, pct: float | None) -> bool:
    """True when `key` falls in a `pct`% sample: xxh3_64 of the key mod 10,000 < pct * 100."""
    if pct is None:
        return True
    return int(xxhash.xxh3_64_intdigest(key.encode("utf-8"))) % _BUCKETS < round(pct * 100)
