"""Key templates: literal text with `{COLUMN}` placeholders, `{{` and `}}` for literal braces.

Parsing is shared by validation (which reports every mistake) and compilation (which renders keys).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from migrate.mapping.values import ValueRuleError, text_converter
from migrate.schema import TableInfo, ValueKind

KeyFn = Callable[[tuple[Any, ...]], str]


@dataclass(frozen=True, slots=True)
class Placeholder:
    """A `{COLUMN}` in a template, as written."""

    column: str


KeyPart = str | Placeholder


@dataclass(frozen=True, slots=True)
class ParsedTemplate:
    """The parts of a template in order (adjacent literal text merged), and its mistakes."""

    parts: tuple[KeyPart, ...]
    errors: tuple[str, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(part.column for part in self.parts if isinstance(part, Placeholder))


def parse_template(text: str) -> ParsedTemplate:
    """Split a key template into literal text and placeholders, collecting every mistake."""
    parts: list[KeyPart] = []
    errors: list[str] = []
    literal: list[str] = []

    def flush() -> None:
        if literal:
            parts.append("".join(literal))
            literal.clear()

    i = 0
    while i < len(text):
        pair = text[i : i + 2]
        if pair in ("{{", "}}"):
            literal.append(pair[0])
            i += 2
            continue
        char = text[i]
        if char == "}":
            errors.append(
                f"`}}` at position {i + 1} closes nothing; write `}}}}` for a literal brace"
            )
            i += 1
            continue
        if char != "{":
            literal.append(char)
            i += 1
            continue
        end = text.find("}", i + 1)
        nested = text.find("{", i + 1)
        if end < 0 or 0 <= nested < end:
            errors.append(
                f"`{{` at position {i + 1} is never closed; write `{{{{` for a literal brace"
            )
            i += 1
            continue
        column = text[i + 1 : end].strip()
        if not column:
            errors.append(f"empty placeholder `{{}}` at position {i + 1}")
        else:
            if not literal and parts and isinstance(parts[-1], Placeholder):
                errors.append(
                    f"placeholders `{{{parts[-1].column}}}` and `{{{column}}}` touch, so keys are "
                    "ambiguous; put a separator such as `:` between them"
                )
            flush()
            parts.append(Placeholder(column))
        i = end + 1
    flush()
    return ParsedTemplate(tuple(parts), tuple(errors))


def default_template(primary_key: tuple[str, ...]) -> ParsedTemplate:
    """The key used without `key:`: the primary-key columns joined by `:`."""
    parts: list[KeyPart] = []
    for position, column in enumerate(primary_key):
        if position:
            parts.append(":")
        parts.append(Placeholder(column))
    return ParsedTemplate(tuple(parts), ())


def _then(first: Callable[[Any], str], second: Callable[[str], str]) -> Callable[[Any], str]:
    return lambda value: second(first(value))


class RowError(Exception):
    """One root row breaks a rule; `field` is the mapping path at fault."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def guard(convert: Callable[[Any], Any], column: str, path: str) -> Callable[[Any], Any]:
    """`convert`, with a value-rule failure turned into a `RowError` naming the column."""

    def guarded(value: Any) -> Any:
        try:
            return convert(value)
        except ValueRuleError as exc:
            raise RowError(path, f"column {column}: {exc.reason}") from None

    return guarded


def escaped_characters(template: ParsedTemplate) -> tuple[str, ...]:
    """What `key_escape: percent` escapes inside a value: `%` first, then every character of the
    template's literal text (its separators), so a key reads back to exactly one row."""
    literal = {char for part in template.parts if isinstance(part, str) for char in part}
    return ("%", *sorted(literal - {"%"}))


def percent(char: str) -> str:
    """A character as %XX per UTF-8 byte."""
    return "".join(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))


def escaper(template: ParsedTemplate) -> Callable[[str], str]:
    """The function that escapes one rendered value for `key_escape: percent`."""
    pairs = [(char, percent(char)) for char in escaped_characters(template)]

    def escape(text: str) -> str:
        for char, code in pairs:
            if char in text:
                text = text.replace(char, code)
        return text

    return escape


def compile_key(
    template: ParsedTemplate,
    table: TableInfo,
    position: Callable[[str], int],
    *,
    escape: str | None = None,
) -> KeyFn:
    """A function rendering a root row's key; a NULL placeholder or an empty key is a `RowError`.

    `position` gives a column's index in the row tuple; `escape` is the mapping's `key_escape`.
    """
    parts: list[str | tuple[int, Callable[[Any], str], str]] = []
    escape_value = escaper(template) if escape == "percent" else None
    for part in template.parts:
        if isinstance(part, Placeholder):
            column = table.column(part.column)
            if column is None:
                raise KeyError(part.column)
            convert = guard(text_converter(column.type), column.name, "key")
            if escape_value is not None:
                convert = _then(convert, escape_value)
            parts.append((position(column.name), convert, column.name))
        else:
            parts.append(part)

    def key(row: tuple[Any, ...]) -> str:
        out: list[str] = []
        for part in parts:
            if isinstance(part, str):
                out.append(part)
                continue
            at, convert, name = part
            raw = row[at]
            if raw is None:
                raise RowError("key", f"NULL in key column {name}")
            out.append(convert(raw))
        text = "".join(out)
        if not text:
            raise RowError("key", "the key is empty")
        return text

    return key


# Characters the text form of each kind can hold (None: any character).
_DIGITS = frozenset("0123456789")
_KIND_CHARACTERS: dict[ValueKind, frozenset[str] | None] = {
    ValueKind.STRING: None,
    ValueKind.JSON: None,
    ValueKind.BINARY: _DIGITS
    | frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz+/="),
    ValueKind.INTEGER: _DIGITS | {"-"},
    ValueKind.DECIMAL: _DIGITS | {"-", "."},
    ValueKind.NUMBER: _DIGITS | {"-", "."},
    ValueKind.FLOAT: _DIGITS | frozenset("-.e+infa"),
    ValueKind.DATE: _DIGITS | frozenset("-:T."),
    ValueKind.TIMESTAMP: _DIGITS | frozenset("-:T."),
    ValueKind.TIMESTAMP_TZ: _DIGITS | frozenset("-:T.Z"),
    ValueKind.BOOLEAN: frozenset("truefals"),
}


def separator_hazards(template: ParsedTemplate, table: TableInfo) -> list[tuple[str, str]]:
    """(column, separators) for each placeholder whose values can hold a character of the text
    that follows it in the template: two rows could then render one key (both are rejected as a
    collision when they do). `key_escape: percent` removes every hazard."""
    found: dict[str, set[str]] = {}
    parts = template.parts
    for position, part in enumerate(parts):
        # A value can only be misread where text and then another value follow it: the part
        # ends at that text. The last placeholder takes the rest, whatever it holds.
        following = parts[position + 1] if position + 1 < len(parts) else None
        later = any(isinstance(p, Placeholder) for p in parts[position + 1 :])
        if not isinstance(part, Placeholder) or not isinstance(following, str) or not later:
            continue
        column = table.column(part.column)
        if column is None:
            continue
        possible = _KIND_CHARACTERS.get(column.type.kind)
        hits = {c for c in following if possible is None or c in possible}
        if hits:
            found.setdefault(column.name, set()).update(hits)
    return [(name, "".join(sorted(chars))) for name, chars in found.items()]
