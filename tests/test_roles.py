"""Rules every role of the repository follows (checked for all of roles/, present and future):

* ``meta/argument_specs.yml`` exists; its ``main`` entry point lists exactly the variables of
  ``defaults/main.yml`` with the same default values (other entry points may add parameters of
  their own; the defaults they repeat must agree), each with a description;
* the role's tasks carry the tags ``<role>_install``, ``<role>_configure`` and ``<role>_run``;
* every systemd unit or drop-in the role renders (a template with a ``[Service]`` section) is
  hardened: ``ProtectSystem=strict``, ``NoNewPrivileges``, ``PrivateTmp`` and ``MemoryMax``; units
  and drop-ins rendered from the shared ``templates/`` get these from ``templates/sandbox.j2``, which
  no role may switch off;
* every app role (one that sets ``unde_app_name``) has exactly the tasks of
  ``templates/app_role_tasks.yml.j2`` in ``tasks/main.yml``: unde_app's three steps, nothing else.
  A step of its own that a playbook runs around them (roles/llm_orchestrator's ``key_ring``: the
  master key ring, before the units start) is a separate entry point, ``tasks/<entry>.yml``
  declared in ``meta/argument_specs.yml``, never included by main.yml.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jinja2
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


TEMPLATES = REPO / "templates"


def _render_sandbox(sandbox: dict[str, Any]) -> str:
    """templates/sandbox.j2 rendered by Jinja with the given overrides (``combine`` is Ansible's
    dict merge; role values stay unrendered ``{{ ... }}`` strings, which is enough here)."""
    env = jinja2.Environment(  # noqa: S701 (systemd text, not HTML)
        loader=jinja2.FileSystemLoader(TEMPLATES), keep_trailing_newline=True
    )
    env.filters["combine"] = lambda base, extra: {**base, **extra}
    return env.get_template("sandbox.j2").render(sandbox=sandbox)


def _dropin_sandboxes() -> list[tuple[str, dict[str, Any]]]:
    """(role: task, sandbox overrides) of every task that renders templates/hardening.conf.j2."""
    found = []

    def walk(tasks: list[dict[str, Any]], role: str) -> None:
        for task in tasks or []:
            walk(task.get("block", []), role)
            src = str((task.get("ansible.builtin.template") or {}).get("src", ""))
            if src.endswith("/hardening.conf.j2"):
                found.append((f"{role}: {task['name']}", task["vars"]["unde_dropin"]["sandbox"]))

    for path in sorted((REPO / "roles").glob("*/tasks/*.yml")):
        walk(_yaml(path), path.parent.parent.name)
    return found


def test_shared_unit_templates_use_the_sandbox() -> None:
    shared = [p for p in sorted(TEMPLATES.glob("*.j2")) if re.search(r"^\[Service\]", p.read_text(), re.M)]
    assert {p.name for p in shared} >= {"app.service.j2", "hardening.conf.j2"}
    for path in shared:
        assert "{% include 'sandbox.j2' %}" in path.read_text(), f"templates/{path.name} skips the sandbox"


@pytest.mark.parametrize("where,sandbox", _dropin_sandboxes(), ids=lambda v: v if isinstance(v, str) else "")
def test_dropins_from_the_shared_template_are_hardened(where: str, sandbox: dict[str, Any]) -> None:
    text = _render_sandbox(sandbox)
    missing = [d for d in HARDENING if not re.search(rf"^{re.escape(d)}", text, re.MULTILINE)]
    assert not missing, f"{where} switches off {missing}"
    assert re.search(r"^ProtectSystem=strict$", text, re.M), where


def test_every_dropin_role_uses_the_shared_template() -> None:
    roles = {where.split(":")[0] for where, _ in _dropin_sandboxes()}
    assert roles >= {
        "etcd",
        "node_exporter",
        "patroni",
        "pgbouncer",
        "postgres_exporter",
        "postgresql",
        "redis",
    }


APP_ROLES = sorted(
    role for role in ROLES if "unde_app_name" in (_yaml(REPO / "roles" / role / "vars" / "main.yml") or {})
)


def test_app_roles_are_found() -> None:
    assert len(APP_ROLES) >= 13


@pytest.mark.parametrize("role", APP_ROLES)
def test_app_role_tasks_have_the_one_shape(role: str) -> None:
    shape = jinja2.Template((TEMPLATES / "app_role_tasks.yml.j2").read_text(), keep_trailing_newline=True)
    tasks = REPO / "roles" / role / "tasks"
    entry_points = _yaml(REPO / "roles" / role / "meta" / "argument_specs.yml")["argument_specs"]
    assert sorted(p.name for p in tasks.iterdir()) == sorted(f"{e}.yml" for e in entry_points), (
        f"roles/{role}/tasks: main.yml and one file per other entry point of meta/argument_specs.yml"
    )
    assert (tasks / "main.yml").read_text() == shape.render(app=role), (
        f"roles/{role}/tasks/main.yml differs from templates/app_role_tasks.yml.j2 (vars/ hold the rest)"
    )
