"""Key templates: where a separator can hide inside a value, and the escaping that removes it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from migrate.mapping.keys import default_template, escaper, parse_template, separator_hazards
from migrate.schema import ColumnInfo, ColumnType, TableInfo, ValueKind

K = ValueKind
TABLE = TableInfo(
    "T",
    (
        ColumnInfo("SITE", ColumnType(K.STRING, "VARCHAR2(9)")),
        ColumnInfo("NO", ColumnType(K.INTEGER, "NUMBER(9)")),
        ColumnInfo("AT", ColumnType(K.TIMESTAMP, "TIMESTAMP")),
    ),
    ("SITE", "NO", "AT"),
)


def test_hazards_follow_what_each_kind_can_write() -> None:
    assert separator_hazards(parse_template("{SITE}/{NO}"), TABLE) == [("SITE", "/")]
    assert separator_hazards(parse_template("{NO}/{SITE}"), TABLE) == []  # the last takes all
    assert separator_hazards(parse_template("{NO}-{AT}"), TABLE) == [("NO", "-")]
    assert separator_hazards(default_template(("AT", "NO")), TABLE) == [("AT", ":")]
    assert separator_hazards(default_template(("NO", "AT")), TABLE) == []
    assert separator_hazards(parse_template("x/{SITE}/y"), TABLE) == []
    assert separator_hazards(parse_template("{SITE}-/{NO}"), TABLE) == [("SITE", "-/")]
    assert separator_hazards(parse_template("{NO}/{AT}"), TABLE) == []


@given(
    st.lists(st.text(max_size=6), min_size=2, max_size=2),
    st.lists(st.text(max_size=6), min_size=2, max_size=2),
)
def test_escaped_parts_never_render_one_key_for_two_rows(a: list[str], b: list[str]) -> None:
    template = parse_template("{SITE}/{NO}%{AT}")
    escape = escaper(template)
    if a != b:
        assert "/".join(map(escape, a)) != "/".join(map(escape, b))
