"""Demo projects pointed at a Riak node, and what the CLI tests read back from them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from click.testing import CliRunner, Result

from migrate.cli.main import cli
from migrate.project import Project

SERVICES = ["ods", "pds", "scr", "eps"]
LOCAL_URL = 'url = "local:///.migrate/target.db"'
MIGRATE = Path(sys.executable).parent / "migrate"


def invoke(project: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(project / "migrate.toml"), *args])


def dump(project: Path, service: str) -> bytes:
    result = invoke(project, "dump", service)
    assert result.exit_code == 0, result.output
    return result.stdout_bytes


def embedded_dumps_of(demo_template: Path, folder: Path) -> dict[str, bytes]:
    """`migrate dump` of every service after the demo ran into the embedded target."""
    project = folder / "project"
    shutil.copytree(demo_template, project)
    result = invoke(project, "run")
    assert result.exit_code == 0, result.output
    return {service: dump(project, service) for service in SERVICES}


def use_riak(project: Path, url: str, *options: str, timeout: float = 2, suffix: str = "") -> None:
    """Point the project's [target] at a Riak node (a short timeout, so stalls resolve quickly);
    with `suffix`, every bucket of the mappings is renamed (a real node's buckets outlive tests)."""
    config = project / "migrate.toml"
    text = config.read_text()
    assert LOCAL_URL in text
    lines = [f'url = "{url}"', f"timeout = {timeout}", *options]
    config.write_text(text.replace(LOCAL_URL, "\n".join(lines)))
    if suffix:
        for mapping in (project / "mappings").glob("*.yaml"):
            lines = mapping.read_text().splitlines(keepends=True)
            renamed = [
                line.rstrip("\n") + suffix + "\n" if line.lstrip().startswith("bucket: ") else line
                for line in lines
            ]
            mapping.write_text("".join(renamed))


def unsuffixed(lines: bytes, suffix: str) -> bytes:
    """A dump with the buckets' test suffix taken out (to compare with the embedded one)."""
    return lines.replace(f'{suffix}"'.encode(), b'"') if suffix else lines


def dumped_keys(lines: bytes) -> dict[tuple[str, str], list[str]]:
    keys: dict[tuple[str, str], list[str]] = {}
    for line in lines.splitlines():
        row = json.loads(line)
        keys.setdefault((row["bucket_type"], row["bucket"]), []).append(row["key"])
    return keys


def loaded_counts(project: Path, service: str) -> tuple[int, int]:
    """(documents, written) of the service's latest run, from the ledger."""
    opened = Project.load(project / "migrate.toml")
    try:
        run = opened.ledger.latest_run(service)
        assert run is not None
        chunks = opened.ledger.chunks(run.run_id)
        return sum(c.documents or 0 for c in chunks), sum(c.written or 0 for c in chunks)
    finally:
        opened.close()


def no_traceback(result: Result) -> None:
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def start(project: Path, *args: str) -> subprocess.Popen[str]:
    """`migrate ARGS` as a subprocess (the installed command); its output is read on by a thread
    into `.lines`, and `.seen(text)` waits until a line holds `text`."""
    process = subprocess.Popen(
        [str(MIGRATE), *args],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    lines: list[str] = []
    grew = threading.Condition()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            with grew:
                lines.append(line)
                grew.notify_all()
        with grew:
            lines.append("")  # the end
            grew.notify_all()

    def seen(text: str) -> bool:
        with grew:
            return grew.wait_for(lambda: any(text in line for line in lines) or "" in lines, 120)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    process.lines = lines  # type: ignore[attr-defined]
    process.reader = reader  # type: ignore[attr-defined]
    process.seen = seen  # type: ignore[attr-defined]
    return process


def run_until(project: Path, marker: str, *args: str) -> subprocess.Popen[str]:
    """`start`, returned once the command printed a line holding `marker`."""
    process = start(project, *args)
    assert process.seen(marker), "".join(process.lines)  # type: ignore[attr-defined]
    assert process.poll() is None, "".join(process.lines)  # type: ignore[attr-defined]
    return process


def finish(process: subprocess.Popen[str]) -> str:
    process.wait(timeout=300)
    process.reader.join(10)  # type: ignore[attr-defined]
    assert process.stdout is not None
    process.stdout.close()
    return "".join(process.lines)  # type: ignore[attr-defined]
