"""The demo estate: deterministic, Oracle-shaped, dirty in the ways a real estate is, and a project
folder whose mappings exercise every form of docs/mapping.md without rejecting a single row."""

from __future__ import annotations

import itertools
import json
import random
import re
import sqlite3
import stat
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from migrate.demo import SERVICES, create_demo, mapping_text
from migrate.demo.generate import nhs_check_digit, shuffled
from migrate.errors import EXIT_USAGE, UsageError

REPO = Path(__file__).resolve().parents[2]
PATIENTS = 2000
SEED = 11


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("demo") / "project"
    create_demo(directory, patients=PATIENTS, seed=SEED)
    return directory


@pytest.fixture(scope="module")
def db(project: Path) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(project / "legacy.db")
    yield connection
    connection.close()


def scalar(db: sqlite3.Connection, sql: str) -> Any:
    return db.execute(sql).fetchone()[0]


def column(db: sqlite3.Connection, sql: str) -> list[Any]:
    return [row[0] for row in db.execute(sql)]


def dump(path: Path) -> list[str]:
    connection = sqlite3.connect(path)
    try:
        return list(connection.iterdump())
    finally:
        connection.close()


# -- determinism and size -------------------------------------------------------------------------


def test_same_seed_gives_an_identical_database(tmp_path: Path) -> None:
    create_demo(tmp_path / "a", patients=300, seed=5)
    create_demo(tmp_path / "b", patients=300, seed=5)
    first, second = dump(tmp_path / "a" / "legacy.db"), dump(tmp_path / "b" / "legacy.db")
    assert len(first) > 300
    assert first == second
    assert (tmp_path / "a" / "legacy.db").read_bytes() == (
        tmp_path / "b" / "legacy.db"
    ).read_bytes()


def test_another_seed_gives_another_database(tmp_path: Path) -> None:
    create_demo(tmp_path / "a", patients=300, seed=5)
    create_demo(tmp_path / "b", patients=300, seed=6)
    first = dump(tmp_path / "a" / "legacy.db")
    second = dump(tmp_path / "b" / "legacy.db")
    # every data table differs, not just one
    for table in ("PATIENTS", "ORGANISATIONS", "SCR_RECORDS", "PRESCRIPTIONS", "DISPENSE_EVENTS"):
        rows_a = [line for line in first if line.startswith(f'INSERT INTO "{table}"')]
        rows_b = [line for line in second if line.startswith(f'INSERT INTO "{table}"')]
        assert rows_a and rows_b and rows_a != rows_b, table


def test_sizes_scale_with_patients(tmp_path: Path, db: sqlite3.Connection) -> None:
    summary = create_demo(tmp_path / "small", patients=200, seed=SEED)
    small = sqlite3.connect(summary.database)
    try:
        for connection, patients in ((small, 200), (db, PATIENTS)):

            def count(table: str, c: sqlite3.Connection = connection) -> int:
                return int(scalar(c, f"SELECT count(*) FROM {table}"))

            assert count("PATIENTS") == patients
            assert count("ORGANISATIONS") == max(50, patients // 20)
            assert count("SCR_RECORDS") == patients // 2
            assert count("PRESCRIPTIONS") == patients * 3 // 2
            assert (
                count("PRESCRIPTIONS") <= count("PRESCRIPTION_ITEMS") <= 4 * count("PRESCRIPTIONS")
            )
            assert count("DISPENSE_EVENTS") <= 2 * count("PRESCRIPTION_ITEMS")
        per_item = column(
            db,
            "SELECT count(*) FROM PRESCRIPTION_ITEMS GROUP BY PRESCRIBER_ODS_CODE, PRESCRIPTION_NO",
        )
        assert min(per_item) == 1 and max(per_item) == 4
        per_event = column(
            db,
            "SELECT count(e.EVENT_ID) FROM PRESCRIPTION_ITEMS i "
            "LEFT JOIN DISPENSE_EVENTS e ON e.ITEM_ID = i.ITEM_ID GROUP BY i.ITEM_ID",
        )
        assert set(per_event) == {0, 1, 2}
    finally:
        small.close()


def test_summary_counts_match_the_database(tmp_path: Path) -> None:
    summary = create_demo(tmp_path / "p", patients=150, seed=2)
    connection = sqlite3.connect(summary.database)
    try:
        tables = column(connection, "SELECT name FROM sqlite_master WHERE type = 'table'")
        assert sorted(summary.rows) == sorted(tables)
        for table, count in summary.rows.items():
            assert scalar(connection, f"SELECT count(*) FROM {table}") == count
    finally:
        connection.close()
    assert summary.total_rows == sum(summary.rows.values())
    assert summary.directory == tmp_path / "p"
    assert summary.config == tmp_path / "p" / "migrate.toml"
    assert summary.mappings == {s: tmp_path / "p" / "mappings" / f"{s}.yaml" for s in SERVICES}


def test_progress_reports_every_table(tmp_path: Path) -> None:
    messages: list[str] = []
    create_demo(tmp_path / "p", patients=100, seed=1, progress=messages.append)
    text = "\n".join(messages)
    for table in ("ORGANISATIONS", "PATIENTS", "SCR_ADVERSE_REACTIONS", "DISPENSE_EVENTS"):
        assert f"{table}: " in text


# -- the schema -----------------------------------------------------------------------------------


def declared_types(db: sqlite3.Connection) -> dict[tuple[str, str], str]:
    types = {}
    for table in column(db, "SELECT name FROM sqlite_master WHERE type = 'table'"):
        for _cid, name, declared, *_rest in db.execute(f"PRAGMA table_info({table})"):
            types[(table, name)] = declared
    return types


def test_ddl_uses_every_oracle_type_name(db: sqlite3.Connection) -> None:
    declared = set(declared_types(db).values())
    patterns = {
        "VARCHAR2(n)": r"VARCHAR2\(\d+\)",
        "NVARCHAR2(n)": r"NVARCHAR2\(\d+\)",
        "CHAR(n)": r"CHAR\(\d+\)",
        "NUMBER(p)": r"NUMBER\(\d+\)",
        "NUMBER(p,s)": r"NUMBER\(\d+,[1-9]\d*\)",
        "DATE": r"DATE",
        "TIMESTAMP": r"TIMESTAMP(\(\d\))?",
        "TIMESTAMP WITH TIME ZONE": r"TIMESTAMP WITH TIME ZONE",
        "CLOB": r"CLOB",
        "BLOB": r"BLOB",
        "RAW(16)": r"RAW\(16\)",
        "BINARY_DOUBLE": r"BINARY_DOUBLE",
    }
    for name, pattern in patterns.items():
        assert any(re.fullmatch(pattern, d) for d in declared), name
    # no SQLite-native names slipped in
    assert not declared & {"TEXT", "INTEGER", "REAL", "NUMERIC"}


def primary_key(db: sqlite3.Connection, table: str) -> list[str]:
    info = sorted((row[5], row[1]) for row in db.execute(f"PRAGMA table_info({table})"))
    return [name for position, name in info if position > 0]


def test_primary_keys_are_declared_and_some_are_composite(db: sqlite3.Connection) -> None:
    tables = column(db, "SELECT name FROM sqlite_master WHERE type = 'table'")
    assert all(primary_key(db, table) for table in tables)
    assert primary_key(db, "ORG_ROLES") == ["ODS_CODE", "ROLE_CODE", "START_DATE"]
    assert primary_key(db, "PRESCRIPTIONS") == ["PRESCRIBER_ODS_CODE", "PRESCRIPTION_NO"]
    assert primary_key(db, "PRESCRIPTION_ITEMS") == [
        "PRESCRIBER_ODS_CODE",
        "PRESCRIPTION_NO",
        "ITEM_NO",
    ]
    unique = [
        column(db, f"SELECT name FROM pragma_index_info('{index[1]}')")
        for index in db.execute("PRAGMA index_list(PRESCRIPTION_ITEMS)")
        if index[2] and index[3] == "u"
    ]
    assert ["ITEM_ID"] in unique
    # a prescriber really has several prescriptions: the key needs both columns
    assert (
        scalar(
            db,
            "SELECT max(n) FROM "
            "(SELECT count(*) n FROM PRESCRIPTIONS GROUP BY PRESCRIBER_ODS_CODE)",
        )
        > 1
    )


def test_foreign_key_columns_are_indexed(db: sqlite3.Connection) -> None:
    indexed = {
        (table, name)
        for table, index in db.execute(
            "SELECT tbl_name, name FROM sqlite_master WHERE type = 'index'"
        )
        for name in column(db, f"SELECT name FROM pragma_index_info('{index}')")
    }
    for pair in (
        ("PATIENT_ADDRESSES", "NHS_NUMBER"),
        ("SCR_ALLERGIES", "RECORD_ID"),
        ("SCR_ADVERSE_REACTIONS", "ALLERGY_ID"),
        ("DISPENSE_EVENTS", "ITEM_ID"),
    ):
        assert pair in indexed


def test_grandchild_references_its_parent_only(db: sqlite3.Connection) -> None:
    names = {row[1] for row in db.execute("PRAGMA table_info(DISPENSE_EVENTS)")}
    assert "ITEM_ID" in names
    assert not names & {"PRESCRIBER_ODS_CODE", "PRESCRIPTION_NO"}
    orphans = scalar(
        db,
        "SELECT count(*) FROM DISPENSE_EVENTS e "
        "WHERE NOT EXISTS (SELECT 1 FROM PRESCRIPTION_ITEMS i WHERE i.ITEM_ID = e.ITEM_ID)",
    )
    assert orphans == 0


@pytest.mark.parametrize(
    ("child", "link", "parent", "key"),
    [
        ("ORG_ROLES", "ODS_CODE", "ORGANISATIONS", "ODS_CODE"),
        ("PATIENT_NAMES", "NHS_NUMBER", "PATIENTS", "NHS_NUMBER"),
        ("PATIENT_ADDRESSES", "NHS_NUMBER", "PATIENTS", "NHS_NUMBER"),
        ("PATIENT_TELECOMS", "NHS_NUMBER", "PATIENTS", "NHS_NUMBER"),
        ("PATIENT_PHARMACIES", "NHS_NUMBER", "PATIENTS", "NHS_NUMBER"),
        ("SCR_RECORDS", "NHS_NUMBER", "PATIENTS", "NHS_NUMBER"),
        ("SCR_ALLERGIES", "RECORD_ID", "SCR_RECORDS", "RECORD_ID"),
        ("SCR_ADVERSE_REACTIONS", "ALLERGY_ID", "SCR_ALLERGIES", "ALLERGY_ID"),
        ("SCR_MEDICATIONS", "DRUG_CODE", "DRUGS", "DRUG_CODE"),
        ("PRESCRIPTIONS", "NHS_NUMBER", "PATIENTS", "NHS_NUMBER"),
        ("PRESCRIPTION_ITEMS", "DRUG_CODE", "DRUGS", "DRUG_CODE"),
    ],
)
def test_children_have_their_parents(
    db: sqlite3.Connection, child: str, link: str, parent: str, key: str
) -> None:
    assert scalar(db, f"SELECT count(*) FROM {child}") > 0
    missing = scalar(
        db,
        f"SELECT count(*) FROM {child} c WHERE NOT EXISTS "
        f"(SELECT 1 FROM {parent} p WHERE p.{key} = c.{link})",
    )
    assert missing == 0


def test_database_file_is_owner_only(project: Path) -> None:
    assert stat.S_IMODE((project / "legacy.db").stat().st_mode) == 0o600


# -- the data: values and dirt --------------------------------------------------------------------


def valid_nhs_number(number: str) -> bool:
    """Mod 11, written out independently of the generator."""
    if not re.fullmatch(r"\d{10}", number):
        return False
    total = sum(int(number[i]) * (10 - i) for i in range(9))
    check = (11 - total % 11) % 11
    return check != 10 and check == int(number[9])


def test_nhs_numbers_are_valid_and_distinct(db: sqlite3.Connection) -> None:
    numbers = column(db, "SELECT NHS_NUMBER FROM PATIENTS")
    assert len(numbers) == len(set(numbers)) == PATIENTS
    assert all(valid_nhs_number(n) for n in numbers)
    assert {scalar(db, "SELECT typeof(NHS_NUMBER) FROM PATIENTS")} == {"text"}


@pytest.mark.parametrize(
    ("body", "check"),
    [("900000000", 9), ("401023213", 7), ("000000005", 1), ("000000006", None)],
)
def test_nhs_check_digit_known_values(body: str, check: int | None) -> None:
    assert nhs_check_digit(body) == check


@given(st.integers(min_value=0, max_value=999_999_999))
def test_nhs_check_digit_makes_valid_numbers(value: int) -> None:
    body = f"{value:09d}"
    check = nhs_check_digit(body)
    if check is None:
        assert not any(valid_nhs_number(f"{body}{d}") for d in range(10))
    else:
        assert [d for d in range(10) if valid_nhs_number(f"{body}{d}")] == [check]


@settings(max_examples=50)
@given(st.lists(st.integers(), max_size=60), st.integers())
def test_shuffled_is_a_seeded_permutation(items: list[int], seed: int) -> None:
    first = shuffled(random.Random(seed), list(items))
    again = shuffled(random.Random(seed), list(items))
    assert first == again
    assert sorted(first) == sorted(items)


@pytest.mark.parametrize(
    ("table", "name"),
    [
        ("PATIENTS", "GIVEN_NAME"),
        ("PATIENTS", "GENDER"),
        ("PATIENTS", "GP_PRACTICE_CODE"),
        ("PATIENTS", "SENSITIVE_FLAG"),
        ("PATIENTS", "DATE_OF_DEATH"),
        ("ORGANISATIONS", "CLOSE_DATE"),
        ("ORGANISATIONS", "PARENT_ODS_CODE"),
        ("ORGANISATIONS", "EXTRA_ATTRS"),
        ("PATIENT_ADDRESSES", "LINE2"),
        ("PATIENT_ADDRESSES", "POSTCODE"),
        ("PATIENT_ADDRESSES", "TO_DATE"),
        ("SCR_RECORDS", "SUMMARY_NOTE"),
        ("SCR_ALLERGIES", "SEVERITY"),
        ("SCR_ADVERSE_REACTIONS", "ONSET_AT"),
        ("SCR_MEDICATIONS", "DOSE_MG"),
        ("SCR_MEDICATIONS", "STRENGTH"),
        ("PRESCRIPTIONS", "TOTAL_COST"),
        ("DISPENSE_EVENTS", "SIGNATURE"),
        ("DISPENSE_EVENTS", "PHARMACY_ODS_CODE"),
    ],
)
def test_nullable_columns_hold_nulls_and_values(
    db: sqlite3.Connection, table: str, name: str
) -> None:
    nulls = scalar(db, f"SELECT count(*) FROM {table} WHERE {name} IS NULL")
    values = scalar(db, f"SELECT count(*) FROM {table} WHERE {name} IS NOT NULL")
    assert nulls > 0 and values > 0


def test_names_are_not_ascii_only(db: sqlite3.Connection) -> None:
    names = column(db, "SELECT GIVEN_NAME FROM PATIENTS WHERE GIVEN_NAME IS NOT NULL")
    names += column(db, "SELECT FAMILY_NAME FROM PATIENTS")
    assert sum(1 for n in names if not n.isascii()) > len(names) // 20
    assert any("'" in n for n in names)
    assert any(any(ord(ch) > 0xFFFF for ch in n) for n in names)  # outside the BMP
    assert any("\u0308" in n for n in names)  # a combining mark (NFD), kept as stored


def test_long_clobs_are_present(db: sqlite3.Connection) -> None:
    lengths = column(db, "SELECT length(SUMMARY_NOTE) FROM SCR_RECORDS WHERE SUMMARY_NOTE NOT NULL")
    assert max(lengths) > 4000
    assert min(lengths) < 1000
    long_notes = column(
        db, "SELECT SUMMARY_NOTE FROM SCR_RECORDS WHERE length(SUMMARY_NOTE) > 4000"
    )
    assert any(not note.isascii() for note in long_notes)


def test_dates_with_and_without_a_time_of_day(db: sqlite3.Connection) -> None:
    births = column(db, "SELECT DATE_OF_BIRTH FROM PATIENTS")
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d", b) for b in births)
    assert any(b.endswith("-02-29") for b in births)
    deaths = column(db, "SELECT DATE_OF_DEATH FROM PATIENTS WHERE DATE_OF_DEATH IS NOT NULL")
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", d) for d in deaths)
    assert any(not d.endswith("00:00:00") for d in deaths)
    for table, name in (("ORG_ROLES", "START_DATE"), ("PATIENT_ADDRESSES", "FROM_DATE")):
        assert all(v.endswith(" 00:00:00") for v in column(db, f"SELECT {name} FROM {table}"))
    dispensed = column(db, "SELECT DISPENSED_AT FROM DISPENSE_EVENTS")
    assert any(not d.endswith("00:00:00") for d in dispensed)
    stamps = column(db, "SELECT ISSUED_AT FROM PRESCRIPTIONS")
    assert any("." in s for s in stamps) and any("." not in s for s in stamps)


def test_zoned_timestamps_carry_various_offsets(db: sqlite3.Connection) -> None:
    stamps = column(db, "SELECT CREATED_AT FROM PATIENTS")
    stamps += column(db, "SELECT LAST_UPDATED FROM SCR_RECORDS")
    offset = re.compile(r"(Z|[+-]\d\d:\d\d)?$")
    suffixes = {match.group(0) for s in stamps if (match := offset.search(s))}
    assert {"", "Z", "+00:00", "+01:00", "-05:00", "+05:30"} <= suffixes


def test_binary_and_number_storage(db: sqlite3.Connection) -> None:
    uids = db.execute("SELECT DISTINCT typeof(RECORD_UID), length(RECORD_UID) FROM PATIENTS")
    assert uids.fetchall() == [("blob", 16)]
    assert scalar(db, "SELECT count(DISTINCT RECORD_UID) FROM PATIENTS") == PATIENTS
    prices = set(column(db, "SELECT PRICE FROM PRESCRIPTION_ITEMS WHERE PRICE IS NOT NULL"))
    assert {12.5, 0.1, 1234.99} <= prices
    costs = column(db, "SELECT TOTAL_COST FROM PRESCRIPTIONS WHERE TOTAL_COST IS NOT NULL")
    assert any(round(c * 100) % 10 for c in costs)  # amounts with pennies
    quantities = set(column(db, "SELECT QUANTITY FROM PRESCRIPTION_ITEMS"))
    assert 0.125 in quantities and 28 in quantities
    strengths = set(column(db, "SELECT STRENGTH FROM SCR_MEDICATIONS WHERE STRENGTH NOT NULL"))
    assert 1 / 3 in strengths
    signatures = column(db, "SELECT SIGNATURE FROM DISPENSE_EVENTS WHERE SIGNATURE IS NOT NULL")
    assert all(isinstance(s, bytes) and 0 < len(s) <= 64 for s in signatures)


def test_lookups_that_find_nothing(db: sqlite3.Connection) -> None:
    unmatched = scalar(
        db,
        "SELECT count(*) FROM PATIENTS p WHERE GP_PRACTICE_CODE IS NOT NULL AND NOT EXISTS "
        "(SELECT 1 FROM ORGANISATIONS o WHERE o.ODS_CODE = p.GP_PRACTICE_CODE)",
    )
    assert unmatched > 0
    assert scalar(db, "SELECT count(*) FROM PATIENTS WHERE GP_PRACTICE_CODE IS NULL") > 0
    gone = scalar(
        db,
        "SELECT count(*) FROM ORGANISATIONS c WHERE PARENT_ODS_CODE IS NOT NULL AND NOT EXISTS "
        "(SELECT 1 FROM ORGANISATIONS p WHERE p.ODS_CODE = c.PARENT_ODS_CODE)",
    )
    assert gone > 0


def test_sensitive_patients_are_about_one_percent(db: sqlite3.Connection) -> None:
    flags = column(db, "SELECT SENSITIVE_FLAG FROM PATIENTS")
    assert set(flags) == {"S", "N", None}
    assert 0.003 < flags.count("S") / len(flags) < 0.03


def test_some_patients_have_no_address(db: sqlite3.Connection) -> None:
    without = scalar(
        db,
        "SELECT count(*) FROM PATIENTS p WHERE NOT EXISTS "
        "(SELECT 1 FROM PATIENT_ADDRESSES a WHERE a.NHS_NUMBER = p.NHS_NUMBER)",
    )
    assert 0 < without < PATIENTS // 2
    current = column(
        db, "SELECT count(*) FROM PATIENT_ADDRESSES WHERE TO_DATE IS NULL GROUP BY NHS_NUMBER"
    )
    assert min(current) >= 1


@pytest.mark.parametrize(
    ("table", "parent", "order_by"),
    [
        ("PATIENT_ADDRESSES", "NHS_NUMBER", "FROM_DATE"),
        ("ORG_ROLES", "ODS_CODE", "START_DATE"),
        ("SCR_ALLERGIES", "RECORD_ID", "RECORDED_DATE"),
        ("DISPENSE_EVENTS", "ITEM_ID", "DISPENSED_AT"),
    ],
)
def test_ties_in_embed_order(
    db: sqlite3.Connection, table: str, parent: str, order_by: str
) -> None:
    ties = scalar(
        db,
        f"SELECT count(*) FROM (SELECT 1 FROM {table} GROUP BY {parent}, {order_by} "
        "HAVING count(*) > 1)",
    )
    assert ties > 0


@pytest.mark.parametrize(
    ("table", "parent", "row_id"),
    [
        ("PATIENT_ADDRESSES", "NHS_NUMBER", "ADDRESS_ID"),
        ("PATIENT_TELECOMS", "NHS_NUMBER", "TELECOM_ID"),
        ("SCR_ALLERGIES", "RECORD_ID", "ALLERGY_ID"),
        ("SCR_ADVERSE_REACTIONS", "ALLERGY_ID", "REACTION_ID"),
        ("SCR_MEDICATIONS", "RECORD_ID", "MEDICATION_ID"),
        ("PRESCRIPTION_ITEMS", "PRESCRIBER_ODS_CODE || '/' || PRESCRIPTION_NO", "ITEM_ID"),
        ("DISPENSE_EVENTS", "ITEM_ID", "EVENT_ID"),
        ("ORG_ROLES", "ODS_CODE", "rowid"),
    ],
)
def test_child_rows_are_stored_apart_from_their_siblings(
    db: sqlite3.Connection, table: str, parent: str, row_id: str
) -> None:
    """Neither physical order nor id order follows the parent: a source that reads children
    assuming either would break here."""
    for order in ("rowid", row_id):
        parents = column(db, f"SELECT {parent} FROM {table} ORDER BY {order}")
        assert parents != sorted(parents)
        adjacent = sum(1 for a, b in itertools.pairwise(parents) if a == b)
        siblings = len(parents) - len(set(parents))
        assert siblings > 0
        assert adjacent < siblings / 4, f"{table} ordered by {order} keeps siblings together"
    physical = column(db, f"SELECT {row_id} FROM {table} ORDER BY rowid")
    if row_id != "rowid":
        assert physical != sorted(physical)


# -- the mappings ---------------------------------------------------------------------------------

RESERVED = {
    "column",
    "as",
    "values",
    "default",
    "literal",
    "embed",
    "lookup",
    "on",
    "order_by",
    "single",
    "fields",
    "field",
}
DOCUMENT_KEYS = {"key", "where", "nulls", "bucket_type", "indexes"}
AS_TYPES = {
    "string",
    "integer",
    "decimal",
    "number",
    "boolean",
    "date",
    "datetime",
    "base64",
    "json",
    "yyyymmdd",
}


class MappingLoader(yaml.SafeLoader):
    """YAML 1.2 booleans: PyYAML's 1.1 rules would read the reserved key `on:` as True."""


MappingLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
MappingLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_mappings() -> dict[str, Any]:
    return {service: yaml.load(mapping_text(service), MappingLoader) for service in SERVICES}


def all_keys(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from all_keys(value)
    elif isinstance(node, list):
        for item in node:
            yield from all_keys(item)


def all_values_of(node: Any, wanted: str) -> Iterator[Any]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == wanted:
                yield value
            yield from all_values_of(value, wanted)
    elif isinstance(node, list):
        for item in node:
            yield from all_values_of(item, wanted)


def test_mappings_use_every_reserved_and_document_key() -> None:
    mappings = load_mappings()
    used = set(all_keys(mappings))
    assert used >= RESERVED
    assert used >= DOCUMENT_KEYS
    assert {value for value in all_values_of(mappings, "as")} == AS_TYPES
    assert {value for value in all_values_of(mappings, "nulls")} == {"keep", "omit"}
    for service, mapping in mappings.items():
        assert mapping["service"] == service
        assert mapping["documents"]


def test_mappings_cover_the_forms_that_need_a_shape() -> None:
    mappings = load_mappings()
    documents = [doc for m in mappings.values() for doc in m["documents"].values()]
    assert any("key" not in doc for doc in documents)  # a default key
    assert any("/" in doc.get("key", "") for doc in documents)
    assert len(mappings["ods"]["documents"]) > 1
    lookups = list(all_values_of(mappings, "lookup"))
    assert lookups
    fields_lists = [v for v in all_values_of(mappings, "fields") if isinstance(v, dict)]
    column_lists = [v for f in fields_lists for v in f.values() if isinstance(v, list)]
    assert column_lists  # `[LINE1, LINE2, ...]`
    assert any(len(on) > 1 for on in all_values_of(mappings, "on"))  # composite `on:`
    assert True in set(all_values_of(mappings, "single"))
    indexes = [name for doc in documents for name in doc.get("indexes", {})]
    assert any(n.endswith("_int") for n in indexes) and any(n.endswith("_bin") for n in indexes)
    paths = [v for doc in documents for v in doc.get("indexes", {}).values() if isinstance(v, str)]
    assert any("." in p for p in paths)

    def embed_depth(node: Any) -> int:
        if not isinstance(node, dict):
            return 0
        inner = max((embed_depth(v) for v in node.values()), default=0)
        return inner + (1 if "embed" in node else 0)

    assert embed_depth(mappings["eps"]) >= 2  # prescription -> items -> dispenses


def test_repo_mappings_are_the_packaged_ones() -> None:
    for service in SERVICES:
        packaged = REPO / "migrate" / "demo" / "mappings" / f"{service}.yaml"
        assert (REPO / "mappings" / f"{service}.yaml").read_bytes() == packaged.read_bytes()
        assert mapping_text(service) == packaged.read_text("utf-8")


def test_project_folder(project: Path) -> None:
    config = tomllib.loads((project / "migrate.toml").read_text("utf-8"))
    assert config == {
        "source": {"url": "sqlite:///legacy.db"},
        "target": {"url": "local:///.migrate/target.db"},
        "state": {"url": "sqlite:///.migrate/state.db"},
        "run": {"chunk_size": 2000, "max_rejects": 0},
        "services": {s: {"mapping": f"mappings/{s}.yaml"} for s in ("ods", "pds", "scr", "eps")},
        "cutover": {"order": ["ods", "pds", "scr", "eps"]},
    }
    assert ".migrate/" in (project / ".gitignore").read_text("utf-8").splitlines()
    for service in SERVICES:
        written = (project / "mappings" / f"{service}.yaml").read_text("utf-8")
        assert written == mapping_text(service)


# The checks below stand in for "the demo migrates with zero rejects" until a pipeline test does
# it: they read the mappings independently and hold them against the data.


def walk_tables(fields: dict[str, Any], table: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(table, spec) for every field spec that is a mapping, with the table it reads from."""
    for spec in fields.values():
        if not isinstance(spec, dict):
            continue
        source = spec.get("embed") or spec.get("lookup") or table
        yield source, spec
        if "fields" in spec:
            yield from walk_tables(spec["fields"], source)
        elif not RESERVED & set(spec):
            yield from walk_tables(spec, table)


def documents() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for service, mapping in load_mappings().items():
        for name, doc in mapping["documents"].items():
            yield service, name, doc


def columns_of(db: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


def test_mappings_name_real_tables_and_columns(db: sqlite3.Connection) -> None:
    def names(spec: Any) -> Iterator[str]:
        if isinstance(spec, str):
            yield spec
        elif isinstance(spec, list):
            yield from (s for s in spec if isinstance(s, str))
        elif isinstance(spec, dict) and "column" in spec:
            yield spec["column"]

    checked = 0
    for _service, _name, doc in documents():
        root = doc["table"]
        assert columns_of(db, root), root
        pending = [(root, doc["fields"])]
        while pending:
            table, fields = pending.pop()
            for spec in fields.values():
                if isinstance(spec, dict) and ("embed" in spec or "lookup" in spec):
                    source = spec.get("embed") or spec["lookup"]
                    for theirs, ours in spec["on"].items():
                        assert theirs in columns_of(db, source), (source, theirs)
                        assert ours in columns_of(db, table), (table, ours)
                    for name in spec.get("order_by", []):
                        assert name in columns_of(db, source)
                    if "field" in spec:
                        assert spec["field"] in columns_of(db, source)
                    else:
                        pending.append((source, spec["fields"]))
                elif isinstance(spec, dict) and not RESERVED & set(spec):
                    pending.append((table, spec))
                elif not (isinstance(spec, dict) and "literal" in spec):
                    for name in names(spec):
                        assert name in columns_of(db, table), (table, name)
                        checked += 1
        for placeholder in re.findall(r"\{(\w+)\}", doc.get("key", "")):
            assert placeholder in columns_of(db, root)
    assert checked > 50


def test_codes_without_a_default_are_all_translated(db: sqlite3.Connection) -> None:
    checked = 0
    for service, name, doc in documents():
        for table, spec in walk_tables(doc["fields"], doc["table"]):
            if "values" not in spec or "default" in spec:
                continue
            codes = set(column(db, f"SELECT DISTINCT {spec['column']} FROM {table}")) - {None}
            assert codes, (table, spec["column"])
            assert all(isinstance(code, str) for code in spec["values"])  # quoted in the YAML
            missing = codes - set(spec["values"])
            assert not missing, f"{service}.{name}: {table}.{spec['column']} codes {missing}"
            checked += 1
    assert checked >= 5


def test_single_embeds_never_have_two_children(db: sqlite3.Connection) -> None:
    singles = [
        spec
        for _s, _n, doc in documents()
        for _t, spec in walk_tables(doc["fields"], doc["table"])
        if spec.get("single")
    ]
    assert singles
    for spec in singles:
        link = ", ".join(spec["on"])
        most = scalar(
            db, f"SELECT max(n) FROM (SELECT count(*) n FROM {spec['embed']} GROUP BY {link})"
        )
        assert most == 1


def test_conversions_the_mappings_ask_for_succeed(db: sqlite3.Connection) -> None:
    checked = set()
    for _service, _name, doc in documents():
        for table, spec in walk_tables(doc["fields"], doc["table"]):
            kind = spec.get("as")
            values = (
                set(column(db, f"SELECT {spec['column']} FROM {table}")) - {None} if kind else ()
            )
            if kind == "integer":
                assert all(isinstance(v, int) or re.fullmatch(r"-?\d+", v) for v in values)
            elif kind == "json":
                assert all(isinstance(json.loads(v), dict) for v in values)
            elif kind == "boolean":
                assert values <= {"Y", "N"}
            if kind:
                checked.add(kind)
    assert {"integer", "json", "boolean"} <= checked


def test_pds_where_keeps_every_patient_but_the_sensitive(db: sqlite3.Connection) -> None:
    (pds,) = [doc for service, _n, doc in documents() if service == "pds"]
    kept = set(column(db, f"SELECT NHS_NUMBER FROM PATIENTS WHERE {pds['where']}"))
    flags = dict(db.execute("SELECT NHS_NUMBER, SENSITIVE_FLAG FROM PATIENTS").fetchall())
    assert kept == {number for number, flag in flags.items() if flag != "S"}
    assert len(kept) < PATIENTS


# -- refusals -------------------------------------------------------------------------------------


def test_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UsageError) as caught:
        create_demo(tmp_path, patients=50)
    assert caught.value.exit_code == EXIT_USAGE
    assert str(tmp_path) in caught.value.message and "not empty" in caught.value.message
    assert caught.value.hint and "empty folder" in caught.value.hint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_refuses_a_file_and_bad_sizes(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(UsageError, match="not a folder"):
        create_demo(path, patients=50)
    with pytest.raises(UsageError, match="at least 1"):
        create_demo(tmp_path / "new", patients=0)
    assert not (tmp_path / "new").exists()


def test_accepts_an_existing_empty_folder(tmp_path: Path) -> None:
    summary = create_demo(tmp_path, patients=60, seed=3)
    assert summary.database == tmp_path / "legacy.db"
    assert {p.name for p in tmp_path.iterdir()} == {
        "legacy.db",
        "migrate.toml",
        "mappings",
        ".gitignore",
        ".migrate",
    }
    assert stat.S_IMODE((tmp_path / ".migrate").stat().st_mode) == 0o700
