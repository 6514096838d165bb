"""Lab fixtures shared by every molecule scenario, and the journal of the failing unit on a failure.

pytest loads this file for each scenario's tests (the rootdir is the repository: its pyproject.toml
holds the pytest settings), so the scenarios carry no copy of it; a scenario's own
``tests/conftest.py`` would add only what is its own. Lab clients that are not fixtures are plain
modules the tests import: ``unde_tools.lab_client`` (ssh by host name, labctl, playbooks) and
``unde_tools.patroni_drill`` (shard_ha).

The tests reach the lab hosts over ssh with the lab key (the lab inventory's key path is a Jinja
template, which testinfra's ansible backend does not render). Addresses and groups come from
``ansible-inventory`` on the lab inventory, so they are exactly what the playbook used. ``secrets``
holds the lab vault's values, which the tests log in with. Test modules that need the helpers at
import time find this module as ``sys.modules["unde_molecule_lab"]``.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import testinfra  # type: ignore[import-untyped]
from testinfra.host import Host  # type: ignore[import-untyped]
from unde_tools.lab_ssh import SSH_KEY, ssh_options
from unde_tools.lab_vault import decrypt

REPO = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY") or Path(__file__).resolve().parents[1])
INVENTORY = REPO / "inventories" / "lab" / "hosts.yml"
SCENARIO_HOSTS = os.environ.get("UNDE_SCENARIO_HOSTS", "model-generator,monitoring,local-context").split(",")
# the lab's options, plus one multiplexed connection per host for the many commands of a test run
SSH_ARGS = " ".join(
    [*ssh_options(connect_timeout=10), "-o", "ControlMaster=auto", "-o", "ControlPersist=60s",
     "-o", f"ControlPath={Path(tempfile.gettempdir())}/unde-ti-%C"]
)  # fmt: skip
JOURNAL_LINES = 100
vault = functools.cache(decrypt)
sys.modules.setdefault("unde_molecule_lab", sys.modules[__name__])


@functools.cache
def inventory() -> dict[str, Any]:
    """``ansible-inventory --list`` of the lab inventory (groups flattened, host vars in _meta)."""
    exe = Path(sys.executable).parent / "ansible-inventory"
    out = subprocess.run(
        [str(exe) if exe.exists() else "ansible-inventory", "-i", str(INVENTORY), "--list"],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    data: dict[str, Any] = json.loads(out)
    return data


def hostvars(name: str) -> dict[str, Any]:
    hv: dict[str, Any] = inventory()["_meta"]["hostvars"][name]
    return hv


def all_hosts() -> list[str]:
    return sorted(inventory()["_meta"]["hostvars"])


def group_members(group: str) -> set[str]:
    """Hosts of a group, children included."""
    inv = inventory()
    node = inv.get(group, {})
    members = set(node.get("hosts", []))
    for child in node.get("children", []):
        members |= group_members(child)
    return members


def private_ip(name: str) -> str:
    return str(hostvars(name)["private_ip"])


def lab_host(name: str) -> Host:
    """A testinfra host for an inventory host, over ssh as root with the lab key."""
    return testinfra.get_host(
        f"ssh://root@{hostvars(name)['ansible_host']}",
        ssh_identity_file=str(SSH_KEY),
        ssh_extra_args=SSH_ARGS,
    )


class Lab:
    """What the tests need to know about the lab (a fixture, so test modules import nothing)."""

    scenario_hosts = SCENARIO_HOSTS
    host = staticmethod(lab_host)
    hostvars = staticmethod(hostvars)
    all_hosts = staticmethod(all_hosts)
    group_members = staticmethod(group_members)
    private_ip = staticmethod(private_ip)


@pytest.fixture(scope="session")
def lab() -> Lab:
    return Lab()


@pytest.fixture(params=SCENARIO_HOSTS)
def name(request: pytest.FixtureRequest) -> str:
    """Each scenario host in turn (the host a test checks)."""
    return str(request.param)


@pytest.fixture(params=SCENARIO_HOSTS)
def target(request: pytest.FixtureRequest) -> str:
    """Each scenario host in turn (the host a connection goes to)."""
    return str(request.param)


@pytest.fixture
def node(name: str) -> Host:
    return lab_host(name)


def journal(name: str, unit: str) -> str:
    try:
        res = lab_host(name).run("journalctl -u %s -n %s --no-pager", unit, str(JOURNAL_LINES))
    except Exception as exc:  # the host may be the thing that broke
        return f"(could not read the journal: {exc})"
    return str(res.stdout) + str(res.stderr)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "journal(*units): on failure, print the last lines of these units' journal from the test's host(s)",
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if report.when != "call" or not report.failed:
        return
    marker = item.get_closest_marker("journal")
    if marker is None:
        return
    params: dict[str, Any] = getattr(getattr(item, "callspec", None), "params", {})
    names = [params["name"]] if "name" in params else SCENARIO_HOSTS
    for host in names:
        for unit in marker.args:
            text = journal(host, unit)
            report.sections.append((f"journal of {unit} on {host} (last {JOURNAL_LINES} lines)", text))


@pytest.fixture(scope="session")
def secrets() -> dict[str, Any]:
    """The lab vault's ``vault_*`` variables (lab-only values)."""
    return vault()
