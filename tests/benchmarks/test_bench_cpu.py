"""The bench's CPU counter counts every process a command starts, those that outlive it too (as
the forkserver of `migrate run` does); and the new-user project it loads builds what it says.
No timing is judged here."""

from __future__ import annotations

import sys
from pathlib import Path

from benchmarks.cpu import counted
from benchmarks.shop import create_project, documents, point_at

BURN = "import time\nend = time.process_time() + {0}\nwhile time.process_time() < end: pass\n"


def test_a_process_left_behind_is_counted_once_it_ends(tmp_path: Path) -> None:
    """The command starts a grandchild that burns 0.3 s of CPU after the command has exited."""
    script = tmp_path / "leave.py"
    script.write_text(
        "import subprocess, sys\n"
        f"subprocess.Popen([sys.executable, '-c', {BURN.format(0.3)!r}], start_new_session=True)\n"
        "print('left it')\n"
    )
    done = counted([sys.executable, str(script)], cwd=tmp_path)
    assert done.returncode == 0 and "left it" in done.stdout
    assert done.cpu >= 0.3
    assert done.wall < 5


def test_the_exit_code_and_output_come_back(tmp_path: Path) -> None:
    done = counted([sys.executable, "-c", "import sys; print('out'); sys.exit(3)"], cwd=tmp_path)
    assert (done.returncode, done.stdout.strip()) == (3, "out")


def test_the_shop_project_builds_one_document_per_customer(tmp_path: Path) -> None:
    project = create_project(tmp_path / "shop", customers=40)
    point_at(project, "riak://127.0.0.1:8098", bucket_suffix="-x")
    assert 'url = "riak://127.0.0.1:8098"' in (project / "migrate.toml").read_text()
    built = documents(project)
    assert len(built) == 40 and len({d.key for d, _ in built}) == 40
    doc, chunk_id = built[0]
    assert doc.bucket == "customers-x" and chunk_id == "customer:00000"
    names = [name for name, _ in doc.indexes]
    assert names == ["city_bin", "email_bin", "migrate_chunk_bin", "since_int"]
