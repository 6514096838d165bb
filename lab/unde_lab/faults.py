"""Faults a test injects into a running lab: kill (SIGKILL a whole host), freeze/thaw (its
cgroup), and a partition of a host from the other site (an nft set), each healed by ``heal``."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence

from lab.unde_lab.common import LabError, lab_lock, require, run, say
from lab.unde_lab.inventory import SITES, Host, Site, load_inventory, select_hosts
from lab.unde_lab.processes import children, host_cgroups, kill_cgroup, nspawn_pid, set_frozen

NFT_FAULTS = "unde_lab_faults"


def _fault_table_exists() -> bool:
    return run(["nft", "list", "table", "inet", NFT_FAULTS], check=False).returncode == 0


def _set_name(site: Site) -> str:
    return f"part_{site.name}"


def ensure_fault_table() -> None:
    if _fault_table_exists():
        return
    sets, rules = [], []
    for site in SITES.values():
        sets.append(f"  set {_set_name(site)} {{ type ipv4_addr; }}")
        for other in SITES.values():
            if other is site:
                continue
            rules.append(f"    ip saddr @{_set_name(site)} ip daddr {other.net} drop")
            rules.append(f"    ip saddr {other.net} ip daddr @{_set_name(site)} drop")
    text = (
        f"table inet {NFT_FAULTS} {{\n" + "\n".join(sets) + "\n  chain forward {\n"
        "    type filter hook forward priority filter - 10; policy accept;\n"
        + "\n".join(rules) + "\n  }\n}\n"
    )  # fmt: skip
    run(["nft", "-f", "-"], input_text=text, what="nft faults table")


def partitioned() -> set[ipaddress.IPv4Address]:
    if not _fault_table_exists():
        return set()
    out: set[ipaddress.IPv4Address] = set()
    for site in SITES.values():
        cp = run(["nft", "-j", "list", "set", "inet", NFT_FAULTS, _set_name(site)], check=False)
        if cp.returncode != 0:
            continue
        for item in json.loads(cp.stdout).get("nftables", []):
            for elem in item.get("set", {}).get("elem", []):
                if isinstance(elem, str):
                    out.add(ipaddress.IPv4Address(elem))
    return out


def set_partition(host: Host, on: bool) -> bool:
    """Add/remove the host to/from its site's partition set; True when that changed something."""
    if on:
        ensure_fault_table()
    elif not _fault_table_exists():
        return False
    if (host.address in partitioned()) == on:
        return False
    verb = "add" if on else "delete"
    run(["nft", verb, "element", "inet", NFT_FAULTS, _set_name(host.site), f"{{ {host.address} }}"],
        what=f"{host.name}: partition {verb}")  # fmt: skip
    return True


# --------------------------------------------------------------------------- the fault command


def fault(name: str, action: str) -> None:
    require("fault")
    inventory = load_inventory()
    with lab_lock():
        if action == "heal" and name == "all":
            heal_all(inventory)
            return
        (host,) = select_hosts(inventory, [name])
        if action == "kill":
            pid = nspawn_pid(host)
            if pid is None:
                say(f"{host.name}: already stopped")
                return
            kill_cgroup(host_cgroups(host)[0])
            set_frozen(host, False)
            children.pop(pid, None)
            host.pidfile.unlink(missing_ok=True)
            say(f"{host.name}: killed (SIGKILL to every process of the container, pid {pid}); "
                f"disk and network kept; `labctl up {host.name}` boots it again")  # fmt: skip
        elif action in ("freeze", "thaw"):
            if nspawn_pid(host) is None:
                raise LabError(f"{host.name}: not running; cannot {action}")
            changed = set_frozen(host, action == "freeze")
            word = "frozen" if action == "freeze" else "thawed"
            say(f"{host.name}: {word} (cgroup.freeze)" if changed else f"{host.name}: already {word}")
        elif action == "partition":
            others = ", ".join(str(s.net) for s in SITES.values() if s is not host.site)
            if set_partition(host, True):
                say(f"{host.name}: partitioned from the other site ({host.address} <-/-> {others}; "
                    f"same-site traffic unaffected)")  # fmt: skip
            else:
                say(f"{host.name}: already partitioned")
        elif action == "heal":
            did = []
            if set_partition(host, False):
                did.append("partition removed")
            if nspawn_pid(host) is not None and set_frozen(host, False):
                did.append("thawed")
            say(f"{host.name}: healed ({', '.join(did)})" if did else f"{host.name}: nothing to heal")
        else:
            raise LabError(f"unknown fault action {action}")


def heal_all(inventory: Sequence[Host]) -> None:
    did = False
    for host in inventory:
        if set_partition(host, False):
            say(f"{host.name}: partition removed")
            did = True
        if nspawn_pid(host) is not None and set_frozen(host, False):
            say(f"{host.name}: thawed")
            did = True
    if not did:
        say("nothing to heal")
