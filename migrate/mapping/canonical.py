"""Canonical JSON and checksums: the exact bytes stored in Riak and the digests reconciled against.

Two builders (transform now, verification later) must produce identical bytes for the same document,
so there is exactly one writer: UTF-8 with raw non-ASCII, keys sorted by code point, no whitespace,
decimals as plain JSON numbers with their exact digits, floats in shortest round-trip form.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import msgspec
import xxhash

__all__ = [
    "aggregate",
    "canonical_json",
    "canonical_lines",
    "checksum",
    "combine",
    "decimal_text",
    "float_text",
]

# One encoder for the whole process: msgspec sorts keys by code point and writes a Decimal as
# str(Decimal), which keeps its digits (12.50 stays 12.50). Floats come out shortest round-trip.
_ENCODER = msgspec.json.Encoder(order="sorted", decimal_format="number")

# str(Decimal) switches to scientific notation (1E+2, 1.00E-8, 0E-10) for large exponents and tiny
# values; it always shows as digit, "E", sign, digit. msgspec writes floats with a lower-case "e",
# so this pattern in the output means "a Decimal may need rewriting in plain notation". It can also
# match inside a string, which only costs the slow path, never a wrong result.
_SCIENTIFIC = re.compile(rb"[0-9]E[+-][0-9]")

_MOD = 1 << 128
_HEX128 = re.compile(r"[0-9a-f]{32}")


def canonical_json(obj: Any) -> bytes:
    """The canonical JSON bytes of a built document (or any JSON-ready value).

    Floats must be finite: the value converters reject NaN and infinity before they get here.
    """
    try:
        data = _ENCODER.encode(obj)
        if _SCIENTIFIC.search(data) is None:
            return data
        return _ENCODER.encode(_plain_decimals(obj))
    except UnicodeEncodeError as exc:
        from migrate.mapping.values import ValueRuleError

        raise ValueRuleError(
            "a text value is not valid Unicode (it holds a lone surrogate)"
        ) from exc


def decimal_text(value: Decimal) -> str:
    """A finite Decimal exactly as canonical_json writes it: its digits, in plain notation."""
    text = str(value)
    return format(value, "f") if "E" in text else text


def float_text(value: float) -> str:
    """A finite float exactly as canonical_json writes it: the shortest form that reads back."""
    return _ENCODER.encode(value).decode("ascii")


def _plain_decimals(obj: Any) -> Any:
    """A copy of `obj` with every Decimal in scientific notation replaced by its plain text."""
    if isinstance(obj, Decimal):
        text = str(obj)
        return msgspec.Raw(format(obj, "f").encode("ascii")) if "E" in text else obj
    if isinstance(obj, dict):
        return {key: _plain_decimals(item) for key, item in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain_decimals(item) for item in obj]
    return obj


def checksum(data: bytes) -> str:
    """The xxh3-128 hex digest of a document's bytes (32 lower-case hex digits)."""
    return str(xxhash.xxh3_128_hexdigest(data))


def aggregate(checksums: Iterable[str]) -> str:
    """An order-independent digest of many checksums: their sum mod 2**128, as 32 hex digits.

    A sum (not XOR) so that a document counted twice does not cancel out; order independence lets
    chunks be summed in any order and combined later.
    """
    total = 0
    for position, digest in enumerate(checksums):
        total += _value(digest, position)
    return f"{total % _MOD:032x}"


def combine(a: str, b: str) -> str:
    """The aggregate of two aggregates, so per-chunk aggregates roll up into a run's."""
    return f"{(_value(a, 0) + _value(b, 1)) % _MOD:032x}"


def _value(digest: str, position: int) -> int:
    if _HEX128.fullmatch(digest) is None:
        raise ValueError(f"checksum #{position} is not 32 lower-case hex digits")
    return int(digest, 16)


def canonical_lines(values: list[Any]) -> tuple[list[bytes | None], list[int]]:
    """`canonical_json` of every value in one encoder pass, and the positions of values that
    cannot be written (text with a lone surrogate). JSON text never holds a raw newline,
    so the encoder's newline-delimited output splits back into exactly one text per value."""
    try:
        data = _ENCODER.encode_lines(values)
        if _SCIENTIFIC.search(data) is not None:
            data = _ENCODER.encode_lines([_plain_decimals(value) for value in values])
    except UnicodeEncodeError:
        return _one_by_one(values)
    lines: list[bytes | None] = list(data.split(b"\n"))
    lines.pop()
    return lines, []


def _one_by_one(values: list[Any]) -> tuple[list[bytes | None], list[int]]:
    from migrate.mapping.values import ValueRuleError

    out: list[bytes | None] = []
    failed: list[int] = []
    for position, value in enumerate(values):
        try:
            out.append(canonical_json(value))
        except ValueRuleError:
            failed.append(position)
            out.append(None)
    return out, failed
