"""The lab network on the controller: one bridge per site, a netns + veth per host, the nft
table that lets sites reach each other and the Debian archive only, and the sysctls it needs."""

from __future__ import annotations

import contextlib
import ipaddress
import json
from collections.abc import Sequence
from pathlib import Path

from lab.unde_lab.common import VAR_DIR, LabError, digest, run, say
from lab.unde_lab.faults import NFT_FAULTS
from lab.unde_lab.inventory import LAB_RANGE, SITES, Host
from lab.unde_lab.processes import cgroup2_root, named_systemd_root

NFT_TABLE = "unde_lab"


def _link_exists(name: str, netns: str | None = None) -> bool:
    cmd = ["ip", *(["-n", netns] if netns else []), "link", "show", "dev", name]
    return run(cmd, check=False).returncode == 0


def netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def uplink() -> str | None:
    routes = json.loads(run(["ip", "-j", "-4", "route", "show", "default"]).stdout or "[]")
    for r in routes:
        if r.get("dev") and not str(r["dev"]).startswith(("unde-", "ul-")):
            return str(r["dev"])
    return None


SYSCTL_ORIG = VAR_DIR / "sysctl.orig.json"
# Many systemd instances on one kernel: the default 128 inotify instances run out after ~20 hosts
# ("Failed to allocate manager object: Too many open files").
SYSCTL_MIN = {"fs/inotify/max_user_instances": 8192, "fs/inotify/max_user_watches": 524288}


def _sysctl(key: str) -> str:
    return Path("/proc/sys", key).read_text().strip()


def _set_sysctl(key: str, value: str) -> None:
    """Set a controller sysctl, remembering its first original value for `down` to restore."""
    orig: dict[str, str] = json.loads(SYSCTL_ORIG.read_text()) if SYSCTL_ORIG.exists() else {}
    if key not in orig:
        orig[key] = _sysctl(key)
        SYSCTL_ORIG.write_text(json.dumps(orig, indent=1) + "\n")
    Path("/proc/sys", key).write_text(value + "\n")


def forward_was_off() -> bool:
    orig: dict[str, str] = json.loads(SYSCTL_ORIG.read_text()) if SYSCTL_ORIG.exists() else {}
    return orig.get("net/ipv4/ip_forward", _sysctl("net/ipv4/ip_forward")) == "0"


def ensure_sysctls() -> None:
    for key, minimum in SYSCTL_MIN.items():
        if int(_sysctl(key)) < minimum:
            _set_sysctl(key, str(minimum))
    if _sysctl("net/ipv4/ip_forward") != "1":
        _set_sysctl("net/ipv4/ip_forward", "1")


def restore_sysctls() -> list[str]:
    done: list[str] = []
    if not SYSCTL_ORIG.exists():
        return done
    for key, value in json.loads(SYSCTL_ORIG.read_text()).items():
        if _sysctl(key) != value:
            Path("/proc/sys", key).write_text(value + "\n")
            done.append(f"{key.replace('/', '.')} restored to {value}")
    SYSCTL_ORIG.unlink()
    return done


def ensure_bridges() -> None:
    addrs = json.loads(run(["ip", "-j", "-4", "addr", "show"]).stdout or "[]")
    bridges = {s.bridge for s in SITES.values()}
    for link in addrs:
        for a in link.get("addr_info", []):
            ip = ipaddress.IPv4Address(a["local"])
            if ip in LAB_RANGE and link["ifname"] not in bridges:
                raise LabError(f"{link['ifname']} already holds {ip} inside the lab range {LAB_RANGE}")
    for site in SITES.values():
        if not _link_exists(site.bridge):
            mac = "02:" + ":".join(digest("bridge:" + site.bridge)[i : i + 2] for i in range(0, 10, 2))
            run(["ip", "link", "add", site.bridge, "address", mac, "type", "bridge", "stp_state", "0"],
                what=f"create bridge {site.bridge}")  # fmt: skip
            say(f"bridge {site.bridge} {site.gateway}/{site.net.prefixlen} created")
        have = run(["ip", "-j", "-4", "addr", "show", "dev", site.bridge]).stdout
        if f'"{site.gateway}"' not in have:
            run(["ip", "addr", "add", f"{site.gateway}/{site.net.prefixlen}", "dev", site.bridge])
        run(["ip", "link", "set", site.bridge, "up"])


def nft_ruleset(up: str | None, mirror: Sequence[str], forward_was_off: bool) -> str:
    lab = ", ".join(f'"{s.bridge}"' for s in SITES.values())
    rules = [
        f'iifname {{ {lab} }} oifname {{ {lab} }} accept comment "site to site through the controller"',
    ]
    nat: list[str] = []
    if up is not None and mirror:
        rules += [
            f'iifname {{ {lab} }} oifname "{up}" ip daddr {{ {", ".join(mirror)} }} tcp dport {{ 80, 443 }} '
            'accept comment "lab hosts reach the Debian archive only"',
            f'iifname "{up}" oifname {{ {lab} }} ct state established,related accept',
        ]
        nat = [f'oifname "{up}" ip saddr {LAB_RANGE} masquerade']
    rules += [
        f'iifname {{ {lab} }} counter drop comment "nothing else leaves the lab"',
        f'oifname {{ {lab} }} counter drop comment "nothing else enters the lab"',
    ]
    if forward_was_off:
        rules.append('counter drop comment "forwarding was off before the lab: lab traffic only"')
    body = "\n".join(f"    {r}" for r in rules)
    nat_body = "\n".join(f"    {r}" for r in nat)
    return f"""table inet {NFT_TABLE}
delete table inet {NFT_TABLE}
table inet {NFT_TABLE} {{
  chain forward {{
    type filter hook forward priority filter; policy accept;
{body}
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
{nat_body}
  }}
}}
"""


def ensure_firewall(mirror: Sequence[str]) -> None:
    up = uplink()
    if up is None:
        say("warning: no default route on the controller; lab hosts get no access to the Debian archive")
    run(["nft", "-f", "-"], input_text=nft_ruleset(up, mirror, forward_was_off()), what="nft lab table")


def ensure_netns(host: Host) -> None:
    site = host.site
    cidr = f"{host.address}/{site.net.prefixlen}"
    if netns_exists(host.netns) and _link_exists(host.veth):
        have = run(["ip", "-n", host.netns, "-j", "-4", "addr", "show", "dev", "eth0"], check=False).stdout
        if f'"{host.address}"' in have:
            run(["ip", "link", "set", host.veth, "master", site.bridge, "up"])
            return
    # (re)build from scratch
    if netns_exists(host.netns):
        run(["ip", "netns", "del", host.netns], what=f"{host.name}: delete stale netns")
    if _link_exists(host.veth):
        run(["ip", "link", "del", host.veth])
    what = f"{host.name}: network"
    run(["ip", "netns", "add", host.netns], what=what)
    run(["ip", "link", "add", host.veth, "type", "veth", "peer", "name", host.veth_peer], what=what)
    run(["ip", "link", "set", host.veth_peer, "netns", host.netns], what=what)
    ns = ["ip", "-n", host.netns]
    run([*ns, "link", "set", host.veth_peer, "name", "eth0", "address", host.mac], what=what)
    run([*ns, "addr", "add", cidr, "dev", "eth0"], what=what)
    run([*ns, "link", "set", "lo", "up"], what=what)
    run([*ns, "link", "set", "eth0", "up"], what=what)
    run([*ns, "route", "add", "default", "via", str(site.gateway)], what=what)
    run(["ip", "link", "set", host.veth, "master", site.bridge, "up"], what=what)


def teardown_netns(host: Host) -> bool:
    did = False
    if netns_exists(host.netns):
        run(["ip", "netns", "del", host.netns], what=f"{host.name}: delete netns")
        did = True
    if _link_exists(host.veth):
        run(["ip", "link", "del", host.veth], check=False)
        did = True
    return did


def teardown_network() -> list[str]:
    done: list[str] = []
    for site in SITES.values():
        if _link_exists(site.bridge):
            run(["ip", "link", "del", site.bridge], what=f"delete bridge {site.bridge}")
            done.append(f"bridge {site.bridge}")
    for table in (NFT_TABLE, NFT_FAULTS):
        if run(["nft", "list", "table", "inet", table], check=False).returncode == 0:
            run(["nft", "delete", "table", "inet", table], what=f"delete nft table {table}")
            done.append(f"nft table inet {table}")
    done += restore_sysctls()
    if Path("/run/netns").is_dir():
        for ns in Path("/run/netns").glob("unde-*"):
            run(["ip", "netns", "del", ns.name], check=False)
            done.append(f"stray netns {ns.name}")
    for root in (cgroup2_root(), named_systemd_root()):
        if root is not None and (root / "unde-lab").is_dir():
            with contextlib.suppress(OSError):
                (root / "unde-lab").rmdir()
    return done


def network_setup(mirror: Sequence[str]) -> None:
    ensure_sysctls()
    ensure_bridges()
    ensure_firewall(mirror)
