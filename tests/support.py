"""Helpers shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from click.testing import Result

DEMO_PATIENTS = 1500
DEMO_SEED = 7
DEMO_CHUNK_SIZE = 200

Invoke = Callable[..., Result]


def set_run_option(project: Path, key: str, value: int) -> None:
    """Rewrite one `[run]` option of a project's migrate.toml."""
    config = project / "migrate.toml"
    text = config.read_text()
    pattern = re.compile(rf"^{key} = .*$", re.M)
    if pattern.search(text):
        text = pattern.sub(f"{key} = {value}", text)
    else:
        text = text.replace("[run]\n", f"[run]\n{key} = {value}\n")
    config.write_text(text)
