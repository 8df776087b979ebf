"""Key templates: literal text with `{COLUMN}` placeholders, `{{` and `}}` for literal braces.

Parsing is shared by validation (which reports every mistake) and compilation (which renders keys).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from migrate.mapping.values import ValueRuleError, text_converter
from migrate.schema import TableInfo

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


def compile_key(
    template: ParsedTemplate, table: TableInfo, position: Callable[[str], int]
) -> KeyFn:
    """A function rendering a root row's key; a NULL placeholder or an empty key is a `RowError`.

    `position` gives a column's index in the row tuple.
    """
    parts: list[str | tuple[int, Callable[[Any], str], str]] = []
    for part in template.parts:
        if isinstance(part, Placeholder):
            column = table.column(part.column)
            if column is None:
                raise KeyError(part.column)
            convert = guard(text_converter(column.type), column.name, "key")
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
