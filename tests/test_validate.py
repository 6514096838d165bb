"""`make validate` catches each broken-inventory case, naming the host and the field."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from support import REPO, InventoryEditor

Children = dict[str, Any]


def validate(inventory: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = ["make", "--no-print-directory", "validate"]
    if inventory:
        cmd.append(f"INVENTORY={inventory}")
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)


def run_validator(inventory: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "unde_tools.validate", "--inventory", inventory],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO / "tools"), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )


def test_real_inventories_are_valid() -> None:
    res = run_validator("inventories/helsinki,inventories/local")
    assert res.returncode == 0, res.stderr
    assert "29 hosts, topology OK" in res.stdout


def test_make_validate_checks_sites_and_lab() -> None:
    res = validate()
    assert res.returncode == 0, res.stdout + res.stderr
    assert "inventories/helsinki,inventories/local: 29 hosts, topology OK" in res.stdout
    assert "inventories/lab: 31 hosts, topology OK" in res.stdout  # 29 + 2 lab stand-ins
    assert "inventories/lab/hosts.yml: in sync" in res.stdout


def _host(children: Children, site: str, host: str) -> dict[str, Any]:
    hv: dict[str, Any] = children[site]["hosts"][host]
    return hv


def dup_ip_across_sites(h: Children, loc: Children) -> None:
    _host(loc, "local", "local-mood")["private_ip"] = "10.1.0.8"  # staging-db's address


def dup_ip_same_site(h: Children, loc: Children) -> None:
    _host(h, "helsinki", "production-db")["private_ip"] = "10.1.0.12"


def dup_wg_interface(h: Children, loc: Children) -> None:
    _host(loc, "local", "local-mood")["wg_interface"] = "wg-app"


def dup_wg_tunnel(h: Children, loc: Children) -> None:
    _host(loc, "local", "local-voice")["wg_tunnel_remote"] = "10.3.10.100"


def missing_wg_tunnel(h: Children, loc: Children) -> None:
    del _host(loc, "local", "local-context")["wg_tunnel_local"]


def port_clash(h: Children, loc: Children) -> None:
    # persona agent on the mood host: both claim tcp/8080
    loc["persona_agent_app"]["hosts"]["local-mood"] = None


def port_clash_override(h: Children, loc: Children) -> None:
    _host(h, "helsinki", "ximilar-gw")["unde_port_overrides"] = {"ximilar_gw": 9100}


def shard_without_replica(h: Children, loc: Children) -> None:
    del h["postgres"]["children"]["shard_replica"]


def replica_without_shard(h: Children, loc: Children) -> None:
    h["helsinki"]["hosts"]["shard-replica-1"] = {"private_ip": "10.1.1.11", "shard_index": 1}
    h["postgres"]["children"]["shard_replica"]["hosts"]["shard-replica-1"] = None


def shard_index_gap(h: Children, loc: Children) -> None:
    loc["local"]["hosts"]["local-shard-2"] = {
        "private_ip": "10.2.1.2",
        "shard_index": 2,
        "wg_interface": "wg-shard2",
        "wg_tunnel_local": "10.3.12.1",
        "wg_tunnel_remote": "10.3.12.100",
    }
    loc["postgres"]["children"]["shard_primary"]["hosts"]["local-shard-2"] = None
    loc["wireguard_local"]["hosts"]["local-shard-2"] = None
    h["helsinki"]["hosts"]["shard-replica-2"] = {"private_ip": "10.1.1.12", "shard_index": 2}
    h["postgres"]["children"]["shard_replica"]["hosts"]["shard-replica-2"] = None


def etcd_two_members(h: Children, loc: Children) -> None:
    del h["etcd"]["hosts"]["etcd-3"]
    h["base_only"]["hosts"]["etcd-3"] = None  # still deployed, so only the etcd rule fires


def etcd_two_local(h: Children, loc: Children) -> None:
    del h["etcd"]["hosts"]["etcd-3"]
    h["base_only"]["hosts"]["etcd-3"] = None
    loc["etcd"]["hosts"]["local-redis"] = None
    _host(loc, "local", "local-redis")["etcd_member_name"] = "etcd-3"


def host_without_deploying_group(h: Children, loc: Children) -> None:
    h["helsinki"]["hosts"]["orphan"] = {"private_ip": "10.1.0.99"}


def ip_outside_site(h: Children, loc: Children) -> None:
    _host(loc, "local", "local-app")["private_ip"] = "10.2.5.2"


CASES = [
    (dup_ip_across_sites, "local-mood", "private_ip", "10.1.0.8 is already used by host staging-db"),
    (dup_ip_same_site, "production-db", "private_ip", "10.1.0.12 is already used by host ximilar-gw"),
    (dup_wg_interface, "local-mood", "wg_interface", "wg-app is already used by host local-app"),
    (dup_wg_tunnel, "local-voice", "wg_tunnel_remote", "10.3.10.100 is already used by host local-shard-0"),
    (missing_wg_tunnel, "local-context", "wg_tunnel_local", "missing"),
    (port_clash, "local-mood", "unde_services", "claim tcp/8080"),
    (port_clash_override, "ximilar-gw", "unde_services", "claim tcp/9100"),
    (shard_without_replica, "local-shard-0", "shard_index", "shard 0 has no shard_replica host"),
    (replica_without_shard, "shard-replica-1", "shard_index", "shard 1 has no shard_primary host"),
    (shard_index_gap, "local-shard-2", "shard_index", "gap: [1] missing"),
    (etcd_two_members, "local-etcd-1", "etcd", "exactly 3 members, has 2"),
    (etcd_two_local, "local-redis", "etcd", "2 of 3 etcd members on the local site"),
    (host_without_deploying_group, "orphan", "groups", "in no group that a playbook deploys"),
    (ip_outside_site, "local-app", "private_ip", "outside the local site networks"),
]


@pytest.mark.parametrize(("edit", "host", "field", "text"), CASES, ids=[c[0].__name__ for c in CASES])
def test_broken_inventory_is_refused(
    broken_inventories: InventoryEditor, edit: Any, host: str, field: str, text: str
) -> None:
    inventory = broken_inventories(edit)
    res = validate(inventory)
    assert res.returncode != 0, f"{edit.__name__} passed validation:\n{res.stdout}"
    expected = f"host={host} field={field}:"
    lines = [ln for ln in res.stderr.splitlines() if expected in ln]
    assert lines, f"no error naming {expected!r}:\n{res.stderr}"
    assert any(text in ln for ln in lines), f"{text!r} not in {lines}"


def test_unreadable_inventory_names_the_file(tmp_path: Any) -> None:
    d = tmp_path / "bad"
    d.mkdir()
    (d / "hosts.yml").write_text("all:\n  children:\n    x: [1, 2]\n")
    res = run_validator(str(d))
    assert res.returncode == 2
    assert "hosts.yml: group 'x' must be a mapping" in res.stderr
