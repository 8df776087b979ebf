"""The mapping language: load a mapping file, validate it against the source schema, compile it into
a plan, and build documents from a chunk's rows."""

from migrate.mapping.builder import DocumentBuilder
from migrate.mapping.loader import load_mapping, parse_mapping
from migrate.mapping.model import DocTypeModel, Mapping
from migrate.mapping.plan import DocPlan, ServicePlan, cached_plan, compile_mapping
from migrate.mapping.validate import validate_mapping

__all__ = [
    "DocPlan",
    "DocTypeModel",
    "DocumentBuilder",
    "Mapping",
    "ServicePlan",
    "cached_plan",
    "compile_mapping",
    "load_mapping",
    "parse_mapping",
    "validate_mapping",
]
