"""Lab hosts for the agents scenario: the default scenario's fixtures and failure hook, plus the lab vault.

``molecule/default/tests/conftest.py`` is loaded as it is (ssh with the lab key, addresses and
groups from ``ansible-inventory``, the journal of the failing test's units attached to the
report); this file adds the lab vault's values, which the tests log in with.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

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
name = _default.name
target = _default.target
node = _default.node
pytest_configure = _default.pytest_configure
pytest_runtest_makereport = _default.pytest_runtest_makereport

VAULT = REPO / "inventories" / "lab" / "secrets.vault.yml"
VAULT_ID = f"lab@{REPO / 'inventories' / 'lab' / 'vault-password.txt'}"


@functools.cache
def vault() -> dict[str, Any]:
    """The lab vault's ``vault_*`` variables (lab-only values)."""
    exe = Path(sys.executable).parent / "ansible-vault"
    out = subprocess.run(
        [str(exe) if exe.exists() else "ansible-vault", "view", "--vault-id", VAULT_ID, str(VAULT)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "ANSIBLE_VAULT_IDENTITY_LIST": ""},
    ).stdout
    data: dict[str, Any] = yaml.safe_load(out)["all"]["vars"]
    return data


@pytest.fixture(scope="session")
def secrets() -> dict[str, Any]:
    return vault()
