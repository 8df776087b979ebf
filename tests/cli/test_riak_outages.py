"""A real Riak node stopped in the middle of `migrate run`, `reconcile` and `repair`: each pauses
with exit 3 and a message that is true (the node does not serve; run it again once it is back),
or, within `[target] patience`, waits and carries on by itself; started again, a re-run ends with a
dump exact to the byte and a clean dry-run reconcile.

The node is this module's own (started from the Riak test server folder beside the checkout;
skipped without it), since its tests stop and start it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from riak_projects import (
    SERVICES,
    dump,
    finish,
    invoke,
    no_traceback,
    run_until,
    start,
    unsuffixed,
    use_riak,
)
from support import set_run_option

from benchmarks.riak_node import RiakNodes
from migrate.target.riak import RiakTarget

pytestmark = pytest.mark.riak_node

TRUE_PAUSE = ("does not serve on any host", "unreachable on every host")


@pytest.fixture
def node(riak_node: RiakNodes) -> Iterator[RiakNodes]:
    """The module's node, serving when the test starts and when it ends."""
    if not riak_node.ping(1):
        riak_node.restart()
    yield riak_node
    if not riak_node.ping(1):
        riak_node.restart()


def slow_project(project: Path, node: RiakNodes, *options: str) -> str:
    """Point the demo project at the node with one request in flight and small chunks, so a run
    lasts some seconds; returns the bucket suffix of this test."""
    suffix = f"-o{uuid.uuid4().hex[:8]}"
    use_riak(project, node.url, "max_in_flight = 1", *options, suffix=suffix)
    set_run_option(project, "chunk_size", 100)
    return suffix


def assert_exact(
    project: Path, suffix: str, embedded: dict[str, bytes], services: list[str] = SERVICES
) -> None:
    for service in services:
        assert unsuffixed(dump(project, service), suffix) == embedded[service], service
    check = invoke(project, "reconcile", *services, "--dry-run")
    assert check.exit_code == 0, check.output


def at_full_speed(project: Path) -> None:
    config = project / "migrate.toml"
    config.write_text(config.read_text().replace("max_in_flight = 1", "max_in_flight = 64"))


def test_a_node_stopped_mid_run_pauses_it_truly_and_a_rerun_ends_exact(
    node: RiakNodes, demo_project: Path, embedded_dumps: dict[str, bytes]
) -> None:
    suffix = slow_project(demo_project, node)
    running = run_until(demo_project, "pds: 3/", "run")

    node.stop_node(1)
    output = finish(running)

    assert running.returncode == 3, output  # it was paused, not done before the node stopped
    assert any(pause in output for pause in TRUE_PAUSE), output
    assert "re-run the same command" in output and "patience" in output
    assert "retrying will not help" not in output and "Traceback" not in output
    node.restart()
    at_full_speed(demo_project)
    resumed = invoke(demo_project, "run")
    assert resumed.exit_code == 0, resumed.output
    assert "resuming run" in resumed.output
    assert_exact(demo_project, suffix, embedded_dumps)


def test_within_its_patience_a_run_waits_out_a_restart_and_loses_nothing(
    node: RiakNodes, demo_project: Path, embedded_dumps: dict[str, bytes]
) -> None:
    suffix = slow_project(demo_project, node, "patience = 240")
    running = run_until(demo_project, "pds: 3/", "run")

    node.stop_node(1)
    assert running.poll() is None, "".join(running.lines)  # type: ignore[attr-defined]
    node.restart()  # the load waited for it: nothing acknowledged before the stop is lost
    output = finish(running)

    assert running.returncode == 0, output
    assert "equal" in output
    assert_exact(demo_project, suffix, embedded_dumps)


def test_reconcile_and_repair_pause_truly_or_wait_within_their_patience(
    node: RiakNodes, demo_project: Path, embedded_dumps: dict[str, bytes]
) -> None:
    suffix = slow_project(demo_project, node)
    loaded = invoke(demo_project, "run", "pds")
    assert loaded.exit_code == 0, loaded.output
    gone = [json.loads(line)["key"] for line in dump(demo_project, "pds").splitlines()[:3]]
    target = RiakTarget(node.url)
    try:
        for key in gone:
            assert target.delete("default", "patients" + suffix, key)
    finally:
        target.close()
    recorded = invoke(demo_project, "reconcile", "pds")
    assert recorded.exit_code == 1 and "missing" in recorded.output, recorded.output

    node.stop_node(1)
    for command in (("reconcile", "pds", "--dry-run"), ("repair", "pds")):
        paused = invoke(demo_project, *command)
        assert paused.exit_code == 3, paused.output
        assert any(pause in paused.output for pause in TRUE_PAUSE), paused.output
        assert "retrying will not help" not in paused.output
        no_traceback(paused)
    config = demo_project / "migrate.toml"
    config.write_text(config.read_text().replace("max_in_flight = 1", "patience = 240"))
    waiting = start(demo_project, "repair", "pds")
    time.sleep(2)  # it finds no node serving, and waits
    assert waiting.poll() is None, "".join(waiting.lines)  # type: ignore[attr-defined]
    node.restart()
    output = finish(waiting)

    assert waiting.returncode == 0, output
    assert unsuffixed(dump(demo_project, "pds"), suffix) == embedded_dumps["pds"]
    check = invoke(demo_project, "reconcile", "pds", "--dry-run")
    assert check.exit_code == 0, check.output
