"""Chunk ranges: `[lo, hi)` along a root table's primary key, stored in the ledger as JSON.

Bounds are the driver's own primary-key values, passed back to it unchanged as query parameters, so
the database compares them exactly as it ordered them. The JSON form tags every value JSON cannot
hold exactly (datetime, Decimal, bytes, ...) so a bound read back from the ledger is the same value.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from migrate.errors import LedgerError, SourceError

Bound = tuple[Any, ...]

_TAG = "$"


def _encode(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return {_TAG: "float", "v": repr(value)}
    if isinstance(value, Decimal):
        return {_TAG: "decimal", "v": str(value)}
    if isinstance(value, dt.datetime):
        return {_TAG: "datetime", "v": value.isoformat()}
    if isinstance(value, dt.date):
        return {_TAG: "date", "v": value.isoformat()}
    if isinstance(value, dt.time):
        return {_TAG: "time", "v": value.isoformat()}
    if isinstance(value, bytes | bytearray | memoryview):
        return {_TAG: "bytes", "v": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, uuid.UUID):
        return {_TAG: "uuid", "v": str(value)}
    raise SourceError(
        f"a primary-key value of type {type(value).__name__} cannot bound a chunk",
        hint="chunks are cut along the root table's primary key; use a root table (or a view) "
        "whose key is text, a number, a date/time or binary",
    )


_DECODERS: dict[str, Any] = {
    "float": float,
    "decimal": Decimal,
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
    "bytes": lambda v: base64.b64decode(v.encode("ascii"), validate=True),
    "uuid": uuid.UUID,
}


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        return _DECODERS[value[_TAG]](value["v"])
    if value is None or isinstance(value, bool | int | str):
        return value
    raise ValueError(f"unexpected {type(value).__name__} in a chunk bound")


def _encode_bound(bound: Bound | None) -> Any:
    return None if bound is None else [_encode(v) for v in bound]


def _decode_bound(data: Any) -> Bound | None:
    if data is None:
        return None
    if not isinstance(data, list):
        raise ValueError("a chunk bound is a list of key values")
    return tuple(_decode(v) for v in data)


def _dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class ChunkRange:
    """Root rows with `lo <= primary key < hi` (in the database's own key order).

    `None` leaves that side unbounded: the first chunk of a plan has no `lo`, the last no `hi`, so
    a plan covers every key.
    """

    index: int
    lo: Bound | None
    hi: Bound | None
    # Only these root keys of the range (a delta's rebuild of some roots); None: every key.
    keys: tuple[Bound, ...] | None = None

    def to_json(self) -> str:
        return _dumps(
            {"index": self.index, "lo": _encode_bound(self.lo), "hi": _encode_bound(self.hi)}
        )

    @classmethod
    def from_json(cls, text: str) -> ChunkRange:
        try:
            data = json.loads(text)
            return cls(int(data["index"]), _decode_bound(data["lo"]), _decode_bound(data["hi"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise _bad_record() from exc

    def bounds_json(self) -> tuple[str, str]:
        """`lo` and `hi` as JSON text each (`"null"` when unbounded), for the ledger's columns."""
        return _dumps(_encode_bound(self.lo)), _dumps(_encode_bound(self.hi))

    @classmethod
    def from_bounds_json(cls, index: int, lo: str | None, hi: str | None) -> ChunkRange:
        """The inverse of `bounds_json`; `None` is read as unbounded too."""
        try:
            low = _decode_bound(json.loads(lo)) if lo else None
            high = _decode_bound(json.loads(hi)) if hi else None
        except (ValueError, KeyError, TypeError) as exc:
            raise _bad_record() from exc
        return cls(index, low, high)


def _bad_record() -> LedgerError:
    return LedgerError(
        "a chunk range recorded in the ledger is malformed",
        hint="the state database was edited or damaged; start a fresh run of the service",
    )
