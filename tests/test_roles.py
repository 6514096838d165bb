"""Rules every role of the repository follows (checked for all of roles/, present and future):

* ``meta/argument_specs.yml`` exists; its ``main`` entry point lists exactly the variables of
  ``defaults/main.yml`` with the same default values (other entry points may add parameters of
  their own; the defaults they repeat must agree), each with a description;
* the role's tasks carry the tags ``<role>_install``, ``<role>_configure`` and ``<role>_run``;
* every systemd unit or drop-in the role renders (a template with a ``[Service]`` section) is
  hardened: ``ProtectSystem=strict``, ``NoNewPrivileges``, ``PrivateTmp`` and ``MemoryMax``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import REPO

ROLES = sorted(p.parent.parent.name for p in (REPO / "roles").glob("*/tasks/main.yml"))
HARDENING = ("ProtectSystem=strict", "NoNewPrivileges=", "PrivateTmp=", "MemoryMax=")


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def test_every_role_is_checked() -> None:
    assert len(ROLES) >= 6
    assert "unde_app" in ROLES


@pytest.mark.parametrize("role", ROLES)
def test_argument_specs_match_defaults(role: str) -> None:
    base = REPO / "roles" / role
    defaults = _yaml(base / "defaults" / "main.yml") or {}
    specs = _yaml(base / "meta" / "argument_specs.yml")
    assert specs is not None, f"roles/{role}/meta/argument_specs.yml is missing"
    entry_points = specs["argument_specs"]
    assert "main" in entry_points, f"roles/{role}: argument_specs has no 'main' entry point"
    for entry, spec in entry_points.items():
        options = spec.get("options") or {}
        if entry == "main":
            assert sorted(options) == sorted(defaults), (
                f"roles/{role}: argument_specs main and defaults differ: "
                f"only in specs {sorted(set(options) - set(defaults))}, "
                f"only in defaults {sorted(set(defaults) - set(options))}"
            )
        for name, option in options.items():
            if name in defaults and (entry == "main" or "default" in option):
                where = f"roles/{role} ({entry})"
                assert option.get("default") == defaults[name], f"{where}: default of {name} differs"
            assert option.get("description"), f"roles/{role} ({entry}): {name} has no description"


@pytest.mark.parametrize("role", ROLES)
def test_tasks_carry_the_three_tags(role: str) -> None:
    text = "\n".join(p.read_text() for p in sorted((REPO / "roles" / role / "tasks").glob("*.yml")))
    for step in ("install", "configure", "run"):
        assert re.search(rf"\b{role}_{step}\b", text), f"roles/{role}: no task tagged {role}_{step}"


def _unit_templates() -> list[Path]:
    found = []
    for path in sorted((REPO / "roles").glob("*/templates/**/*")):
        if not path.is_file() or "__pycache__" in path.parts or path.suffix == ".pyc":
            continue
        if re.search(r"^\[Service\]", path.read_text(errors="replace"), re.MULTILINE):
            found.append(path)
    return found


@pytest.mark.parametrize("unit", _unit_templates(), ids=lambda p: str(p.relative_to(REPO / "roles")))
def test_units_are_hardened(unit: Path) -> None:
    text = unit.read_text()
    missing = [d for d in HARDENING if not re.search(rf"^{re.escape(d)}", text, re.MULTILINE)]
    assert not missing, f"{unit.relative_to(REPO)} lacks {missing}"
