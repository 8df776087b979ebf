"""Fuzzing the mapping loader and validator (issue 15): whatever a mapping file holds, loading it
(`parse_mapping`) and compiling it against the demo schema (`compile_mapping`) gives a plan or a
`MappingError` naming file:line problems, never another exception.

Inputs: random text, YAML-ish text made of YAML's own punctuation, random structures dumped as
YAML, and mutations of the demo mappings in `mappings/` (of their structure and of their text).
The examples are derandomized (CI runs the same ones every time); FUZZ_EXAMPLES=N runs N of each
kind, with a random seed, to look further.
"""

from __future__ import annotations

import os
import sqlite3
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrate.errors import MappingError, MigrateError
from migrate.mapping import compile_mapping, parse_mapping
from migrate.schema import SchemaInfo

MAPPINGS = Path(__file__).parents[2] / "mappings"
DEMO = {path.name: path.read_text() for path in sorted(MAPPINGS.glob("*.yaml"))}
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=EXAMPLES or 150,
    derandomize=not EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


@cache
def demo_schema() -> SchemaInfo:
    """The demo estate's schema, reflected from an empty SQLite file built from its DDL."""
    import tempfile

    from migrate.demo.schema import TABLES
    from migrate.source import Source

    with tempfile.TemporaryDirectory(prefix="fuzz-schema-") as folder:
        database = Path(folder) / "legacy.db"
        db = sqlite3.connect(database)
        try:
            for _name, ddl in TABLES:
                db.execute(ddl)
        finally:
            db.close()
        source = Source(f"sqlite:///{database}")
        try:
            return source.reflect()
        finally:
            source.close()


def load_and_compile(text: str) -> None:
    """Parse and compile; a plan or a MappingError with its problems pass, anything else fails."""
    try:
        mapping = parse_mapping(text, Path("fuzz.yaml"))
        compile_mapping(mapping, demo_schema())
    except MappingError as exc:
        assert exc.problems, "a MappingError with no problem in it"
        for problem in exc.problems:
            assert problem.file == "fuzz.yaml" and problem.line >= 1, problem
            assert problem.message, problem
        assert exc.exit_code == 2
    except MigrateError as exc:  # any other error the toolkit raises on purpose is acceptable
        assert exc.render()


def test_every_demo_mapping_compiles() -> None:
    """The mutations below start from mappings that compile."""
    for text in DEMO.values():
        parse_mapping(text, Path("demo.yaml"))
        compile_mapping(parse_mapping(text, Path("demo.yaml")), demo_schema())


# -- random and YAML-ish text ------------------------------------------------------------------

YAML_PIECES = st.sampled_from(
    [
        ":", ": ", "- ", "-", "{", "}", "[", "]", ",", "?", "&a ", "*a", "&b ", "*b", "!!str ",
        "!!int ", "!!binary ", "!!python/name:os.system ", "!x ", "|", ">", "'", '"', "#", "%",
        "<<: ", "~", "null", "true", "NO", "1.5e3", ".nan", ".inf", "0x1F", "2024-02-30",
        "\n", "\n  ", "\n    ", "\t", " ", "---\n", "...\n", "\ufeff", "\x00", "\U0001f600",
        "service", "documents", "table", "bucket", "key", "fields", "indexes", "where", "column",
        "literal", "embed", "lookup", "on", "order_by", "single", "values", "default", "as",
        "field", "nulls", "key_escape", "bucket_type", "PATIENTS", "NHS_NUMBER", "ORGANISATIONS",
        "ODS_CODE", "{NHS_NUMBER}", "{ODS_CODE}/{ROLE_CODE}", "patients", "x", "date",
        "datetime", "integer", "yyyymmdd", "_bin", "_int", "gp_bin", "addresses.postcode",
    ]
)  # fmt: skip


@FUZZ
@given(st.text(max_size=400))
def test_random_text(text: str) -> None:
    load_and_compile(text)


@FUZZ
@given(st.lists(YAML_PIECES, max_size=80).map("".join))
def test_yaml_ish_text(text: str) -> None:
    load_and_compile(text)


# -- random structures dumped as YAML ---------------------------------------------------------

KEYS = st.one_of(
    st.sampled_from(
        ["service", "documents", "table", "bucket", "bucket_type", "key", "key_escape", "where",
         "nulls", "fields", "indexes", "description", "version", "column", "literal", "embed",
         "lookup", "on", "order_by", "single", "values", "default", "as", "field",
         "PATIENTS", "NHS_NUMBER", "ODS_CODE", "FAMILY_NAME", "gp_bin", "serial_int"]
    ),
    st.text(max_size=12),
)  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(["PATIENTS", "NHS_NUMBER", "{NHS_NUMBER}", "omit", "keep", "percent",
                     "date", "datetime", "string", "integer", "yyyymmdd", "ORGANISATIONS"]),
    st.dates(),
    st.binary(max_size=8),
)  # fmt: skip
STRUCTURES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=5)),
    max_leaves=40,
)


def dumped(value: Any) -> str:
    return yaml.dump(value, allow_unicode=True, sort_keys=False)


@FUZZ
@given(STRUCTURES)
def test_random_structures(value: Any) -> None:
    load_and_compile(dumped(value))


@FUZZ
@given(
    st.fixed_dictionaries(
        {"service": SCALARS, "documents": st.dictionaries(KEYS, STRUCTURES, max_size=3)}
    )
)
def test_random_documents(value: Any) -> None:
    load_and_compile(dumped(value))


# -- a mapping's skeleton with every slot filled at random --------------------------------------

# YAML scalars as written, tags and all: what a slot may hold besides a sensible value.
SNIPPETS = st.one_of(
    st.sampled_from(
        ["2024-02-30", "2024-02-29", "2001-12-14 21:59:43.10 -25:00", "!!timestamp foo",
         "!!timestamp 2024-13-01", "!!float abc", "!!float 1e999", "!!int abc", "!!int 0x",
         "!!bool maybe", "!!binary '!!'", "!!binary aGVsbG8=", "!!null x", "!!set {a: 1}",
         "!!omap [a]", "!!pairs [a]", "!!str", "!!python/tuple [1]", "!x y", "~", "''", "\"\"",
         ".nan", "-.inf", "1e400", "0o19", "0b2", "1_0", "99999999999999999999999999",
         "{}", "[]", "[a, {b: c}]", "{a: [b]}", "&v v", "'{NHS_NUMBER'", "'{}'", "'{{x}}'",
         "'{NHS_NUMBER}{GIVEN_NAME}'", "'{NHS_NUMBER}:{X}'", "'a/{NHS_NUMBER}'", "Y", "NO"]
    ),
    st.from_regex(r"[ -~]{0,12}", fullmatch=True).map(lambda t: "'" + t.replace("'", "''") + "'"),
)  # fmt: skip
TABLES = st.sampled_from(
    ["PATIENTS", "PATIENT_ADDRESSES", "PATIENT_NAMES", "PATIENT_PHARMACIES", "ORGANISATIONS",
     "ORG_ROLES", "PRESCRIPTIONS", "PRESCRIPTION_ITEMS", "DRUGS", "patients", "NOPE"]
)  # fmt: skip
COLUMNS = st.sampled_from(
    ["NHS_NUMBER", "GIVEN_NAME", "FAMILY_NAME", "DATE_OF_BIRTH", "GENDER", "GP_PRACTICE_CODE",
     "RECORD_UID", "CREATED_AT", "SERIAL_CHANGE", "DATE_OF_DEATH", "ODS_CODE", "NAME",
     "POSTCODE", "FROM_DATE", "LINE1", "PHARMACY_ODS_CODE", "EXTRA_ATTRS", "LAST_CHANGED",
     "nhs_number", "NOPE"]
)  # fmt: skip
AS = st.sampled_from(["date", "datetime", "string", "integer", "number", "boolean", "yyyymmdd",
                      "base64", "hex", "json", "nope"])  # fmt: skip


def slot(sensible: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(sensible, sensible, SNIPPETS)


@st.composite
def skeletons(draw: st.DrawFn) -> str:
    """A demo-like mapping with a document type using every form of field and index."""
    column, table = slot(COLUMNS), slot(TABLES)
    on = st.builds(lambda a, b: f"{{{a}: {b}}}", column, column)
    value = st.one_of(column, SNIPPETS)
    values = st.lists(st.builds(lambda a, b: f"{a}: {b}", SNIPPETS, SNIPPETS), max_size=3).map(
        lambda items: "{" + ", ".join(items) + "}"
    )
    fields = [
        f"a: {draw(value)}",
        f"b: {{literal: {draw(SNIPPETS)}}}",
        f"c: {{column: {draw(column)}, as: {draw(slot(AS))}}}",
        f"d: {{column: {draw(column)}, values: {draw(values)}, default: {draw(SNIPPETS)}}}",
        f"e: {{embed: {draw(table)}, on: {draw(on)}, order_by: [{draw(column)}], "
        f"single: {draw(slot(st.sampled_from(['true', 'false'])))}, "
        f"fields: {{x: {draw(column)}, y: {{lookup: {draw(table)}, on: {draw(on)}, "
        f"field: {draw(column)}}}}}}}",
        f"f: {{lookup: {draw(table)}, on: {draw(on)}, fields: {{n: {draw(column)}}}}}",
        f"g: [{draw(column)}, {draw(column)}]",
        f"h: {{k: {{literal: {draw(SNIPPETS)}}}}}",
    ]
    kept = draw(st.lists(st.sampled_from(fields), min_size=1, max_size=len(fields), unique=True))
    index = st.sampled_from(["gp_bin", "family_bin", "birth_int", "x_bin", "bad", "$key"])
    indexes = draw(
        st.lists(
            st.builds(
                lambda n, c, a: f"{n}: {{column: {c}, as: {a}}}" if a else f"{n}: {c}",
                index,
                st.one_of(column, st.sampled_from(["e.x", "a", "h.k", "c"])),
                st.one_of(st.none(), slot(AS)),
            ),
            max_size=3,
        )
    )
    key = draw(slot(st.sampled_from(["'{NHS_NUMBER}'", "'p/{NHS_NUMBER}'", "NHS_NUMBER"])))
    where = draw(slot(st.sampled_from(["'SENSITIVE_FLAG IS NULL'", "'1 = 1'"])))
    lines = [
        f"service: {draw(slot(st.sampled_from(['pds', 'x'])))}",
        "documents:",
        "  patient:",
        f"    table: {draw(table)}",
        f"    bucket: {draw(slot(st.sampled_from(['patients'])))}",
        f"    key: {key}",
        f"    where: {where}",
        f"    nulls: {draw(slot(st.sampled_from(['omit', 'keep'])))}",
        f"    key_escape: {draw(slot(st.sampled_from(['percent'])))}",
        "    fields:",
        *(f"      {f}" for f in kept),
    ]
    if indexes:
        lines += ["    indexes:", *(f"      {i}" for i in indexes)]
    return "\n".join(lines) + "\n"


@FUZZ
@given(skeletons())
def test_a_mapping_skeleton_with_random_slots(text: str) -> None:
    load_and_compile(text)


# -- mutations of the demo mappings ------------------------------------------------------------


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a node of a loaded YAML structure (the root included)."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found.extend(_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(_paths(item, (*prefix, index)))
    return found


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {k: (_replace(v, rest, new) if k == head else v) for k, v in value.items()}
    return [(_replace(v, rest, new) if i == head else v) for i, v in enumerate(value)]


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


_DELETE = object()


def _mutate(value: Any, path: tuple[Any, ...], how: str, new: Any, key: Any) -> Any:
    node = _get(value, path)
    if how == "replace":
        return _replace(value, path, new)
    if how == "delete" and path:
        parent = _get(value, path[:-1])
        if isinstance(parent, dict):
            trimmed = {k: v for k, v in parent.items() if k != path[-1]}
        else:
            trimmed = [v for i, v in enumerate(parent) if i != path[-1]]
        return _replace(value, path[:-1], trimmed)
    if how == "add" and isinstance(node, dict):
        return _replace(value, path, {**node, key: new})
    if how == "add" and isinstance(node, list):
        return _replace(value, path, [*node, new])
    if how == "wrap":
        return _replace(value, path, [node] if not isinstance(node, list) else {str(key): node})
    if how == "rename" and path and isinstance(_get(value, path[:-1]), dict):
        parent = _get(value, path[:-1])
        renamed = {(key if k == path[-1] else k): v for k, v in parent.items()}
        return _replace(value, path[:-1], renamed)
    return value


MUTATION = st.tuples(
    st.sampled_from(["replace", "delete", "add", "wrap", "rename"]),
    st.one_of(SCALARS, STRUCTURES),
    KEYS,
    st.integers(min_value=0),
)


@FUZZ
@given(st.sampled_from(sorted(DEMO)), st.lists(MUTATION, min_size=1, max_size=4))
def test_mutated_demo_structures(name: str, mutations: list[Any]) -> None:
    value = yaml.safe_load(DEMO[name])
    for how, new, key, where in mutations:
        paths = _paths(value)
        value = _mutate(value, paths[where % len(paths)], how, new, key)
    load_and_compile(dumped(value))


TEXT_EDIT = st.tuples(
    st.sampled_from(["insert", "delete", "replace", "duplicate-line", "indent", "dedent"]),
    st.integers(min_value=0),
    st.one_of(YAML_PIECES, st.text(min_size=1, max_size=3)),
)


@FUZZ
@given(st.sampled_from(sorted(DEMO)), st.lists(TEXT_EDIT, min_size=1, max_size=6))
def test_mutated_demo_text(name: str, edits: list[tuple[str, int, str]]) -> None:
    text = DEMO[name]
    for how, where, piece in edits:
        at = where % (len(text) + 1)
        lines = text.split("\n")
        line = where % len(lines)
        if how == "insert":
            text = text[:at] + piece + text[at:]
        elif how == "delete":
            text = text[:at] + text[at + len(piece) :]
        elif how == "replace":
            text = text[:at] + piece + text[at + len(piece) :]
        elif how == "duplicate-line":
            text = "\n".join([*lines[: line + 1], lines[line], *lines[line + 1 :]])
        elif how == "indent":
            text = "\n".join([*lines[:line], "  " + lines[line], *lines[line + 1 :]])
        else:
            text = "\n".join([*lines[:line], lines[line][2:], *lines[line + 1 :]])
    load_and_compile(text)


@pytest.mark.parametrize("name", sorted(DEMO))
def test_every_demo_mapping_cut_at_every_line(name: str) -> None:
    """A mapping file cut short (a copy interrupted, a save half done) at any line."""
    lines = DEMO[name].split("\n")
    for end in range(len(lines)):
        load_and_compile("\n".join(lines[:end]))
