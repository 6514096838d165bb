"""Lab hosts of the shard_ha scenario: the default scenario's fixtures and failure hook, the lab
vault, and bench/failover.py's helpers (the same code `make bench-failover` runs)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

HERE = Path(__file__).resolve()
REPO_ROOT = HERE.parents[3]


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_default = _load(
    "unde_molecule_default_conftest", REPO_ROOT / "molecule" / "default" / "tests" / "conftest.py"
)
_failover = _load("unde_bench_failover", REPO_ROOT / "bench" / "failover.py")
lab = _default.lab
name = _default.name
node = _default.node
pytest_configure = _default.pytest_configure
pytest_runtest_makereport = _default.pytest_runtest_makereport


@pytest.fixture(scope="session")
def ha() -> ModuleType:
    """bench/failover.py: cluster(), leader(), routing(), labctl(), ssh(), switchover(), failover(), ..."""
    return _failover


@pytest.fixture(scope="session")
def secrets() -> dict[str, Any]:
    result: dict[str, Any] = _failover.vault()
    return result
