"""The project's resources: a service's mapping is parsed and compiled once while its file is
unchanged, and again as soon as it changes."""

from __future__ import annotations

import os
from pathlib import Path

from migrate.project import Project


def test_a_plan_is_compiled_once_until_its_mapping_file_changes(demo_project: Path) -> None:
    project = Project.load(demo_project / "migrate.toml")
    try:
        service = project.config.service("ods")
        first = project.plan(service)
        assert project.plan(service) is first
        assert project.mapping(service) is project.mapping(service)
        path = service.mapping
        text = path.read_text()
        assert "bucket: organisations" in text
        stat = path.stat()
        path.write_text(text.replace("bucket: organisations", "bucket: orgs"))
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same time: the size differs
        edited = project.plan(service)
        assert edited is not first and edited.fingerprint != first.fingerprint
        assert edited.doc_types[0].bucket == "orgs"
    finally:
        project.close()
