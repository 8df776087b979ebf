"""Read a mapping file into the model, keeping the line of every key, and report every structural
problem at once.

PyYAML's composer gives nodes with positions; the model is built from those nodes rather than from
`yaml.safe_load` output so that (1) every problem names its line, and (2) mapping keys keep their
raw text: `values: {NO: none}` is the code "NO", not the boolean YAML 1.1 would make of it.
"""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from migrate.errors import MappingError, Problem
from migrate.mapping.model import (
    KEY_ESCAPES,
    NULLS_MODES,
    RESERVED_KEYS,
    ColumnField,
    DocTypeModel,
    EmbedField,
    Field,
    IndexModel,
    JoinPair,
    ListField,
    LiteralField,
    Loc,
    LookupField,
    Mapping,
    Name,
    ObjectField,
    ValueEntry,
)

FORMAT_VERSION = 1
_NULL_TAG = "tag:yaml.org,2002:null"
_STR_TAG = "tag:yaml.org,2002:str"
_TOP_KEYS = ("service", "description", "version", "documents")
_DOC_KEYS = (
    "table",
    "bucket",
    "bucket_type",
    "key",
    "key_escape",
    "where",
    "nulls",
    "fields",
    "indexes",
    "description",
)
_FORM_KEYS = {
    "column": ("column", "as", "values", "default"),
    "literal": ("literal",),
    "embed": ("embed", "on", "order_by", "single", "fields"),
    "lookup": ("lookup", "on", "fields", "field"),
}
_Pairs = list[tuple[str, int, Node]]
# What a YAML tag reads a scalar as, for messages about a scalar it cannot read.
_TAG_KINDS = {
    "timestamp": "date or date-time",
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "binary": "base64 binary value",
}


def load_mapping(path: Path, *, default_bucket_type: str = "default") -> Mapping:
    """Read and parse one mapping file; raise `MappingError` listing every structural problem.

    `default_bucket_type` (from `[target] bucket_type`) applies to document types that name none.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        problem = Problem(
            str(path),
            1,
            "",
            f"cannot read the mapping file ({reason})",
            "check the path in migrate.toml",
        )
        raise MappingError([problem]) from exc
    return parse_mapping(text, path, default_bucket_type=default_bucket_type)


def parse_mapping(text: str, path: Path, *, default_bucket_type: str = "default") -> Mapping:
    """Parse mapping text; `path` is where it came from, used in problems."""
    file = str(path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        what = exc.problem or exc.context or "malformed YAML"
        raise MappingError(
            [Problem(file, line, "", f"not valid YAML: {what}", "fix the YAML syntax")]
        ) from exc
    except yaml.YAMLError as exc:
        raise MappingError([Problem(file, 1, "", "not valid YAML", "fix the YAML syntax")]) from exc
    except RecursionError as exc:  # the YAML parser recurses once per level of nesting
        raise MappingError([_too_deep(file, 1)]) from exc
    deepest = _deepest(root)
    if deepest is not None:
        raise MappingError([_too_deep(file, deepest)])
    oversized = _oversized(root)
    if oversized is not None:
        raise MappingError([_too_big(file, oversized)])
    reader = _Reader(file, default_bucket_type)
    try:
        mapping = reader.mapping(root, path)
    except RecursionError as exc:
        problem = Problem(file, 1, "", "the YAML refers to itself (a recursive alias)")
        raise MappingError(
            [problem],
        ) from exc
    if reader.problems or mapping is None:
        raise MappingError(reader.problems)
    return mapping


MAX_DEPTH = 64  # levels of nesting a mapping file may have: far more than any document needs


def _too_deep(file: str, line: int) -> Problem:
    return Problem(
        file,
        line,
        "",
        f"the mapping nests deeper than {MAX_DEPTH} levels",
        "flatten it: documents this deep are neither readable nor useful",
    )


def _deepest(root: Node | None) -> int | None:
    """The line of a node nested deeper than MAX_DEPTH, walked without recursion (aliases, which
    can refer to themselves, are walked once)."""
    if root is None:
        return None
    stack: list[tuple[Node, int]] = [(root, 0)]
    seen: set[int] = set()
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return _line(node)
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, MappingNode):
            stack.extend((value, depth + 1) for _key, value in node.value)
        elif isinstance(node, SequenceNode):
            stack.extend((item, depth + 1) for item in node.value)
    return None


MAX_VALUES = 100_000  # YAML nodes a mapping may hold with its aliases expanded: ~300 in the demo


def _too_big(file: str, line: int) -> Problem:
    return Problem(
        file,
        line,
        "",
        f"the mapping holds more than {MAX_VALUES:,} values once its aliases are expanded",
        "an alias (`*name`) repeats everything its anchor holds: repeat less, or write the "
        "values out",
    )


def _oversized(root: Node | None) -> int | None:
    """The line of the first node that holds more than MAX_VALUES nodes once aliases are
    expanded (each use of an alias counts what it refers to again: a few nested anchors used
    a few times each make billions), counted without expanding them or recursing."""
    if root is None:
        return None
    sizes: dict[int, int] = {}
    on_path: set[int] = set()  # an alias to a node being counted refers to itself: counted once
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, counted = stack.pop()
        key = id(node)
        if counted:
            on_path.discard(key)
            size = 1 + sum(sizes.get(id(child), 1) for child in _children(node))
            if size > MAX_VALUES:
                return _line(node)
            sizes[key] = size
        elif key not in sizes and key not in on_path:
            on_path.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in _children(node))
    return None


def _children(node: Node) -> list[Node]:
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, SequenceNode):
        return list(node.value)
    return []


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class _Reader:
    """Walks composed YAML nodes, collecting problems instead of stopping at the first."""

    def __init__(self, file: str, default_bucket_type: str = "default") -> None:
        self.file = file
        self.default_bucket_type = default_bucket_type
        self.problems: list[Problem] = []
        self._constructor = SafeConstructor()

    def problem(self, line: int, path: str, message: str, hint: str | None = None) -> None:
        self.problems.append(Problem(self.file, line, path, message, hint))

    # -- generic node helpers -------------------------------------------------------------------

    def pairs(self, node: MappingNode, path: str, *, duplicates: bool = False) -> _Pairs:
        """(key text, key line, value node) of a mapping; keys are their raw scalar text."""
        try:
            self._constructor.flatten_mapping(node)
        except yaml.YAMLError:
            self.problem(_line(node), path, "a `<<` merge key must name a mapping")
            return []
        seen: dict[str, int] = {}
        out: _Pairs = []
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                self.problem(
                    _line(key_node), path, "a key must be a plain name, not a list or mapping"
                )
                continue
            key = str(key_node.value)
            line = _line(key_node)
            if key in seen and not duplicates:
                self.problem(
                    line,
                    _join(path, key),
                    f"duplicate key `{key}` (first on line {seen[key]})",
                    "remove or rename one of them",
                )
                continue
            seen.setdefault(key, line)
            out.append((key, line, value_node))
        return out

    def check_keys(self, pairs: _Pairs, path: str, allowed: tuple[str, ...], what: str) -> None:
        for key, line, _ in pairs:
            if key not in allowed:
                self.problem(
                    line,
                    _join(path, key),
                    f"unknown key `{key}` in {what}",
                    "allowed keys: " + ", ".join(allowed),
                )

    def text(self, node: Node, line: int, path: str, what: str) -> str | None:
        """A scalar's raw text (names, buckets, templates); None and a problem otherwise."""
        if isinstance(node, ScalarNode) and node.tag != _NULL_TAG and node.value != "":
            return str(node.value)
        if isinstance(node, ScalarNode):
            self.problem(line, path, f"{what} is empty", f"give {what}")
        else:
            self.problem(line, path, f"{what} must be a single value, not a list or mapping")
        return None

    def name(self, node: Node, line: int, path: str, what: str) -> Name | None:
        text = self.text(node, _line(node) if isinstance(node, ScalarNode) else line, path, what)
        return None if text is None else Name(text, Loc(_line(node), path))

    def name_of(self, got: dict[str, tuple[int, Node]], key: str, path: str) -> Name | None:
        """The name given for `key` of a mapping read into `got`."""
        line, node = got[key]
        return self.name(node, line, _join(path, key), f"`{key}`")

    def names(self, node: Node, line: int, path: str, what: str) -> tuple[Name, ...]:
        """A list of names; a single name is taken as a list of one."""
        if isinstance(node, ScalarNode):
            found = self.name(node, line, path, what)
            return (found,) if found else ()
        if not isinstance(node, SequenceNode):
            self.problem(line, path, f"{what} must be a list of column names")
            return ()
        out: list[Name] = []
        for i, item in enumerate(node.value):
            found = self.name(item, _line(item), f"{path}[{i}]", what)
            if found:
                out.append(found)
        return tuple(out)

    def json_value(self, node: Node, path: str) -> tuple[bool, Any]:
        """A constant as JSON-ready Python; (False, None) and a problem when it cannot be JSON."""
        if isinstance(node, MappingNode):
            obj: dict[str, Any] = {}
            good = True
            for key, _, value in self.pairs(node, path):
                ok, obj[key] = self.json_value(value, _join(path, key))
                good = good and ok
            return good, obj
        if isinstance(node, SequenceNode):
            items = [self.json_value(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
            return all(ok for ok, _ in items), [value for _, value in items]
        try:
            value = self._constructor.construct_object(node, deep=True)
        except yaml.YAMLError:
            self.problem(_line(node), path, f"unsupported YAML tag `{node.tag}`", "remove the tag")
            return False, None
        except (ValueError, TypeError, AttributeError, KeyError, OverflowError) as exc:
            # PyYAML's own readers of a tagged or implicitly typed scalar fail with Python's
            # exceptions: an impossible date (2024-02-30), `!!timestamp foo`, `!!int abc`...
            tag = str(node.tag).rsplit(":", 1)[-1]
            kind = _TAG_KINDS.get(tag, f"`!!{tag}` value")
            reason = f" ({exc})" if tag == "timestamp" and isinstance(exc, ValueError) else ""
            self.problem(
                _line(node),
                path,
                f"`{node.value}` is not a valid {kind}{reason}",
                "correct it, or quote it to make it a string",
            )
            return False, None
        if value is None or isinstance(value, str | bool | int):
            return True, value
        if isinstance(value, date | bytes):  # JSON has no dates or bytes: keep the text written
            return True, str(node.value)
        if isinstance(value, float) and math.isfinite(value):
            return True, value
        self.problem(
            _line(node),
            path,
            f"a {type(value).__name__} constant cannot be stored in JSON",
            "quote it to make it a string",
        )
        return False, None

    # -- the file ---------------------------------------------------------------------------------

    def mapping(self, root: Node | None, path: Path) -> Mapping | None:
        if root is None:
            self.problem(
                1, "", "the mapping file is empty", "start with `service:` and `documents:`"
            )
            return None
        if not isinstance(root, MappingNode):
            self.problem(_line(root), "", "a mapping file must be a YAML mapping")
            return None
        pairs = self.pairs(root, "")
        self.check_keys(pairs, "", _TOP_KEYS, "the mapping file")
        got = {key: (line, node) for key, line, node in pairs}
        service = description = None
        if "service" in got:
            service = self.text(got["service"][1], got["service"][0], "service", "`service`")
        else:
            self.problem(1, "service", "missing `service`", "name the service, e.g. `service: pds`")
        if "description" in got:
            line, node = got["description"]
            description = self.text(node, line, "description", "`description`")
        if "version" in got:
            line, node = got["version"]
            if not (isinstance(node, ScalarNode) and node.value == str(FORMAT_VERSION)):
                self.problem(
                    line,
                    "version",
                    "unsupported mapping format version",
                    f"this migrate reads version {FORMAT_VERSION}",
                )
        documents: list[DocTypeModel] = []
        if "documents" not in got:
            self.problem(1, "documents", "missing `documents`", "add at least one document type")
        else:
            line, node = got["documents"]
            if not isinstance(node, MappingNode) or not node.value:
                self.problem(
                    line,
                    "documents",
                    "`documents` must be a non-empty mapping of document type name to definition",
                )
            else:
                for name, name_line, doc_node in self.pairs(node, "documents", duplicates=True):
                    doc = self.doc_type(name, name_line, doc_node)
                    if doc is not None:
                        documents.append(doc)
        if service is None:
            return None
        return Mapping(service=service, path=path, documents=documents, description=description)

    def doc_type(self, name: str, line: int, node: Node) -> DocTypeModel | None:
        path = f"documents.{name}"
        if not isinstance(node, MappingNode):
            self.problem(
                line, path, "a document type must be a mapping with `table`, `bucket`, `fields`"
            )
            return None
        pairs = self.pairs(node, path)
        self.check_keys(pairs, path, _DOC_KEYS, "a document type")
        got = {key: (key_line, value) for key, key_line, value in pairs}
        loc = Loc(line, path, tuple((key, key_line) for key, key_line, _ in pairs))
        for required in ("table", "bucket", "fields"):
            if required not in got:
                self.problem(line, _join(path, required), f"missing `{required}`")

        def text_of(key: str) -> str | None:
            if key not in got:
                return None
            return self.text(got[key][1], got[key][0], _join(path, key), f"`{key}`")

        table = None
        if "table" in got:
            table = self.name_of(got, "table", path)
        bucket = text_of("bucket")
        bucket_type = text_of("bucket_type") if "bucket_type" in got else self.default_bucket_type
        key = self.name_of(got, "key", path) if "key" in got else None
        key_escape = text_of("key_escape")
        if key_escape is not None and key_escape not in KEY_ESCAPES:
            self.problem(
                got["key_escape"][0],
                _join(path, "key_escape"),
                f"`key_escape` must be {' or '.join(f'`{e}`' for e in sorted(KEY_ESCAPES))}",
                hint="`percent` writes the template's separators (and `%`) inside a value as "
                "%XX, so no two rows can render one key",
            )
        where = text_of("where")
        text_of("description")
        nulls = text_of("nulls") if "nulls" in got else "omit"
        if nulls is not None and nulls not in NULLS_MODES:
            self.problem(got["nulls"][0], _join(path, "nulls"), "`nulls` must be `omit` or `keep`")
            nulls = None
        fields: tuple[Field, ...] | None = None
        if "fields" in got:
            fields = self.fields(got["fields"][1], got["fields"][0], _join(path, "fields"))
        indexes: tuple[IndexModel, ...] = ()
        if "indexes" in got:
            indexes = self.indexes(got["indexes"][1], got["indexes"][0], _join(path, "indexes"))
        if (
            table is None
            or bucket is None
            or bucket_type is None
            or fields is None
            or nulls is None
        ):
            return None
        return DocTypeModel(
            name=name,
            loc=loc,
            table=table,
            bucket=bucket,
            fields=fields,
            bucket_type=bucket_type,
            key=key,
            key_escape=key_escape if key_escape in KEY_ESCAPES else None,
            where=where,
            nulls=nulls,
            indexes=indexes,
        )

    # -- fields ------------------------------------------------------------------------------------

    def fields(self, node: Node, line: int, path: str) -> tuple[Field, ...] | None:
        if not isinstance(node, MappingNode) or not node.value:
            self.problem(line, path, "`fields` must be a non-empty mapping of field name to source")
            return None
        out: list[Field] = []
        good = True
        for name, key_line, value in self.pairs(node, path):
            field_path = _join(path, name)
            if name == "" or "." in name:
                self.problem(
                    key_line,
                    field_path,
                    "a field name must be non-empty and contain no `.`",
                    "index paths use `.` to separate field names; rename the field",
                )
                good = False
                continue
            found = self.field(name, key_line, value, field_path)
            if found is None:
                good = False
            else:
                out.append(found)
        return tuple(out) if good else None

    def field(self, name: str, line: int, node: Node, path: str) -> Field | None:
        loc = Loc(line, path)
        if isinstance(node, ScalarNode):
            if node.tag == _STR_TAG and node.value != "":
                return ColumnField(name, loc, Name(str(node.value), Loc(_line(node), path)))
            self.problem(
                line,
                path,
                "a field must be a column name, a list of columns or a mapping",
                "write `{literal: V}` for a constant value",
            )
            return None
        if isinstance(node, SequenceNode):
            if not node.value:
                self.problem(line, path, "a column list must name at least one column")
                return None
            columns = self.names(node, line, path, "a column name")
            return ListField(name, loc, columns) if len(columns) == len(node.value) else None
        assert isinstance(node, MappingNode)
        pairs = self.pairs(node, path)
        keys = {key for key, _, _ in pairs}
        loc = Loc(line, path, tuple((key, key_line) for key, key_line, _ in pairs))
        if not keys & RESERVED_KEYS:
            fields = self.fields(node, line, path)
            return ObjectField(name, loc, fields) if fields is not None else None
        forms = sorted(keys & _FORM_KEYS.keys())
        if len(forms) != 1:
            if forms:
                message = "a field takes only one of " + ", ".join(f"`{f}`" for f in forms)
            else:
                reserved = ", ".join(f"`{k}`" for k in sorted(keys & RESERVED_KEYS))
                message = f"{reserved} needs one of `column`, `literal`, `embed` or `lookup`"
            self.problem(
                line,
                path,
                message,
                "a mapping with a reserved key is a column, literal, embed or lookup field",
            )
            return None
        form = forms[0]
        self.check_keys(pairs, path, _FORM_KEYS[form], f"a `{form}` field")
        if any(key not in _FORM_KEYS[form] for key in keys):
            return None
        got = {key: (key_line, value) for key, key_line, value in pairs}
        if form == "literal":
            ok, value = self.json_value(got["literal"][1], _join(path, "literal"))
            return LiteralField(name, loc, value) if ok else None
        if form == "column":
            return self.column_field(name, loc, got)
        return self.join_field(name, loc, got, form)

    def column_field(self, name: str, loc: Loc, got: dict[str, tuple[int, Node]]) -> Field | None:
        path = loc.path
        column = self.name_of(got, "column", path)
        as_ = None
        if "as" in got:
            as_ = self.name_of(got, "as", path)
        values: tuple[ValueEntry, ...] | None = None
        good = column is not None and ("as" not in got or as_ is not None)
        if "values" in got:
            line, node = got["values"]
            values_path = _join(path, "values")
            if not isinstance(node, MappingNode) or not node.value:
                self.problem(
                    line,
                    values_path,
                    "`values` must be a non-empty mapping of code to value",
                    "write it as `values: {M: male, F: female}`",
                )
                good = False
            else:
                entries = []
                for code, code_line, value_node in self.pairs(node, values_path):
                    ok, value = self.json_value(value_node, _join(values_path, code))
                    good = good and ok
                    entries.append(ValueEntry(code, value, code_line))
                values = tuple(entries)
        default: Any = None
        if "default" in got:
            ok, default = self.json_value(got["default"][1], _join(path, "default"))
            good = good and ok
        if not good or column is None:
            return None
        return ColumnField(
            name,
            loc,
            column,
            as_=as_,
            values=values,
            default=default,
            has_default="default" in got,
        )

    def join_field(
        self, name: str, loc: Loc, got: dict[str, tuple[int, Node]], form: str
    ) -> Field | None:
        path = loc.path
        table = self.name(got[form][1], got[form][0], _join(path, form), f"`{form}`")
        on = self.on(got, loc)
        good = table is not None and on is not None
        fields: tuple[Field, ...] | None = None
        if "fields" in got:
            fields = self.fields(got["fields"][1], got["fields"][0], _join(path, "fields"))
            good = good and fields is not None
        if form == "embed":
            if "fields" not in got:
                self.problem(loc.line, _join(path, "fields"), "an embed needs `fields`")
                good = False
            order_by: tuple[Name, ...] = ()
            if "order_by" in got:
                line, node = got["order_by"]
                order_by = self.names(node, line, _join(path, "order_by"), "an `order_by` column")
                good = good and (
                    not isinstance(node, SequenceNode) or len(order_by) == len(node.value)
                )
            single = False
            if "single" in got:
                line, node = got["single"]
                ok, single = self.json_value(node, _join(path, "single"))
                if ok and not isinstance(single, bool):
                    self.problem(line, _join(path, "single"), "`single` must be true or false")
                    good = False
            if not good or table is None or on is None or fields is None:
                return None
            return EmbedField(name, loc, table, on, fields, order_by=order_by, single=bool(single))
        field = None
        if ("fields" in got) == ("field" in got):
            self.problem(
                loc.line,
                path,
                "a lookup needs exactly one of `fields` (an object) or `field` (one value)",
            )
            good = False
        elif "field" in got:
            field = self.name_of(got, "field", path)
            good = good and field is not None
        if not good or table is None or on is None:
            return None
        return LookupField(name, loc, table, on, fields=fields, field=field)

    def on(self, got: dict[str, tuple[int, Node]], loc: Loc) -> tuple[JoinPair, ...] | None:
        path = _join(loc.path, "on")
        if "on" not in got:
            self.problem(loc.line, path, "missing `on`", "write `on: {THEIR_COLUMN: OUR_COLUMN}`")
            return None
        line, node = got["on"]
        if not isinstance(node, MappingNode) or not node.value:
            self.problem(
                line,
                path,
                "`on` must be a non-empty mapping of their column to our column",
                "write `on: {THEIR_COLUMN: OUR_COLUMN}`",
            )
            return None
        pairs: list[JoinPair] = []
        good = True
        for their, their_line, value in self.pairs(node, path):
            pair_path = _join(path, their)
            our = self.name(value, their_line, pair_path, "the column of `on`")
            if our is None:
                good = False
                continue
            pairs.append(JoinPair(Name(their, Loc(their_line, pair_path)), our))
        return tuple(pairs) if good else None

    # -- indexes -----------------------------------------------------------------------------------

    def indexes(self, node: Node, line: int, path: str) -> tuple[IndexModel, ...]:
        if not isinstance(node, MappingNode):
            self.problem(line, path, "`indexes` must be a mapping of index name to source")
            return ()
        out: list[IndexModel] = []
        for name, key_line, value in self.pairs(node, path):
            index_path = _join(path, name)
            if isinstance(value, MappingNode):
                pairs = self.pairs(value, index_path)
                self.check_keys(pairs, index_path, ("column", "as"), "an index")
                got = {key: (k_line, v) for key, k_line, v in pairs}
                loc = Loc(key_line, index_path, tuple((k, k_line) for k, k_line, _ in pairs))
                if "column" not in got:
                    self.problem(
                        key_line, index_path, "an index written as a mapping needs `column`"
                    )
                    continue
                column = self.name_of(got, "column", index_path)
                as_ = None
                if "as" in got:
                    as_ = self.name_of(got, "as", index_path)
                if column is not None and ("as" not in got or as_ is not None):
                    out.append(IndexModel(name, loc, column, column_form=True, as_=as_))
                continue
            source = self.name(value, key_line, index_path, "an index source")
            if source is not None:
                out.append(IndexModel(name, Loc(key_line, index_path), source))
        return tuple(out)
