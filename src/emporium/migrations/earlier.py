"""An earlier revision's module, for migrations that rewrite the SQL text it created."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

VERSIONS = Path(__file__).with_name("versions")


def load(filename: str) -> ModuleType:
    """The module of ``versions/<filename>``, loaded by path (revision files are not a
    package, and their names start with digits)."""
    path = VERSIONS / filename
    spec = importlib.util.spec_from_file_location(f"emporium_migration_{path.stem}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
