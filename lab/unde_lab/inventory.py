"""The lab's hosts and sites, read from the lab inventory (``inventories/lab/hosts.yml``).

Each host gets its lab address and site from the inventory; everything else that names a host
(netns, veth, MAC, machine id, disk, pid file, console log) is derived from its name here.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lab.unde_lab.common import LOG_DIR, REPO, RUN_DIR, VAR_DIR, LabError, digest

INVENTORY = Path(os.environ.get("UNDE_LAB_INVENTORY", str(REPO / "inventories/lab/hosts.yml")))
HOSTS_DIR = VAR_DIR / "hosts"
LAB_RANGE = ipaddress.IPv4Network("198.18.0.0/15")


@dataclass(frozen=True)
class Site:
    name: str
    bridge: str
    net: ipaddress.IPv4Network

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        return self.net.network_address + 1


SITES: dict[str, Site] = {
    "helsinki": Site("helsinki", "unde-hel", ipaddress.IPv4Network("198.18.0.0/16")),
    "local": Site("local", "unde-loc", ipaddress.IPv4Network("198.19.0.0/16")),
}


@dataclass(frozen=True)
class Host:
    name: str
    address: ipaddress.IPv4Address
    site: Site

    @property
    def netns(self) -> str:
        return f"unde-{self.name}"

    @property
    def veth(self) -> str:  # controller end; <= 15 chars
        return "ul-" + digest(self.name)[:8]

    @property
    def veth_peer(self) -> str:  # temporary name of the host end, renamed eth0 inside the netns
        return "up-" + digest(self.name)[:8]

    @property
    def mac(self) -> str:  # stable, so peers' ARP caches stay valid across restarts
        h = digest("mac:" + self.name)
        return "02:" + ":".join(h[i : i + 2] for i in range(0, 10, 2))

    @property
    def machine_id(self) -> str:
        return digest("machine-id:" + self.name)[:32]

    @property
    def dir(self) -> Path:
        return HOSTS_DIR / self.name

    @property
    def root(self) -> Path:
        return self.dir / "root"

    @property
    def pidfile(self) -> Path:
        return RUN_DIR / f"{self.name}.pid"

    @property
    def log(self) -> Path:
        return LOG_DIR / f"{self.name}.log"


def _walk_groups(
    name: str, body: Any, site: str | None, hosts: dict[str, dict[str, Any]], sites: dict[str, set[str]]
) -> None:
    if not isinstance(body, dict):
        return
    gvars = body.get("vars") or {}
    site = str(gvars["unde_site"]) if "unde_site" in gvars else site
    for host, hv in (body.get("hosts") or {}).items():
        hosts.setdefault(host, {}).update(hv or {})
        if site is not None:
            sites.setdefault(host, set()).add(site)
    for child, cbody in (body.get("children") or {}).items():
        _walk_groups(child, cbody, site, hosts, sites)


def load_inventory(path: Path = INVENTORY) -> list[Host]:
    """Every lab host, in inventory order, with its lab address and site (validated)."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise LabError(f"cannot read the lab inventory {path}: {e}") from e
    hostvars: dict[str, dict[str, Any]] = {}
    sites: dict[str, set[str]] = {}
    _walk_groups("all", (data or {}).get("all"), None, hostvars, sites)
    out: list[Host] = []
    seen: dict[ipaddress.IPv4Address, str] = {}
    veths: dict[str, str] = {}
    for name, hv in hostvars.items():
        if "ansible_host" not in hv:
            continue
        site_names = sites.get(name, set())
        if len(site_names) != 1:
            raise LabError(f"{path}: host {name} must belong to exactly one site group, has {site_names}")
        site_name = next(iter(site_names))
        if site_name not in SITES:
            raise LabError(f"{path}: host {name}: unknown site {site_name!r} (known: {', '.join(SITES)})")
        site = SITES[site_name]
        try:
            addr = ipaddress.IPv4Address(str(hv["ansible_host"]))
        except ValueError as e:
            raise LabError(f"{path}: host {name}: ansible_host is not an IPv4 address: {e}") from e
        if addr not in LAB_RANGE or addr not in site.net:
            raise LabError(f"{path}: host {name}: {addr} is outside its site's lab range {site.net}")
        if addr in (site.gateway, site.net.network_address, site.net.broadcast_address):
            raise LabError(f"{path}: host {name}: {addr} is reserved (gateway/network/broadcast)")
        if addr in seen:
            raise LabError(f"{path}: hosts {seen[addr]} and {name} share the address {addr}")
        seen[addr] = name
        host = Host(name, addr, site)
        if host.veth in veths:
            raise LabError(f"veth name clash between {veths[host.veth]} and {name}; rename a host")
        veths[host.veth] = name
        out.append(host)
    if not out:
        raise LabError(f"{path}: no hosts with ansible_host found")
    return out


def select_hosts(inventory: Sequence[Host], names: Sequence[str]) -> list[Host]:
    if not names:
        return list(inventory)
    by_name = {h.name: h for h in inventory}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise LabError(f"unknown lab host(s): {', '.join(unknown)}; known: {', '.join(by_name)}")
    return [by_name[n] for n in dict.fromkeys(names)]
