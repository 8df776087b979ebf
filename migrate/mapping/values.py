"""Value rules: one staged column value in, its JSON-ready value or its text form out.

This is the hot path of transform, so each column's converter is chosen once, when the mapping is
compiled, and does no dispatch on the column's kind per value. The rules are those of
docs/mapping-semantics.md ("Value rules in detail", "`as:` overrides"). Converters never see NULL
(the caller handles it) and never put a value in an error: values are personal data.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import (
    MAX_EMAX,
    MIN_EMIN,
    ROUND_HALF_EVEN,
    ROUND_HALF_UP,
    Context,
    Decimal,
    Inexact,
    InvalidOperation,
    Overflow,
)
from typing import Any

import msgspec

from migrate.mapping.canonical import canonical_json, decimal_text, float_text
from migrate.schema import ColumnType, ValueKind

__all__ = [
    "AS_TYPES",
    "ValueRuleError",
    "as_accepts",
    "json_converter",
    "json_text",
    "text_converter",
]

Converter = Callable[[Any], Any]


class ValueRuleError(Exception):
    """A value that breaks a rule: the row is rejected with `reason`, never holding the value."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_K = ValueKind
_NUMERIC = frozenset({_K.INTEGER, _K.DECIMAL, _K.NUMBER, _K.FLOAT, _K.STRING})
_TEMPORAL = frozenset({_K.DATE, _K.TIMESTAMP, _K.TIMESTAMP_TZ, _K.STRING})
_ACCEPTS: dict[str, frozenset[ValueKind]] = {
    "string": frozenset(ValueKind),
    "integer": _NUMERIC,
    "decimal": _NUMERIC,
    "number": _NUMERIC,
    "boolean": frozenset({_K.BOOLEAN, _K.INTEGER, _K.STRING}),
    "date": _TEMPORAL,
    "datetime": _TEMPORAL,
    "yyyymmdd": _TEMPORAL,
    "base64": frozenset({_K.BINARY, _K.STRING}),
    "json": frozenset({_K.JSON, _K.STRING}),
}


AS_TYPES: frozenset[str] = frozenset(_ACCEPTS)


def as_accepts(kind: ValueKind, as_: str) -> bool:
    """Whether `as_` can convert values of `kind` at all (so a mapping check can report it)."""
    return kind in _ACCEPTS.get(as_, frozenset())


# --- numbers -----------------------------------------------------------------------------------

# Plain-notation output is bounded so a short input ("1E+999999999") cannot become a huge document.
_MAX_ADJUSTED = 1000
_EXACT = Context(
    prec=4 * _MAX_ADJUSTED,
    rounding=ROUND_HALF_EVEN,
    Emax=MAX_EMAX,
    Emin=MIN_EMIN,
    traps=[InvalidOperation, Overflow, Inexact],
)
# Extra digits beyond the declared scale round half away from zero, as Oracle does on insert.
_ROUND = Context(
    prec=4 * _MAX_ADJUSTED,
    rounding=ROUND_HALF_UP,
    Emax=MAX_EMAX,
    Emin=MIN_EMIN,
    traps=[InvalidOperation, Overflow],
)
_ONE = Decimal(1)
_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_NUMBER_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _where(ctype: ColumnType) -> str:
    return f"{ctype.kind.value} column ({ctype.declared})"


def _finite_float(value: float, ctype: ColumnType) -> float:
    if not math.isfinite(value):
        raise ValueRuleError(f"{_where(ctype)} holds a value that is not a finite number")
    return value


def _to_decimal(value: Any, ctype: ColumnType, *, text: bool) -> Decimal:
    """A staged number as an exact Decimal; a float goes through its shortest repr (12.5, not
    Decimal(12.5)), so a REAL from SQLite keeps the digits it was written with."""
    kind = type(value)
    if isinstance(value, Decimal):
        result = value
    elif kind is int:
        result = Decimal(value)
    elif kind is float:
        result = Decimal(repr(_finite_float(value, ctype)))
    elif text and kind is str:
        stripped = value.strip()
        if _NUMBER_TEXT.fullmatch(stripped) is None:
            raise ValueRuleError(f"{_where(ctype)} holds text that is not a number")
        result = Decimal(stripped)
    else:
        raise ValueRuleError(f"{_where(ctype)} holds a {kind.__name__}, not a number")
    if not result.is_finite():
        raise ValueRuleError(f"{_where(ctype)} holds a value that is not a finite number")
    if not -_MAX_ADJUSTED <= result.adjusted() <= _MAX_ADJUSTED:
        raise ValueRuleError(f"{_where(ctype)} holds a number outside the supported range")
    return result


def _unsigned_zero(value: Decimal) -> Decimal:
    return value.copy_abs() if value.is_zero() and value.is_signed() else value


def _scaled(ctype: ColumnType, scale: int, *, text: bool) -> Converter:
    exponent = Decimal(1).scaleb(-scale)

    def convert(value: Any) -> Decimal:
        number = _to_decimal(value, ctype, text=text)
        try:
            result = number.quantize(exponent, context=_ROUND)
        except ArithmeticError:
            raise ValueRuleError(f"{_where(ctype)} holds a number too large to write") from None
        return _unsigned_zero(result)

    return convert


def _exact(ctype: ColumnType, *, text: bool) -> Converter:
    def convert(value: Any) -> Decimal:
        return _unsigned_zero(_to_decimal(value, ctype, text=text))

    return convert


def _shortest(ctype: ColumnType, *, text: bool) -> Converter:
    def convert(value: Any) -> Decimal:
        number = _to_decimal(value, ctype, text=text)
        if number.is_zero():
            return Decimal(0)
        try:
            if number == number.to_integral_value():  # plain digits: 1E+2 is written 100
                return number.quantize(_ONE, context=_EXACT)
            return number.normalize(_EXACT)
        except ArithmeticError:
            raise ValueRuleError(f"{_where(ctype)} holds a number with too many digits") from None

    return convert


def _integer(ctype: ColumnType, *, text: bool) -> Converter:
    def convert(value: Any) -> int:
        kind = type(value)
        if kind is int:
            return int(value)
        if text and kind is str:
            stripped = value.strip()
            if _INT_TEXT.fullmatch(stripped) is None:
                raise ValueRuleError(f"{_where(ctype)} holds text that is not an integer")
            if len(stripped) > _MAX_ADJUSTED:
                raise ValueRuleError(
                    f"{_where(ctype)} holds an integer outside the supported range"
                )
            return int(stripped)
        if kind is bool or kind is str:
            raise ValueRuleError(f"{_where(ctype)} holds a {kind.__name__}, not an integer")
        number = _to_decimal(value, ctype, text=False)
        if number != number.to_integral_value():
            raise ValueRuleError(f"{_where(ctype)} holds a number with a fraction, not an integer")
        return int(number)

    return convert


def _float(ctype: ColumnType) -> Converter:
    def convert(value: Any) -> float:
        kind = type(value)
        if kind is float:
            return _finite_float(value, ctype)
        if kind is int or isinstance(value, Decimal):
            result = _finite_float(float(value), ctype)
            if kind is int and int(result) != value:
                raise ValueRuleError(
                    f"{_where(ctype)} holds an integer a float cannot hold exactly"
                )
            return result
        raise ValueRuleError(f"{_where(ctype)} holds a {kind.__name__}, not a number")

    return convert


# --- booleans, binary, JSON --------------------------------------------------------------------

_TRUE_TEXT = frozenset({"y", "t", "true", "yes", "1"})
_FALSE_TEXT = frozenset({"n", "f", "false", "no", "0"})


def _boolean(ctype: ColumnType, *, text: bool) -> Converter:
    def convert(value: Any) -> bool:
        kind = type(value)
        if kind is bool:
            return bool(value)
        if kind is int and value in (0, 1):
            return bool(value == 1)
        if text and kind is str:
            folded = value.strip().casefold()
            if folded in _TRUE_TEXT:
                return True
            if folded in _FALSE_TEXT:
                return False
            raise ValueRuleError(f"{_where(ctype)} holds text that is not a yes/no value")
        raise ValueRuleError(f"{_where(ctype)} holds a value that is not a boolean or 0/1")

    return convert


def _base64(ctype: ColumnType, *, text: bool) -> Converter:
    def convert(value: Any) -> str:
        if isinstance(value, bytes | bytearray | memoryview):
            return base64.b64encode(value).decode("ascii")
        if text and type(value) is str:
            return base64.b64encode(value.encode("utf-8")).decode("ascii")
        raise ValueRuleError(f"{_where(ctype)} holds a {type(value).__name__}, not binary data")

    return convert


def _json_number(text: str) -> Decimal:
    """JSON numbers with a fraction or exponent are read exactly (never through a binary float)."""
    number = Decimal(text)
    if not -_MAX_ADJUSTED <= number.adjusted() <= _MAX_ADJUSTED:
        raise ValueRuleError("JSON text holds a number outside the supported range")
    return number


_JSON_DECODER = msgspec.json.Decoder(float_hook=_json_number)


def _json(ctype: ColumnType) -> Converter:
    def convert(value: Any) -> Any:
        if not isinstance(value, str | bytes):
            raise ValueRuleError(f"{_where(ctype)} holds a {type(value).__name__}, not JSON text")
        try:
            return _JSON_DECODER.decode(value)
        except (msgspec.DecodeError, ValueError, RecursionError):
            raise ValueRuleError(f"{_where(ctype)} holds text that is not valid JSON") from None

    return convert


# --- dates and times ---------------------------------------------------------------------------

_ISO = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[T ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:[.,]([0-9]+))?)?"
    r"(Z|[+-][0-9]{2}(?::?[0-9]{2})?)?)?"
)


def _parse_iso(text: str, ctype: ColumnType) -> datetime:
    """Strict ISO 8601 text (date, or date and time with an optional offset) as a datetime."""
    match = _ISO.fullmatch(text.strip())
    if match is None:
        raise ValueRuleError(f"{_where(ctype)} holds text that is not an ISO date or date-time")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    micro = 0
    if fraction:
        if fraction[6:].strip("0"):
            raise ValueRuleError(f"{_where(ctype)} holds a time finer than microseconds")
        micro = int(fraction[:6].ljust(6, "0"))
    try:
        tzinfo = None
        if offset == "Z":
            tzinfo = UTC
        elif offset:
            digits = offset[1:].replace(":", "")
            minutes = int(digits[:2]) * 60 + int(digits[2:] or 0)
            tzinfo = timezone(timedelta(minutes=-minutes if offset[0] == "-" else minutes))
        return datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            micro,
            tzinfo,
        )
    except ValueError:
        raise ValueRuleError(f"{_where(ctype)} holds text that is not a valid date") from None


def _moment(value: Any, ctype: ColumnType) -> tuple[datetime, bool]:
    """A staged date/time value as a naive datetime (UTC when zoned) and whether it is zoned.

    timestamp_tz values are always zoned (naive ones are taken as UTC); text is zoned when it
    carries an offset; date and timestamp columns must not carry one.
    """
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        moment = _parse_iso(value, ctype)
    else:
        raise ValueRuleError(f"{_where(ctype)} holds a {type(value).__name__}, not a date")
    if moment.tzinfo is None:
        return moment, ctype.kind is _K.TIMESTAMP_TZ
    if ctype.kind is _K.DATE or ctype.kind is _K.TIMESTAMP:
        raise ValueRuleError(f"{_where(ctype)} holds a date-time with a time zone")
    try:
        return moment.astimezone(UTC).replace(tzinfo=None), True
    except OverflowError:
        raise ValueRuleError(f"{_where(ctype)} holds a date-time out of range in UTC") from None


def _date_form(ctype: ColumnType) -> Converter:
    """DATE kind: a date at midnight, a date-time otherwise."""

    def convert(value: Any) -> str:
        moment, _ = _moment(value, ctype)
        if moment.hour or moment.minute or moment.second or moment.microsecond:
            return moment.isoformat()
        return moment.date().isoformat()

    return convert


def _datetime_form(ctype: ColumnType) -> Converter:
    """Always the date-time form (isoformat writes .ffffff only when not zero), "Z" when zoned."""

    def convert(value: Any) -> str:
        moment, zoned = _moment(value, ctype)
        return moment.isoformat() + "Z" if zoned else moment.isoformat()

    return convert


def _date_only(ctype: ColumnType) -> Converter:
    def convert(value: Any) -> str:
        return _moment(value, ctype)[0].date().isoformat()

    return convert


def _yyyymmdd(ctype: ColumnType) -> Converter:
    def convert(value: Any) -> int:
        moment = _moment(value, ctype)[0]
        return moment.year * 10000 + moment.month * 100 + moment.day

    return convert


# --- strings and dispatch ----------------------------------------------------------------------


def _string(ctype: ColumnType) -> Converter:
    def convert(value: Any) -> str:
        if isinstance(value, str):
            return value
        raise ValueRuleError(f"{_where(ctype)} holds a {type(value).__name__}, not text")

    return convert


def _natural(ctype: ColumnType) -> Converter:
    """The converter a column's kind implies when the mapping gives no `as:`."""
    kind = ctype.kind
    if kind is _K.STRING:
        return _string(ctype)
    if kind is _K.INTEGER:
        return _integer(ctype, text=False)
    if kind is _K.DECIMAL:
        if ctype.scale is None or ctype.scale <= 0:
            raise ValueError(f"a decimal column type needs a positive scale: {ctype.declared}")
        return _scaled(ctype, ctype.scale, text=False)
    if kind is _K.NUMBER:
        return _shortest(ctype, text=False)
    if kind is _K.FLOAT:
        return _float(ctype)
    if kind is _K.DATE:
        return _date_form(ctype)
    if kind in (_K.TIMESTAMP, _K.TIMESTAMP_TZ):
        return _datetime_form(ctype)
    if kind is _K.BOOLEAN:
        return _boolean(ctype, text=False)
    if kind is _K.BINARY:
        return _base64(ctype, text=False)
    return _json(ctype)


def _override(ctype: ColumnType, as_: str) -> Converter:
    """The converter for an `as:` that applies to the column's kind."""
    text = ctype.kind is _K.STRING
    if as_ == "string":
        return text_converter(ctype)
    if as_ == "integer":
        return _integer(ctype, text=text)
    if as_ == "decimal":
        scale = ctype.scale
        if scale is not None and scale >= 0 and ctype.kind is not _K.STRING:
            return _scaled(ctype, scale, text=text)
        return _exact(ctype, text=text)
    if as_ == "number":
        return _shortest(ctype, text=text)
    if as_ == "boolean":
        return _boolean(ctype, text=text)
    if as_ == "date":
        return _date_only(ctype)
    if as_ == "datetime":
        return _datetime_form(ctype)
    if as_ == "yyyymmdd":
        return _yyyymmdd(ctype)
    if as_ == "base64":
        return _base64(ctype, text=text)
    return _json(ctype)


def json_converter(ctype: ColumnType, as_: str | None = None) -> Callable[[Any], Any]:
    """The function turning one staged (non-NULL) value of this column into its JSON-ready value.

    An `as_` that does not apply to the column's kind gives a converter that rejects every row (a
    mapping check should report it first, see `as_accepts`); an unknown `as_` is a ValueError.
    """
    if as_ is None:
        return _natural(ctype)
    if as_ not in AS_TYPES:
        raise ValueError(f"unknown as: {as_!r} (expected one of {', '.join(sorted(AS_TYPES))})")
    if not as_accepts(ctype.kind, as_):
        reason = f"as: {as_} does not apply to a {_where(ctype)}"

        def refuse(value: Any) -> Any:
            raise ValueRuleError(reason)

        return refuse
    return _override(ctype, as_)


def text_converter(ctype: ColumnType) -> Callable[[Any], str]:
    """The function giving the text form of one staged value (keys, `_bin` indexes, codes)."""
    kind = ctype.kind
    convert = _natural(ctype)
    if kind in (_K.STRING, _K.DATE, _K.TIMESTAMP, _K.TIMESTAMP_TZ, _K.BINARY):
        return convert  # already text
    if kind is _K.JSON:
        return lambda value: canonical_json(convert(value)).decode("utf-8")
    if kind is _K.INTEGER:
        return lambda value: str(convert(value))
    if kind is _K.DECIMAL or kind is _K.NUMBER:
        return lambda value: decimal_text(convert(value))
    if kind is _K.FLOAT:
        return lambda value: float_text(convert(value))
    return lambda value: "true" if convert(value) else "false"


def json_text(value: Any) -> str:
    """The text form of an already-built scalar JSON value, exactly as canonical JSON writes it."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, Decimal | float):
        finite = value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)
        if not finite:
            raise ValueRuleError("a number in the document is not finite")
        return decimal_text(value) if isinstance(value, Decimal) else float_text(value)
    if value is None:
        name = "null"
    elif isinstance(value, dict):
        name = "an object"
    elif isinstance(value, list | tuple):
        name = "an array"
    else:
        name = f"a {type(value).__name__}"
    raise ValueRuleError(f"{name} has no text form (only strings, numbers and booleans do)")
