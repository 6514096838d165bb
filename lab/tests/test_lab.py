"""End-to-end tests of the nspawn lab: real hosts boot, route and take faults.

Boots three hosts (two Helsinki, one local), so it needs root, systemd-nspawn and the Debian
archive (for the first, cached, base build). Run: ``.venv/bin/pytest lab/tests -m lab -x``.
Every command is bounded by a timeout; a failed test gets the hosts' console logs attached.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from unde_tools.lab_client import address
from unde_tools.lab_ssh import ssh_argv

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
LABCTL = REPO / "lab" / "labctl"
HEL, HEL2, LOC = "etcd-3", "shard-replica-0", "local-etcd-1"
LAB_HOSTS = (HEL, HEL2, LOC)  # read by conftest.py to attach console logs to failures


def labctl(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    cp = subprocess.run(
        [sys.executable, str(LABCTL), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and cp.returncode != 0:
        pytest.fail(f"labctl {' '.join(args)} failed (rc {cp.returncode}):\n{cp.stdout}\n{cp.stderr}")
    return cp


def in_host(host: str, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return labctl("exec", host, *cmd, timeout=timeout, check=False)


def can_ping(src: str, dst: str) -> bool:
    """True when any of 3 pings from host src to host dst's lab address gets an answer."""
    cp = in_host(src, "ping", "-n", "-c", "3", "-i", "0.3", "-W", "1", address(dst), timeout=20)
    return cp.returncode == 0


def status() -> dict[str, dict[str, object]]:
    rows = json.loads(labctl("status", "--json", timeout=60).stdout)
    return {r["host"]: r for r in rows}


def ssh_banner(host: str, timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((address(host), 22), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def ssh(host: str, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Plain OpenSSH with the lab key (not via labctl)."""
    return subprocess.run(
        ssh_argv(address(host), cmd), capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module", autouse=True)
def lab() -> Iterator[None]:
    """Boot the test hosts once for the module; afterwards leave the lab as it was found."""
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    if shutil.which("systemd-nspawn") is None:
        pytest.skip("systemd-nspawn missing (apt-get install systemd-container)")
    before = {h for h, r in status().items() if r["state"] != "stopped"}
    # the first run builds the base root (about a minute), later ones boot in seconds
    labctl("up", *LAB_HOSTS, "--timeout", "90", timeout=1800)
    try:
        yield
    finally:
        # Others may use the lab at the same time: touch only our hosts; the bridges and nft tables
        # go only when no lab host is left running.
        for host in LAB_HOSTS:
            labctl("fault", host, "heal", timeout=60, check=False)
        stop = [h for h in LAB_HOSTS if h not in before]
        if stop:
            labctl("down", *stop, "--clean-if-idle", timeout=300, check=False)


def test_hosts_boot_with_systemd_as_pid1() -> None:
    for host in LAB_HOSTS:
        cp = in_host(host, "systemctl", "is-system-running", "--wait", timeout=90)
        assert cp.stdout.strip() in ("running", "degraded"), f"{host}: {cp.stdout}{cp.stderr}"
        assert in_host(host, "cat", "/proc/1/comm").stdout.strip() == "systemd"
        assert in_host(host, "hostname").stdout.strip() == host
    st = status()
    for host in LAB_HOSTS:
        assert st[host]["state"] == "running" and st[host]["ssh"] is True, st[host]


def test_ssh_with_the_lab_key() -> None:
    for host in LAB_HOSTS:
        cp = ssh(host, "hostname")
        assert cp.returncode == 0 and cp.stdout.strip() == host, cp.stderr
    cp = labctl("ssh", HEL, "id", "-un")
    assert cp.stdout.strip() == "root"


def test_hosts_can_manage_their_own_network() -> None:
    """CAP_NET_ADMIN and /dev/net/tun inside a host: nftables (firewall role) and wireguard-go work."""
    script = (
        "set -e; nft add table inet unde_lab_test; nft delete table inet unde_lab_test; "
        "ip tuntap add dev wgtest mode tun; ip link show wgtest >/dev/null; ip link del wgtest; echo ok"
    )
    cp = ssh(HEL, script)  # over SSH: the container's capability set, not the controller's
    assert cp.returncode == 0 and cp.stdout.strip() == "ok", cp.stdout + cp.stderr


def test_ansible_reaches_lab_hosts_through_the_lab_inventory() -> None:
    ansible = REPO / ".venv" / "bin" / "ansible"
    if not ansible.exists():
        pytest.skip("no .venv/bin/ansible")
    cp = subprocess.run(
        [str(ansible), "-i", "inventories/lab", ":".join(LAB_HOSTS), "-m", "ping", "-o"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert cp.stdout.count("SUCCESS") == len(LAB_HOSTS), cp.stdout


def test_sites_reach_each_other_through_the_controller() -> None:
    assert can_ping(HEL, LOC), "helsinki -> local"
    assert can_ping(LOC, HEL), "local -> helsinki"
    assert can_ping(HEL, HEL2), "helsinki -> helsinki"
    route = in_host(LOC, "ip", "-4", "route", "show", "default").stdout
    assert "via 198.19.0.1" in route, route


def test_hosts_reach_the_debian_archive() -> None:
    probe = (
        "import urllib.request as u; "
        "print(u.urlopen(u.Request('http://deb.debian.org/debian/dists/trixie/Release', method='HEAD'),"
        " timeout=15).status)"
    )
    cp = in_host(LOC, "python3", "-c", probe, timeout=30)
    assert cp.stdout.strip() == "200", cp.stdout + cp.stderr


def test_partition_cuts_only_the_cross_site_path_and_heal_restores_it() -> None:
    try:
        out = labctl("fault", HEL, "partition").stdout
        assert "partitioned" in out
        assert "already partitioned" in labctl("fault", HEL, "partition").stdout  # idempotent
        assert not can_ping(HEL, LOC), "partitioned host still reaches the other site"
        assert not can_ping(LOC, HEL), "other site still reaches the partitioned host"
        assert can_ping(HEL, HEL2), "same-site traffic must survive a partition"
        assert can_ping(HEL2, LOC), "only the partitioned host is cut off"
        assert status()[HEL]["faults"] == ["partitioned"]
    finally:
        heal = labctl("fault", HEL, "heal").stdout
    assert "partition removed" in heal
    assert "nothing to heal" in labctl("fault", HEL, "heal").stdout
    assert can_ping(HEL, LOC) and can_ping(LOC, HEL), "heal did not restore the cross-site path"
    assert status()[HEL]["faults"] == []


def test_freeze_stops_answering_and_heal_or_thaw_resumes() -> None:
    for resume in ("heal", "thaw"):
        try:
            labctl("fault", HEL2, "freeze")
            assert "already frozen" in labctl("fault", HEL2, "freeze").stdout
            assert status()[HEL2]["state"] == "frozen"
            assert not ssh_banner(HEL2), "a frozen host must not answer SSH"
        finally:
            labctl("fault", HEL2, resume)
        assert ssh_banner(HEL2, timeout=10), f"SSH did not come back after {resume}"
        assert ssh(HEL2, "true").returncode == 0
        assert status()[HEL2]["state"] == "running"


def test_kill_leaves_the_host_stopped_and_up_brings_it_back() -> None:
    out = labctl("fault", LOC, "kill").stdout
    assert "killed" in out
    assert "already stopped" in labctl("fault", LOC, "kill").stdout
    row = status()[LOC]
    assert row["state"] == "stopped" and row["ssh"] is False, row
    assert not ssh_banner(LOC, timeout=2)
    out = labctl("up", LOC, "--timeout", "90", timeout=180).stdout
    assert f"{LOC}: up in" in out, out
    assert "already running" in labctl("up", LOC, timeout=120).stdout  # idempotent
    assert status()[LOC]["state"] == "running"
    assert in_host(LOC, "systemctl", "is-system-running", "--wait", timeout=90).stdout.strip() in (
        "running",
        "degraded",
    )
    assert can_ping(LOC, HEL) and can_ping(HEL, LOC), "cross-site path broken after the reboot"
