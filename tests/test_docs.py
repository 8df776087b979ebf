"""The documentation cannot drift from the code: every YAML example of docs/mapping.md passes
`migrate check` against the schema the page itself gives, the worked example's document is what
`migrate preview` builds, and nothing in the repository's documents points outside it."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from migrate.cli.main import cli

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "mapping.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```$", re.M | re.S)


def _blocks(kind: str) -> list[str]:
    return [body for lang, body in BLOCK.findall(REFERENCE.read_text()) if lang == kind]


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    (schema,) = _blocks("sql")
    path = tmp_path_factory.mktemp("reference") / "legacy.db"
    with sqlite3.connect(path) as db:
        db.executescript(schema)
    return path


def _project(folder: Path, database: Path, mapping: str) -> Path:
    service = re.search(r"^service: (\S+)$", mapping, re.M)
    assert service, "every example is a whole mapping file"
    folder.mkdir()
    (folder / "mapping.yaml").write_text(mapping)
    config = folder / "migrate.toml"
    config.write_text(
        f'[source]\nurl = "sqlite:///{database}"\n[target]\nurl = "local:///target.db"\n'
        f'[state]\nurl = "sqlite:///state.db"\n[services.{service.group(1)}]\n'
        'mapping = "mapping.yaml"\n'
    )
    return config


def test_the_reference_has_its_examples() -> None:
    assert len(_blocks("yaml")) >= 8
    assert len(_blocks("sql")) == 1 and len(_blocks("json")) == 1


@pytest.mark.parametrize("index", range(len(_blocks("yaml"))))
def test_every_yaml_example_passes_check(database: Path, tmp_path: Path, index: int) -> None:
    mapping = _blocks("yaml")[index]
    config = _project(tmp_path / "project", database, mapping)
    result = CliRunner().invoke(cli, ["--config", str(config), "check"])
    assert result.exit_code == 0, f"example {index + 1}:\n{mapping}\n{result.output}"
    assert "problem" not in result.output


def test_the_worked_example_builds_the_document_shown(database: Path, tmp_path: Path) -> None:
    worked = _blocks("yaml")[0]
    assert "service: pas\n" in worked
    config = _project(tmp_path / "project", database, worked)
    result = CliRunner().invoke(
        cli, ["--config", str(config), "preview", "pas", "RX1/1001", "--format", "pretty"]
    )
    assert result.exit_code == 0, result.output
    (shown,) = _blocks("json")
    lines = result.stdout.splitlines()
    body = "\n".join(lines[lines.index("{") :]).strip()
    assert body == shown.strip()
    size = int(re.search(r"([\d,]+) bytes", lines[0]).group(1).replace(",", ""))  # type: ignore[union-attr]
    text = REFERENCE.read_text()
    assert f"{size} bytes of canonical JSON" in text
    for line in lines[1 : lines.index("{")]:
        name, values = line.split(maxsplit=1)
        assert f"`{name} {values}`" in text, line


def test_no_document_points_outside_the_repository() -> None:
    for path in [ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("runbooks/*.md")]:
        text = path.read_text()
        assert "../shared" not in text and "MAPPING.md" not in text, path
    readme = (ROOT / "README.md").read_text()
    assert "(docs/mapping.md)" in readme


def test_every_command_a_runbook_names_exists() -> None:
    """Runbook steps are `migrate` commands: every command (and cutover step) they name is one."""
    import re

    from migrate.cli.main import cli
    from migrate.cutover import CUTOVER_STEPS

    runbooks = Path(__file__).parents[1] / "runbooks"
    named: set[str] = set()
    steps: set[str] = set()
    for page in runbooks.glob("*.md"):
        text = page.read_text()
        named |= set(re.findall(r"`migrate ([a-z]+)", text))
        steps |= set(re.findall(r"`migrate cutover [A-Za-z_]+ ([a-z]+)", text))
    assert {"capture", "run", "delta", "cutover", "audit", "runbook"} <= named
    assert named <= set(cli.commands), named - set(cli.commands)
    assert steps and steps <= set(CUTOVER_STEPS), steps - set(CUTOVER_STEPS)
