"""Canonical JSON bytes and checksum aggregates: the contract every builder and verifier shares."""

from __future__ import annotations

import json
import math
import random
from decimal import Decimal
from typing import Any

import pytest
import xxhash
from hypothesis import given
from hypothesis import strategies as st

from migrate.mapping.canonical import (
    aggregate,
    canonical_json,
    checksum,
    combine,
    decimal_text,
    float_text,
)
from migrate.mapping.values import ValueRuleError

ZERO = "0" * 32


# --- canonical JSON: hand-written expectations -----------------------------------------------


def test_non_ascii_is_written_raw_utf8() -> None:
    out = canonical_json({"name": "Zoë Ñúñez 漢字 😀"})
    assert out == '{"name":"Zoë Ñúñez 漢字 😀"}'.encode()
    assert b"\\u" not in out


def test_keys_sorted_by_code_point() -> None:
    doc = {"b": 1, "a": 2, "B": 3, "é": 4, "z": 5, "_": 6, "aa": 7}
    assert canonical_json(doc) == '{"B":3,"_":6,"a":2,"aa":7,"b":1,"z":5,"é":4}'.encode()


def test_keys_sorted_by_code_point_not_utf16() -> None:
    # U+E000 < U+10000 by code point; in UTF-16 order the astral key would come first.
    doc = {"\U00010000": 1, "\ue000": 2, "\u00ff": 3}
    assert canonical_json(doc) == '{"\u00ff":3,"\ue000":2,"\U00010000":1}'.encode()


def test_nested_objects_sorted_and_compact() -> None:
    doc = {"z": {"y": [1, {"b": None, "a": True}], "x": False}, "a": []}
    assert canonical_json(doc) == b'{"a":[],"z":{"x":false,"y":[1,{"a":true,"b":null}]}}'


def test_escapes_are_json_escapes() -> None:
    doc = {"q": 'say "hi"\\ \n\t\x01'}
    out = canonical_json(doc)
    assert out == b'{"q":"say \\"hi\\"\\\\ \\n\\t\\u0001"}'
    assert json.loads(out) == doc


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("12.50"), b"12.50"),
        (Decimal("1E+2"), b"100"),
        (Decimal("1.10E+3"), b"1100"),
        (Decimal("0E-10"), b"0.0000000000"),
        (Decimal("1.00E-8"), b"0.0000000100"),
        (Decimal("-0.00"), b"-0.00"),
        (Decimal("0.000001"), b"0.000001"),
        (Decimal("123456789012345678901234567890.123"), b"123456789012345678901234567890.123"),
    ],
)
def test_decimals_written_as_plain_numbers_with_their_digits(
    value: Decimal, expected: bytes
) -> None:
    assert canonical_json(value) == expected
    assert canonical_json([value]) == b"[" + expected + b"]"
    assert canonical_json({"k": value}) == b'{"k":' + expected + b"}"
    assert decimal_text(value) == expected.decode()


def test_scientific_looking_strings_are_left_alone() -> None:
    # A string that looks like a Decimal's scientific form takes the slow path but is not changed.
    doc = {"s": "5E+3", "d": Decimal("1E+2"), "t": ("1E-7", Decimal("1E-7"))}
    assert canonical_json(doc) == b'{"d":100,"s":"5E+3","t":["1E-7",0.0000001]}'
    assert canonical_json({"s": "5E+3"}) == b'{"s":"5E+3"}'


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.1, b"0.1"),
        (12.5, b"12.5"),
        (1.0, b"1.0"),
        (-2.25, b"-2.25"),
        (1e16, b"1e16"),
        (5e-324, b"5e-324"),
    ],
)
def test_floats_shortest_round_trip(value: float, expected: bytes) -> None:
    assert canonical_json(value) == expected
    assert float_text(value) == expected.decode()
    assert float(expected) == value


def test_integers_beyond_64_bits_are_exact() -> None:
    assert canonical_json(2**70) == b"1180591620717411303424"
    assert canonical_json(-(2**70)) == b"-1180591620717411303424"
    assert canonical_json({"n": 2**64}) == b'{"n":18446744073709551616}'


def test_lone_surrogate_is_a_value_rule_error() -> None:
    with pytest.raises(ValueRuleError) as caught:
        canonical_json({"name": "ab\udc00cd"})
    assert "ab" not in caught.value.reason


# --- canonical JSON: properties --------------------------------------------------------------

_finite_floats = st.floats(allow_nan=False, allow_infinity=False)
_decimals = st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
    lambda d: -300 <= d.adjusted() <= 300
)
_text = st.text(st.characters(codec="utf-8"), max_size=12)
_scalars = st.none() | st.booleans() | st.integers() | _finite_floats | _decimals | _text
_json_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=20,
)


def _same(original: Any, parsed: Any) -> bool:
    """Equality after a JSON round trip with numbers read back exactly as Decimal."""
    if isinstance(original, bool) or original is None or isinstance(original, str):
        return type(parsed) is type(original) and parsed == original
    if isinstance(original, float):
        return isinstance(parsed, Decimal) and float(parsed) == original
    if isinstance(original, int | Decimal):
        return not isinstance(parsed, bool) and Decimal(parsed) == original
    if isinstance(original, list):
        return (
            isinstance(parsed, list)
            and len(parsed) == len(original)
            and all(_same(a, b) for a, b in zip(original, parsed, strict=True))
        )
    assert isinstance(original, dict)
    return (
        isinstance(parsed, dict)
        and parsed.keys() == original.keys()
        and all(_same(original[k], parsed[k]) for k in original)
    )


@given(_json_values)
def test_output_parses_back_to_an_equal_structure(value: Any) -> None:
    out = canonical_json(value)
    out.decode("utf-8")  # always valid UTF-8
    assert _same(value, json.loads(out, parse_float=Decimal))


@given(st.dictionaries(_text, _json_values, max_size=8), st.randoms(use_true_random=False))
def test_insertion_order_does_not_matter(doc: dict[str, Any], rnd: random.Random) -> None:
    items = list(doc.items())
    rnd.shuffle(items)
    assert canonical_json(dict(items)) == canonical_json(doc)
    assert canonical_json(dict(reversed(items))) == canonical_json(doc)


@given(st.dictionaries(_text, st.integers(), max_size=8))
def test_keys_come_out_in_code_point_order(doc: dict[str, int]) -> None:
    parsed = json.loads(canonical_json(doc))
    assert list(parsed) == sorted(doc)
    assert b" " not in canonical_json({k: v for k, v in doc.items() if " " not in k})


@given(_finite_floats)
def test_finite_floats_round_trip_exactly(value: float) -> None:
    back = json.loads(canonical_json(value))
    assert back == value
    assert math.copysign(1.0, back) == math.copysign(1.0, value)


@given(_decimals)
def test_decimal_text_is_plain_notation_of_the_same_digits(value: Decimal) -> None:
    text = canonical_json(value).decode()
    assert text == format(value, "f")
    assert "E" not in text and "e" not in text
    assert Decimal(text) == value
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    decimals = len(text.partition(".")[2])
    assert decimals == max(0, -exponent)


# --- checksums ---------------------------------------------------------------------------------


def test_checksum_is_xxh3_128_hex() -> None:
    # Published XXH3-128 test vector for empty input.
    assert checksum(b"") == "99aa06d3014798d86001c324468d497f"
    assert checksum(b"{}") == xxhash.xxh3_128(b"{}").hexdigest()
    assert checksum(b'{"a":1}') != checksum(b'{"a":2}')


@given(st.binary(max_size=64))
def test_checksum_shape(data: bytes) -> None:
    digest = checksum(data)
    assert len(digest) == 32
    assert digest == digest.lower()
    assert int(digest, 16) == xxhash.xxh3_128_intdigest(data)


def test_aggregate_hand_written() -> None:
    one = "0" * 31 + "1"
    two = "0" * 31 + "2"
    top = "f" * 32
    assert aggregate([]) == ZERO
    assert aggregate([one]) == one
    assert aggregate([one, two]) == "0" * 31 + "3"
    assert aggregate([top, one]) == ZERO  # wraps mod 2**128
    assert aggregate([top, top]) == "f" * 31 + "e"
    assert aggregate([one, one]) == two  # a duplicate does not cancel out
    assert combine(one, two) == "0" * 31 + "3"
    assert combine(top, one) == ZERO
    assert combine(ZERO, ZERO) == ZERO


@pytest.mark.parametrize("bad", ["", "0" * 31, "0" * 33, "F" * 32, "g" * 32, "+" + "0" * 31])
def test_aggregate_rejects_malformed_checksums(bad: str) -> None:
    with pytest.raises(ValueError, match="32 lower-case hex"):
        aggregate([ZERO, bad])
    with pytest.raises(ValueError, match="32 lower-case hex"):
        combine(ZERO, bad)


_digests = st.lists(st.binary(max_size=16).map(checksum), max_size=30)


@given(_digests, st.randoms(use_true_random=False))
def test_aggregate_is_order_independent(digests: list[str], rnd: random.Random) -> None:
    shuffled = list(digests)
    rnd.shuffle(shuffled)
    assert aggregate(shuffled) == aggregate(digests)
    assert int(aggregate(digests), 16) == sum(int(d, 16) for d in digests) % 2**128


@given(_digests, _digests)
def test_combine_of_aggregates_is_aggregate_of_all(a: list[str], b: list[str]) -> None:
    assert combine(aggregate(a), aggregate(b)) == aggregate(a + b)
    assert combine(aggregate(a), aggregate(b)) == combine(aggregate(b), aggregate(a))
    assert len(aggregate(a)) == 32
