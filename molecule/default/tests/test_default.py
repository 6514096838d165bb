"""Base OS (playbooks/base.yml) on lab hosts of both sites: common, firewall, node_exporter."""

from __future__ import annotations

import json
from typing import Any

import pytest
from testinfra.host import Host  # type: ignore[import-untyped]

pytestmark = pytest.mark.lab

NODE_EXPORTER = "prometheus-node-exporter"
NODE_EXPORTER_PORT = 9100
MONITORING = "monitoring"
# Connect timeout of a probe, and the bound on the whole ssh command around it.
PROBE_TIMEOUT_S = 3
PROBE_BOUND_S = 15
PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
    print("open")
except TimeoutError:
    print("timeout")
except ConnectionRefusedError:
    print("refused")
except OSError as exc:
    print("error", exc)
"""
SCRAPE = """
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
    print(r.status)
    print(r.read().decode())
"""


def probe(src: Host, address: str, port: int) -> str:
    """Try a TCP connect from ``src``: 'open', 'timeout' (dropped), 'refused' or 'error ...'."""
    res = src.run(
        "timeout %s python3 -c %s %s %s %s",
        str(PROBE_BOUND_S),
        PROBE,
        address,
        str(port),
        str(PROBE_TIMEOUT_S),
    )
    assert res.rc == 0, f"probe did not finish within {PROBE_BOUND_S}s: rc={res.rc} {res.stderr}"
    return str(res.stdout).strip()


# ---------------------------------------------------------------------------------------- common


def test_hostname(node: Host, name: str) -> None:
    assert node.check_output("hostname") == name
    assert node.file("/etc/hostname").content_string.strip() == name


def test_etc_hosts_lists_every_host_of_both_sites(lab: Any, node: Host) -> None:
    entries: dict[str, str] = {}
    for line in node.file("/etc/hosts").content_string.splitlines():
        fields = line.split("#", 1)[0].split()
        for hostname in fields[1:]:
            entries[hostname] = fields[0]
    expected = {h: lab.private_ip(h) for h in lab.all_hosts()}
    assert {h: entries.get(h) for h in expected} == expected
    assert {lab.hostvars(h)["unde_site"] for h in expected} == {"helsinki", "local"}
    # the lab's Debian mirror line survives (common_hosts_keep_names)
    assert "deb.debian.org" in entries
    assert node.check_output("getent hosts %s", MONITORING).split()[0] == lab.private_ip(MONITORING)


@pytest.mark.journal("ssh")
def test_sshd_hardening(node: Host) -> None:
    dropin = node.file("/etc/ssh/sshd_config.d/10-unde-hardening.conf")
    assert dropin.is_file
    assert dropin.user == "root"
    assert dropin.mode == 0o644
    assert node.run("sshd -t").rc == 0
    effective = set(node.check_output("sshd -T -C user=root,host=localhost,addr=127.0.0.1").splitlines())
    for line in (
        "passwordauthentication no",
        "kbdinteractiveauthentication no",
        "permitemptypasswords no",
        "pubkeyauthentication yes",
        "x11forwarding no",
        "allowtcpforwarding no",
        "maxauthtries 3",
    ):
        assert line in effective, line
    assert effective & {"permitrootlogin prohibit-password", "permitrootlogin without-password"}
    assert node.service("ssh").is_running


def test_sudoers_dropin_is_valid(node: Host) -> None:
    sudoers = node.file("/etc/sudoers.d/unde-admins")
    assert sudoers.is_file
    assert sudoers.mode == 0o440
    assert node.run("visudo -cf /etc/sudoers.d/unde-admins").rc == 0


def test_time_sync_is_chrony(node: Host) -> None:
    assert node.package("chrony").is_installed
    assert not node.package("systemd-timesyncd").is_installed
    assert node.service("chrony").is_enabled
    assert "pool " in node.file("/etc/chrony/chrony.conf").content_string


def test_journald_limits(node: Host) -> None:
    # the drop-in is in place; a later drop-in (the lab's 50-unde-lab.conf: 32M) may still win
    conf = node.file("/etc/systemd/journald.conf.d/10-unde.conf").content_string
    assert "SystemMaxUse=1G" in conf
    assert "Storage=persistent" in conf
    assert "10-unde.conf" in node.check_output("systemd-analyze cat-config systemd/journald.conf")


def test_unattended_security_upgrades(node: Host) -> None:
    assert node.package("unattended-upgrades").is_installed
    dump = node.check_output("apt-config dump")
    assert 'APT::Periodic::Unattended-Upgrade "1";' in dump
    origins = [
        line for line in dump.splitlines() if line.startswith("Unattended-Upgrade::Origins-Pattern:: ")
    ]
    assert origins, "no Origins-Pattern"
    assert all("security" in line.lower() for line in origins), origins


def test_sysctl_baseline(node: Host) -> None:
    """The file holds the baseline; every key this kernel lets the host write is live."""
    wanted = {}
    for line in node.file("/etc/sysctl.d/60-unde-baseline.conf").content_string.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = (part.strip() for part in line.split("=", 1))
            wanted[key] = value
    assert wanted["net.ipv4.tcp_syncookies"] == "1"
    assert wanted["kernel.kptr_restrict"] == "2"
    writable = {k for k in wanted if node.run("test -w %s", "/proc/sys/" + k.replace(".", "/")).rc == 0}
    live = {k: " ".join(node.check_output("sysctl -n %s", k).split()) for k in sorted(writable)}
    assert live == {k: wanted[k] for k in sorted(writable)}


# -------------------------------------------------------------------------------------- firewall


@pytest.mark.journal("nftables")
def test_nftables_default_drop(node: Host) -> None:
    assert node.service("nftables").is_enabled
    assert node.service("nftables").is_running
    chain = json.loads(node.check_output("nft -j list chain inet unde_filter input"))
    (base,) = [o["chain"] for o in chain["nftables"] if "chain" in o]
    assert base["hook"] == "input"
    assert base["policy"] == "drop"
    # the file on disk is what is loaded
    assert node.run("nft -c -f /etc/nftables.conf").rc == 0
    assert "policy drop;" in node.file("/etc/nftables.conf").content_string


def test_node_exporter_rule_admits_only_monitoring(lab: Any, node: Host) -> None:
    text = node.check_output("nft list chain inet unde_filter input")
    rule = [line.strip() for line in text.splitlines() if f"dport {NODE_EXPORTER_PORT} " in line]
    monitoring_ips = sorted(lab.private_ip(h) for h in lab.group_members("monitoring_server"))
    assert len(rule) == 1, rule
    assert all(ip in rule[0] for ip in monitoring_ips), rule
    assert rule[0].count(".") == 3 * len(monitoring_ips), rule  # no other address in the set


@pytest.mark.journal(NODE_EXPORTER, "nftables")
def test_monitoring_reaches_node_exporter(lab: Any, target: str) -> None:
    """Permitted: monitoring (monitoring_server) scrapes node_exporter on every host, both sites."""
    src = lab.host(MONITORING)
    address = lab.private_ip(target)
    assert probe(src, address, NODE_EXPORTER_PORT) == "open"
    out = src.check_output("python3 -c %s %s", SCRAPE, f"http://{address}:{NODE_EXPORTER_PORT}/metrics")
    assert out.startswith("200")
    assert "node_exporter_build_info" in out


@pytest.mark.journal("nftables")
@pytest.mark.parametrize(
    ("source", "dest"),
    [
        ("local-context", "model-generator"),  # local site -> Helsinki, through the lab router
        ("model-generator", "local-context"),  # Helsinki -> local site
        ("model-generator", MONITORING),  # same bridge: only the host firewall is in the way
    ],
)
def test_others_cannot_reach_node_exporter(lab: Any, source: str, dest: str) -> None:
    """Forbidden: a host outside monitoring_server gets no answer from node_exporter (dropped)."""
    assert source not in lab.group_members("monitoring_server")
    assert probe(lab.host(source), lab.private_ip(dest), NODE_EXPORTER_PORT) == "timeout"
    # ... while the same pair may talk ssh (clients: all): the path itself works
    assert probe(lab.host(source), lab.private_ip(dest), 22) == "open"


# --------------------------------------------------------------------------------- node_exporter


@pytest.mark.journal(NODE_EXPORTER)
def test_node_exporter_listens_on_private_address_only(lab: Any, node: Host, name: str) -> None:
    svc = node.service(NODE_EXPORTER)
    assert svc.is_running
    assert svc.is_enabled
    listeners = node.check_output(f"ss -Htln sport = :{NODE_EXPORTER_PORT}").splitlines()
    local = sorted(line.split()[3] for line in listeners)
    assert local == [f"{lab.private_ip(name)}:{NODE_EXPORTER_PORT}"]
    assert probe(node, "127.0.0.1", NODE_EXPORTER_PORT) == "refused"


@pytest.mark.journal(NODE_EXPORTER)
def test_node_exporter_unit_is_hardened(node: Host) -> None:
    props = dict(
        line.split("=", 1)
        for line in node.check_output(
            "systemctl show -p NoNewPrivileges -p ProtectSystem -p ProtectHome -p PrivateTmp "
            "-p PrivateDevices -p MemoryMax -p CapabilityBoundingSet %s",
            NODE_EXPORTER,
        ).splitlines()
    )
    assert props["NoNewPrivileges"] == "yes"
    assert props["ProtectSystem"] == "strict"
    assert props["ProtectHome"] == "read-only"
    assert props["PrivateTmp"] == "yes"
    assert props["PrivateDevices"] == "yes"
    assert props["MemoryMax"] == str(128 * 1024 * 1024)
    assert props["CapabilityBoundingSet"] == ""
    pid = node.check_output("systemctl show -p MainPID --value %s", NODE_EXPORTER)
    assert node.check_output("ps -o user= -p %s", pid) == "prometheus"
