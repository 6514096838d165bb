"""meta/argument_specs.yml of the backup roles match their defaults/main.yml exactly."""

from __future__ import annotations

import pytest
import yaml

from backups.conftest import REPO


@pytest.mark.parametrize("role", ["pgbackrest", "lab_objstore", "lab_storagebox"])
def test_argument_specs_match_defaults(role: str) -> None:
    base = REPO / "roles" / role
    defaults = yaml.safe_load((base / "defaults" / "main.yml").read_text())
    specs = yaml.safe_load((base / "meta" / "argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]
    assert sorted(options) == sorted(defaults)
    assert {k: v.get("default") for k, v in options.items()} == defaults
    assert all(v.get("description") for v in options.values())


def test_lab_roles_are_only_in_the_lab_playbook() -> None:
    """The stand-in roles are applied by playbooks/lab_standins.yml only, to lab-only groups."""
    for pb in sorted((REPO / "playbooks").glob("*.yml")):
        text = pb.read_text()
        if pb.name == "lab_standins.yml":
            plays = yaml.safe_load(text)
            assert {p["hosts"] for p in plays} == {"lab_objstore", "lab_storagebox"}
        else:
            assert "lab_objstore" not in text and "lab_storagebox" not in text, pb
    for site in ("helsinki", "local"):
        inv = (REPO / "inventories" / site / "hosts.yml").read_text()
        assert "lab_" not in inv
