"""A host's processes as the controller sees them: its cgroups (kill, freeze, memory) and its
running systemd-nspawn and PID 1."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from lab.unde_lab.common import LabError, mounts
from lab.unde_lab.inventory import Host

# systemd-nspawn processes this controller started, by pid (their exit status is ours to reap)
children: dict[int, subprocess.Popen[bytes]] = {}


# --------------------------------------------------------------------------- cgroups


def cgroup2_root() -> Path:
    points = [Path(mp) for mp, fstype, _ in mounts() if fstype == "cgroup2"]
    for cand in (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup")):
        if cand in points:
            return cand
    if points:
        return points[0]
    raise LabError("no cgroup2 hierarchy mounted (need /sys/fs/cgroup or /sys/fs/cgroup/unified)")


def named_systemd_root() -> Path | None:
    for mp, fstype, opts in mounts():
        if fstype == "cgroup" and "name=systemd" in opts.split(","):
            return Path(mp)
    return None


def host_cgroups(host: Host) -> list[Path]:
    """The host's cgroup in the unified hierarchy first, then (hybrid hosts) the name=systemd one."""
    out = [cgroup2_root() / "unde-lab" / host.name]
    named = named_systemd_root()
    if named is not None:
        out.append(named / "unde-lab" / host.name)
    return out


def cgroup_pids(cg: Path) -> list[int]:
    pids: list[int] = []
    if not cg.is_dir():
        return pids
    for d, _, _ in os.walk(cg):
        with contextlib.suppress(OSError):
            pids.extend(int(p) for p in (Path(d) / "cgroup.procs").read_text().split())
    return pids


def remove_cgroup(cg: Path) -> None:
    if not cg.is_dir():
        return
    for d, _, _ in sorted(os.walk(cg), key=lambda t: -len(t[0])):
        try:
            Path(d).rmdir()
        except OSError as e:
            raise LabError(f"cannot remove cgroup {d}: {e}") from e


def kill_cgroup(cg: Path) -> None:
    if not cg.is_dir():
        return
    killfile = cg / "cgroup.kill"
    if killfile.exists():
        killfile.write_text("1")
    else:
        for pid in cgroup_pids(cg):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while cgroup_pids(cg) and time.monotonic() < deadline:
        time.sleep(0.05)


def set_frozen(host: Host, frozen: bool) -> bool:
    """Freeze/thaw the host's whole cgroup; True when the state changed."""
    cg = host_cgroups(host)[0]
    f = cg / "cgroup.freeze"
    if not f.exists():
        return False
    want = "1" if frozen else "0"
    if f.read_text().strip() == want:
        return False
    f.write_text(want)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        events = dict(line.split() for line in (cg / "cgroup.events").read_text().splitlines())
        if events.get("frozen") == want:
            return True
        time.sleep(0.05)
    raise LabError(f"{host.name}: cgroup {cg} did not {'freeze' if frozen else 'thaw'} within 10s")


def is_frozen(host: Host) -> bool:
    f = host_cgroups(host)[0] / "cgroup.freeze"
    try:
        return f.read_text().strip() == "1"
    except OSError:
        return False


# --------------------------------------------------------------------------- processes


def pid_alive(pid: int) -> bool:
    child = children.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _is_nspawn_of(pid: int, host: Host) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return (
        bool(argv)
        and argv[0].endswith(b"systemd-nspawn")
        and f"--machine={host.name}".encode() in argv
        and pid_alive(pid)
    )


def nspawn_pid(host: Host) -> int | None:
    """PID of the host's running systemd-nspawn, from its pid file or, failing that, its cgroup."""
    with contextlib.suppress(OSError, ValueError):
        pid = int(host.pidfile.read_text().strip())
        if _is_nspawn_of(pid, host):
            return pid
    for cg in host_cgroups(host)[:1]:
        for pid in cgroup_pids(cg):
            if _is_nspawn_of(pid, host):
                return pid
    return None


def init_pid(nspawn: int) -> int | None:
    """The container's PID 1 as seen from the controller (a child of systemd-nspawn)."""
    kids: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{nspawn}/task").iterdir():
            with contextlib.suppress(OSError):
                kids.extend(int(k) for k in (task / "children").read_text().split())
    for kid in kids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{kid}/status").read_text().splitlines():
                if line.startswith("NSpid:"):
                    ids = line.split()[1:]
                    if len(ids) >= 2 and ids[-1] == "1":
                        return kid
    return None


def running_init(host: Host) -> int:
    pid = nspawn_pid(host)
    init = init_pid(pid) if pid else None
    if init is None:
        raise LabError(f"{host.name}: not running (start it with: labctl up {host.name})")
    return init


def process_memory(pids: Iterable[int]) -> tuple[int, int]:
    """(PSS, RSS) in bytes summed over pids (PSS splits shared pages, so it adds up across hosts)."""
    pss = rss = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1]) * 1024
                elif line.startswith("Rss:"):
                    rss += int(line.split()[1]) * 1024
    return pss, rss
