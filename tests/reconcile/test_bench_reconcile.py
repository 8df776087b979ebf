"""The `reconcile` benchmark case runs end to end on a tiny demo (no timing is asserted)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.__main__ import main  # noqa: E402


def test_reconcile_case_runs_end_to_end(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    args = ["--only", "reconcile", "--documents", "150", "--repeats", "1", "--output", str(output)]
    assert main(args) == 0
    figures = {f["name"]: f for f in json.loads(output.read_text("utf-8"))["figures"]}
    for name in ("reconcile documents/s, clean", "reconcile documents/s, 1% of roots changed"):
        assert figures[name]["value"] > 0 and figures[name]["baseline"] > 0
