"""Load the project's YAML inventories without Ansible's runtime (fast, no vault needed).

Only the structures the project uses are supported: ``all.children.<group>`` trees with
``hosts`` / ``children`` / ``vars`` (the YAML inventory format). Group membership is
resolved transitively so ``groups_of(host)`` matches what Ansible would report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
SITE_INVENTORIES = ("inventories/helsinki", "inventories/local")
SITE_GROUPS = ("helsinki", "local")


class InventoryError(ValueError):
    """An inventory that cannot be read; the message names the file and what is wrong."""


@dataclass
class Inventory:
    """Hosts (with their own variables) and groups (with direct hosts and children)."""

    hostvars: dict[str, dict[str, Any]] = field(default_factory=dict)
    host_sources: dict[str, str] = field(default_factory=dict)
    group_hosts: dict[str, set[str]] = field(default_factory=dict)
    group_children: dict[str, set[str]] = field(default_factory=dict)
    group_vars: dict[str, dict[str, Any]] = field(default_factory=dict)

    def hosts_of(self, group: str) -> set[str]:
        """All hosts of ``group``, including those of its children (transitively)."""
        if group == "all":
            return set(self.hostvars)
        seen: set[str] = set()
        out: set[str] = set()
        stack = [group]
        while stack:
            g = stack.pop()
            if g in seen:
                continue
            seen.add(g)
            out |= self.group_hosts.get(g, set())
            stack.extend(self.group_children.get(g, set()))
        return out

    def groups_of(self, host: str) -> set[str]:
        """Every group (other than ``all``) that contains ``host`` directly or through a child."""
        return {g for g in self.all_groups() if host in self.hosts_of(g)}

    def all_groups(self) -> set[str]:
        return (set(self.group_hosts) | set(self.group_children)) - {"all"}

    def var(self, host: str, name: str, default: Any = None) -> Any:
        """A host variable, falling back to the vars of the groups it belongs to."""
        hv = self.hostvars.get(host, {})
        if name in hv:
            return hv[name]
        for g in sorted(self.groups_of(host)):
            gv = self.group_vars.get(g, {})
            if name in gv:
                return gv[name]
        return self.group_vars.get("all", {}).get(name, default)


def _walk(inv: Inventory, group: str, body: Any, source: str) -> None:
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise InventoryError(f"{source}: group '{group}' must be a mapping, got {type(body).__name__}")
    unknown = set(body) - {"hosts", "children", "vars"}
    if unknown:
        raise InventoryError(f"{source}: group '{group}' has unknown keys {sorted(unknown)}")
    inv.group_hosts.setdefault(group, set())
    inv.group_children.setdefault(group, set())
    if body.get("vars"):
        inv.group_vars.setdefault(group, {}).update(body["vars"])
    for host, hv in (body.get("hosts") or {}).items():
        inv.group_hosts[group].add(host)
        if hv:
            if not isinstance(hv, dict):
                raise InventoryError(f"{source}: host '{host}' vars must be a mapping")
            inv.hostvars.setdefault(host, {}).update(hv)
        else:
            inv.hostvars.setdefault(host, {})
        inv.host_sources.setdefault(host, source)
    for child, cbody in (body.get("children") or {}).items():
        inv.group_children[group].add(child)
        _walk(inv, child, cbody, source)


def load(dirs: list[Path] | tuple[Path, ...]) -> Inventory:
    """Load every ``*.yml`` inventory source in ``dirs`` (encrypted vault sources are skipped)."""
    inv = Inventory()
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            raise InventoryError(f"{d}: inventory directory does not exist")
        files = sorted(p for p in d.glob("*.yml") if not p.name.endswith(".vault.yml"))
        if not files:
            raise InventoryError(f"{d}: no *.yml inventory source found")
        for f in files:
            try:
                data = yaml.safe_load(f.read_text())
            except yaml.YAMLError as exc:
                raise InventoryError(f"{f}: not valid YAML: {exc}") from exc
            if not isinstance(data, dict) or "all" not in data:
                raise InventoryError(f"{f}: top level must be a mapping with an 'all' group")
            _walk(inv, "all", data["all"], str(f.relative_to(REPO) if f.is_relative_to(REPO) else f))
    return inv
