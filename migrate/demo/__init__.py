"""The demo estate: an Oracle-shaped sample legacy database and a ready project around it."""

from __future__ import annotations

from migrate.demo.project import SERVICES, DemoSummary, create_demo, mapping_text

__all__ = ["SERVICES", "DemoSummary", "create_demo", "mapping_text"]
