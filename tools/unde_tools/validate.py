"""Topology validation: `make validate [INVENTORY=dir1,dir2]`.

Reads the YAML inventories and the shared port registry and fails, naming the host and the
field, on anything that would make a deployment wrong before Ansible touches a server:

* a private IP used twice (across every inventory given);
* a WireGuard interface name or tunnel address used twice, or missing on a local host;
* two services on one host claiming the same port/protocol;
* a shard primary without its Helsinki replica (and vice versa), shard indexes with gaps;
* an etcd group that is not exactly 3 members or puts 2 of 3 on the local site;
* a host in no group that a playbook deploys;
* a host defined in two inventories, or a private IP outside its site's network.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from unde_tools.inventory import REPO, SITE_GROUPS, SITE_INVENTORIES, Inventory, InventoryError, load

SERVICES_FILE = REPO / "group_vars/all/services.yml"
NETWORK_FILE = REPO / "group_vars/all/network.yml"
PLAYBOOK_DIR = REPO / "playbooks"
IGNORED_PATTERNS = {"all", "localhost", *SITE_GROUPS}
LAB_RANGE = ipaddress.ip_network("198.18.0.0/15")
# Hosts in this group intentionally receive only the base roles (playbooks/base.yml, hosts: all).
BASE_ONLY_GROUP = "base_only"


@dataclass(frozen=True)
class Problem:
    host: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"host={self.host} field={self.field}: {self.message}"


def deploying_groups(playbook_dir: Path = PLAYBOOK_DIR) -> set[str]:
    """Groups targeted by the site playbooks (``hosts:`` of every play in playbooks/*.yml)."""
    groups: set[str] = set()
    for pb in sorted(playbook_dir.glob("*.yml")):
        plays = yaml.safe_load(pb.read_text()) or []
        for play in plays:
            if not isinstance(play, dict) or "hosts" not in play:
                continue
            hosts = play["hosts"]
            patterns = hosts if isinstance(hosts, list) else str(hosts).replace(",", ":").split(":")
            for pat in patterns:
                name = str(pat).strip().lstrip("!&")
                if name and name not in IGNORED_PATTERNS and "{{" not in name:
                    groups.add(name)
    return groups


def _ip(value: Any) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(str(value))
    except ValueError:
        return None


def _duplicates(inv: Inventory, field: str, hosts: list[str], problems: list[Problem]) -> None:
    """Report every host whose ``field`` value is shared with another host, naming the others."""
    users: dict[str, list[str]] = defaultdict(list)
    for h in hosts:
        v = inv.hostvars[h].get(field)
        if v is not None:
            users[str(v)].append(h)
    for value, hs in users.items():
        for h in hs if len(hs) > 1 else []:
            others = ", ".join(o for o in hs if o != h)
            problems.append(Problem(h, field, f"{value} is already used by host {others}"))


def check(
    inv: Inventory, services: dict[str, Any], networks: dict[str, str], deploy: set[str]
) -> list[Problem]:
    problems: list[Problem] = []
    hosts = sorted(inv.hostvars)
    site_of = {h: inv.var(h, "unde_site") for h in hosts}

    # -- addresses ---------------------------------------------------------------
    for h in hosts:
        raw = inv.hostvars[h].get("private_ip")
        ip = _ip(raw)
        if raw is None:
            problems.append(Problem(h, "private_ip", "missing"))
        elif ip is None:
            problems.append(Problem(h, "private_ip", f"{raw!r} is not an IPv4 address"))
        site = site_of[h]
        if site not in SITE_GROUPS:
            problems.append(
                Problem(h, "unde_site", f"must be one of {list(SITE_GROUPS)} (host is in no site group)")
            )
        elif ip is not None and inv.var(h, "unde_lab", False):
            if ip not in LAB_RANGE:
                problems.append(Problem(h, "private_ip", f"{ip} is outside the lab range {LAB_RANGE}"))
        elif ip is not None:
            nets = [ipaddress.ip_network(networks[site])]
            if site == "local" and "local_shards" in networks:
                nets.append(ipaddress.ip_network(networks["local_shards"]))
            if not any(ip in n for n in nets):
                problems.append(
                    Problem(
                        h, "private_ip", f"{ip} is outside the {site} site networks {[str(n) for n in nets]}"
                    )
                )
    _duplicates(inv, "private_ip", hosts, problems)

    # -- WireGuard ---------------------------------------------------------------
    wg_hosts = sorted(inv.hosts_of("wireguard_local"))
    for h in wg_hosts:
        for f in ("wg_interface", "wg_tunnel_local", "wg_tunnel_remote"):
            if inv.hostvars[h].get(f) in (None, ""):
                problems.append(Problem(h, f, "missing (every wireguard_local host needs its own tunnel)"))
        for f in ("wg_tunnel_local", "wg_tunnel_remote"):
            v = inv.hostvars[h].get(f)
            if v is not None and _ip(v) is None:
                problems.append(Problem(h, f, f"{v!r} is not an IPv4 address"))
    _duplicates(inv, "wg_interface", hosts, problems)
    tunnel_users: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for h in hosts:
        for f in ("wg_tunnel_local", "wg_tunnel_remote"):
            v = inv.hostvars[h].get(f)
            if v is not None:
                tunnel_users[str(v)].append((h, f))
    for addr, users in tunnel_users.items():
        for h, f in users if len(users) > 1 else []:
            others = ", ".join(f"{oh} ({of})" for oh, of in users if (oh, of) != (h, f))
            problems.append(Problem(h, f, f"{addr} is already used by host {others}"))
    tunnel_seen = {addr: users[0] for addr, users in tunnel_users.items()}
    private = {str(inv.hostvars[h].get("private_ip")): h for h in hosts}
    for addr, (h, f) in tunnel_seen.items():
        if addr in private:
            problems.append(Problem(h, f, f"{addr} collides with the private_ip of host {private[addr]}"))

    # -- ports -------------------------------------------------------------------
    for h in hosts:
        groups = inv.groups_of(h) | {"all"}
        overrides = inv.hostvars[h].get("unde_port_overrides") or {}
        claimed: dict[tuple[int, str], str] = {}
        for name in sorted(services):
            svc = services[name]
            if not set(svc.get("groups", [])) & groups:
                continue
            port = int(overrides.get(name, svc["port"]))
            key = (port, str(svc.get("proto", "tcp")))
            if key in claimed:
                problems.append(
                    Problem(
                        h,
                        "unde_services",
                        f"{name} and {claimed[key]} both claim {key[1]}/{port} on this host",
                    )
                )
            else:
                claimed[key] = name

    # -- shards ------------------------------------------------------------------
    by_index: dict[str, dict[int, list[str]]] = {
        "shard_primary": defaultdict(list),
        "shard_replica": defaultdict(list),
    }
    for role, site in (("shard_primary", "local"), ("shard_replica", "helsinki")):
        for h in sorted(inv.hosts_of(role)):
            idx = inv.hostvars[h].get("shard_index")
            if not isinstance(idx, int) or isinstance(idx, bool) or idx < 0:
                problems.append(
                    Problem(h, "shard_index", f"{role} host needs a non-negative integer, got {idx!r}")
                )
                continue
            if site_of[h] != site:
                problems.append(
                    Problem(h, "unde_site", f"{role} hosts belong to the {site} site, not {site_of[h]}")
                )
            by_index[role][idx].append(h)
    for role, other in (("shard_primary", "shard_replica"), ("shard_replica", "shard_primary")):
        for idx, hs in sorted(by_index[role].items()):
            if len(hs) > 1:
                for h in hs[1:]:
                    problems.append(Problem(h, "shard_index", f"{role} index {idx} is also used by {hs[0]}"))
            if idx not in by_index[other]:
                want = "its Helsinki replica" if role == "shard_primary" else "its local primary"
                problems.append(Problem(hs[0], "shard_index", f"shard {idx} has no {other} host ({want})"))
    indexes = sorted(set(by_index["shard_primary"]) | set(by_index["shard_replica"]))
    if indexes and indexes != list(range(len(indexes))):
        missing = sorted(set(range(max(indexes) + 1)) - set(indexes))
        for role in ("shard_primary", "shard_replica"):
            for idx, hs in sorted(by_index[role].items()):
                if idx > missing[0]:
                    problems.append(
                        Problem(
                            hs[0], "shard_index", f"shard indexes have a gap: {missing} missing before {idx}"
                        )
                    )

    # -- etcd ----------------------------------------------------------------------
    etcd = sorted(inv.hosts_of("etcd"))
    if etcd or inv.hosts_of("shard_primary"):
        if len(etcd) != 3:
            who = etcd[0] if etcd else "(none)"
            problems.append(
                Problem(who, "etcd", f"etcd group must have exactly 3 members, has {len(etcd)}: {etcd}")
            )
        local_members = [h for h in etcd if site_of[h] == "local"]
        if len(local_members) >= 2:
            problems.append(
                Problem(
                    local_members[1],
                    "etcd",
                    f"{len(local_members)} of {len(etcd)} etcd members on the local site ({local_members});"
                    " losing the local DC would lose quorum",
                )
            )
        names: dict[str, str] = {}
        for h in etcd:
            n = inv.hostvars[h].get("etcd_member_name")
            if not n:
                problems.append(Problem(h, "etcd_member_name", "missing"))
            elif n in names:
                problems.append(Problem(h, "etcd_member_name", f"{n} is already used by host {names[n]}"))
            else:
                names[n] = h

    # -- every host deploys something --------------------------------------------
    for h in hosts:
        if not inv.groups_of(h) & deploy:
            problems.append(
                Problem(
                    h, "groups", f"in no group that a playbook deploys (groups: {sorted(inv.groups_of(h))})"
                )
            )
    return problems


def run(dirs: list[Path]) -> list[Problem]:
    inv = load(dirs)
    services = yaml.safe_load(SERVICES_FILE.read_text())["unde_services"]
    networks = yaml.safe_load(NETWORK_FILE.read_text())["unde_networks"]
    problems = check(inv, services, networks, deploying_groups() | {BASE_ONLY_GROUP})
    # a host defined (with variables) in two inventory files
    seen: dict[str, Path] = {}
    for d in dirs:
        for f in sorted(Path(d).glob("*.yml")):
            if f.name.endswith(".vault.yml"):
                continue
            data = yaml.safe_load(f.read_text()) or {}
            for h in _hosts_with_vars(data.get("all") or {}):
                if h in seen and seen[h] != f:
                    problems.append(Problem(h, "inventory", f"defined in both {seen[h]} and {f}"))
                seen.setdefault(h, f)
    return problems


def _hosts_with_vars(body: dict[str, Any]) -> set[str]:
    out = {h for h, hv in (body.get("hosts") or {}).items() if hv}
    for cb in (body.get("children") or {}).values():
        out |= _hosts_with_vars(cb or {})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Validate the UNDE topology (inventories + port registry).")
    ap.add_argument(
        "--inventory",
        default=",".join(SITE_INVENTORIES),
        help="comma-separated inventory directories checked together (default: both sites)",
    )
    args = ap.parse_args(argv)
    dirs = []
    for p in args.inventory.split(","):
        if not p:
            continue
        d = Path(p) if Path(p).is_absolute() else REPO / p
        dirs.append(d.parent if d.is_file() else d)
    try:
        problems = run(dirs)
    except (InventoryError, OSError, yaml.YAMLError) as exc:
        print(f"ERROR {exc}", file=sys.stderr)
        return 2
    names = ",".join(str(d.relative_to(REPO) if d.is_relative_to(REPO) else d) for d in dirs)
    if problems:
        for p in problems:
            print(f"ERROR {p}", file=sys.stderr)
        print(f"{names}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    inv = load(dirs)
    print(f"{names}: {len(inv.hostvars)} hosts, topology OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
