"""The column-wise JSON text helpers: which text columns may skip JSON escaping."""

from __future__ import annotations

import re

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from migrate.mapping import columns
from migrate.mapping.columns import _needs_escaping, _plain_text

# What a JSON string must escape, written the plain way: the C0 controls, `"` and `\`.
ESCAPED = re.compile(rb'[\x00-\x1f"\\]')


@given(st.binary(max_size=300))
def test_the_scan_finds_exactly_the_bytes_json_escapes(data: bytes) -> None:
    assert _needs_escaping(memoryview(data)) is (ESCAPED.search(data) is not None)


def test_the_scan_reads_past_its_first_slice() -> None:
    size = columns._SCAN_BYTES
    for at in (0, size - 1, size, size + 1, 3 * size - 1):
        data = bytearray(b"a" * (3 * size))
        assert not _needs_escaping(memoryview(bytes(data)))
        data[at] = ord("\\")
        assert _needs_escaping(memoryview(bytes(data))), at


def test_a_text_column_is_plain_only_when_no_chunk_needs_escaping() -> None:
    clean = pa.chunked_array([["Smith", "O'Brien", "Zoë"], ["\x7f is not escaped"]])
    assert _plain_text(clean) is clean
    for text in ('say "hi"', "back\\slash", "tab\there", "nul\x00"):
        mixed = pa.chunked_array([["Smith"], [None, text]])
        assert _plain_text(mixed) is None, text
    assert _plain_text(pa.chunked_array([[b"bytes"]], pa.binary())) is None
