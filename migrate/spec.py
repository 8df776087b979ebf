"""What to read from the source for one document type: the contract between mapping and source.

The mapping compiler produces an `ExtractSpec`; the source reads exactly those tables and columns
for a chunk; the document builder consumes the rows. Nodes form a tree rooted at the document
type's root table: every embed and lookup is a node whose rows link to its parent node's rows.
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import asdict, dataclass


class NodeKind(enum.Enum):
    ROOT = "root"
    EMBED = "embed"
    LOOKUP = "lookup"


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One table of a document type's tree.

    `link` pairs (this table's column, parent table's column); it is empty for the root. `columns`
    are the columns to read from this table, in the order the builder expects them, named as the
    reflected schema names them.
    """

    node_id: str
    kind: NodeKind
    table: str
    columns: tuple[str, ...]
    parent_id: str | None = None
    link: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class ExtractSpec:
    """Everything `source` needs to extract one chunk of one document type.

    `nodes` starts with the root and lists every parent before its children. `primary_key` is the
    root table's primary key, the axis chunks are cut along.
    """

    service: str
    doc_type: str
    root_table: str
    primary_key: tuple[str, ...]
    where: str | None
    nodes: tuple[NodeSpec, ...]

    @property
    def root(self) -> NodeSpec:
        return self.nodes[0]

    def node(self, node_id: str) -> NodeSpec:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise KeyError(node_id)

    def fingerprint(self) -> str:
        """A stable hash of what is read: staged chunks are reusable while it is unchanged."""
        data = asdict(self)
        text = json.dumps(data, sort_keys=True, default=lambda v: v.value)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# A staged node table may carry one more column after the node's own: per row, the value-rule
# failures found while reading it ("column C (TYPE): expected ..., got ..."; never the value), or
# NULL. The failing values themselves are staged as NULL. The builder rejects every document that
# a flawed row would go into, so a bad value is a reject, never a stop.
FLAWS_COLUMN = "migrate:flaws"
