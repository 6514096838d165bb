"""Lab hosts for the catalog scenario: the default scenario's fixtures and failure hook."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

DEFAULT_CONFTEST = Path(__file__).resolve().parents[2] / "default" / "tests" / "conftest.py"


def _load_default() -> ModuleType:
    spec = importlib.util.spec_from_file_location("unde_molecule_default_conftest", DEFAULT_CONFTEST)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_default = _load_default()
REPO: Path = _default.REPO
lab = _default.lab
pytest_configure = _default.pytest_configure
pytest_runtest_makereport = _default.pytest_runtest_makereport
