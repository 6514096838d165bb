"""A host's life: boot it under systemd-nspawn (disk, network, cgroup, wait for SSH), power it
off, and the lab-wide ``up``, ``down`` and ``status``; ``exec`` and ``logs`` reach into a host."""

from __future__ import annotations

import concurrent.futures
import contextlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from unde_tools.lab_ssh import ssh_argv as _ssh_argv

from lab.unde_lab.common import (
    LOG_DIR,
    RUN_DIR,
    LabError,
    is_mounted,
    lab_lock,
    require,
    run,
    say,
    strip_ansi,
)
from lab.unde_lab.faults import partitioned, set_partition
from lab.unde_lab.images import ensure_base, ensure_ssh_key, mirror_addresses, personalise, prepare_root
from lab.unde_lab.inventory import Host, load_inventory, select_hosts
from lab.unde_lab.network import ensure_netns, network_setup, teardown_netns, teardown_network
from lab.unde_lab.processes import (
    cgroup_pids,
    children,
    host_cgroups,
    init_pid,
    is_frozen,
    kill_cgroup,
    nspawn_pid,
    pid_alive,
    remove_cgroup,
    running_init,
    set_frozen,
)

POWEROFF_SIGNAL = signal.SIGRTMIN + 4  # systemd: SIGRTMIN+4 on PID 1 = poweroff
DEFAULT_BOOT_TIMEOUT = 60.0
DEFAULT_PARALLEL = 4


def log_tail(host: Host, lines: int = 40) -> str:
    try:
        data = host.log.read_text(errors="replace")
    except OSError:
        return f"(no console log at {host.log})"
    tail = strip_ansi(data).splitlines()[-lines:]
    return "\n".join(f"  | {line}" for line in tail)


def ssh_banner(host: Host, timeout: float = 1.5) -> bool:
    try:
        with socket.create_connection((str(host.address), 22), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def ssh_argv(host: Host, command: Sequence[str] = ()) -> list[str]:
    return _ssh_argv(str(host.address), command)


# --------------------------------------------------------------------------- lifecycle

NSPAWN_WRAPPER = 'for cg in $UNDE_LAB_CGROUPS; do echo $$ > "$cg/cgroup.procs" || exit 97; done; exec "$@"'


def nspawn_argv(host: Host) -> list[str]:
    argv = [
        "systemd-nspawn",
        "--boot",
        "--register=no",
        "--keep-unit",
        f"--machine={host.name}",
        f"--directory={host.root}",
        f"--network-namespace-path=/run/netns/{host.netns}",
        "--resolv-conf=off",
        "--timezone=off",
        "--link-journal=no",
        "--console=read-only",
        "--kill-signal=SIGRTMIN+4",
        # Only --private-network grants CAP_NET_ADMIN by itself; hosts need it for nftables (firewall
        # role), tun devices (wireguard-go) and ip link/addr changes inside their own netns.
        "--capability=CAP_NET_ADMIN",
    ]
    if Path("/dev/net/tun").exists():
        argv.append("--bind=/dev/net/tun")  # wireguard-go
    return argv


def _prepare_cgroup(host: Host) -> Path:
    cgs = host_cgroups(host)
    for cg in cgs:
        if cgroup_pids(cg):
            say(f"{host.name}: killing leftover processes in {cg}")
            kill_cgroup(cg)
        remove_cgroup(cg)
    cg = cgs[0]
    cg.mkdir(parents=True)
    return cg


def boot(host: Host, base: Path, inventory: Sequence[Host], mirror: Sequence[str], pubkey: str,
         timeout: float) -> float:  # fmt: skip
    """Boot one host and wait for SSH; returns seconds from spawn to SSH login."""
    prepare_root(host, base)
    personalise(host, inventory, mirror, pubkey)
    ensure_netns(host)
    cg = _prepare_cgroup(host)
    # left behind when a host was killed; systemd-nspawn recreates it
    shutil.rmtree(f"/run/systemd/nspawn/propagate/{host.name}", ignore_errors=True)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    if host.log.exists():
        host.log.replace(host.log.with_suffix(".log.1"))
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "UNDE_LAB_CGROUPS": str(cg),
           "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"}  # fmt: skip
    t0 = time.monotonic()
    with open(host.log, "wb") as logf:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", NSPAWN_WRAPPER, "sh", *nspawn_argv(host)],
            stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
            start_new_session=True, env=env, cwd="/",
        )  # fmt: skip
    children[proc.pid] = proc
    host.pidfile.write_text(f"{proc.pid}\n")
    wait_ssh(host, proc, t0 + timeout, timeout)
    return time.monotonic() - t0


def wait_ssh(host: Host, proc: subprocess.Popen[bytes] | None, deadline: float, timeout: float) -> None:
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise LabError(
                f"{host.name}: systemd-nspawn exited with rc {proc.returncode} during boot; "
                f"console log {host.log}:\n{log_tail(host)}"
            )
        if ssh_banner(host, timeout=1.0):
            try:
                cp = subprocess.run(ssh_argv(host, ["true"]), capture_output=True, text=True, timeout=15,
                                    check=False)  # fmt: skip
            except subprocess.TimeoutExpired:
                last = "ssh login timed out after 15s"
            else:
                if cp.returncode == 0:
                    return
                last = cp.stderr.strip()
        time.sleep(0.2)
    raise LabError(
        f"{host.name}: SSH on {host.address} did not answer within {timeout:.0f}s"
        + (f" (last ssh error: {last})" if last else "")
        + f"; console log {host.log}:\n{log_tail(host)}"
    )


def up(
    names: Sequence[str], timeout: float = DEFAULT_BOOT_TIMEOUT, parallel: int = DEFAULT_PARALLEL
) -> dict[str, Any]:
    """Boot hosts (all by default). Returns {"base_build_s": ..., "boot_s": {host: s}, "wall_s": ...}."""
    require("up")
    inventory = load_inventory()
    hosts = select_hosts(inventory, names)
    pubkey = ensure_ssh_key().read_text()
    t_start = time.monotonic()
    with lab_lock():
        base, build_s = ensure_base()
        mirror = mirror_addresses()
        network_setup(mirror)
        todo = []
        for h in hosts:
            pid = nspawn_pid(h)
            if pid is not None:
                say(f"{h.name}: already running (pid {pid}, {h.address}); nothing to do")
            else:
                todo.append(h)
        results: dict[str, float] = {}
        errors: list[str] = []
        if todo:
            say(f"booting {len(todo)} host(s), {min(parallel, len(todo))} at a time")

        def one(h: Host) -> None:
            try:
                took = boot(h, base, inventory, mirror, pubkey, timeout)
            except LabError as e:
                errors.append(str(e))
                say(f"{h.name}: FAILED")
                return
            except (OSError, subprocess.SubprocessError) as e:
                errors.append(f"{h.name}: boot failed: {e}; console log {h.log}:\n{log_tail(h)}")
                say(f"{h.name}: FAILED")
                return
            results[h.name] = took
            say(f"{h.name}: up in {took:.1f}s ({h.address}, site {h.site.name}, pid {nspawn_pid(h)})")

        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            list(pool.map(one, todo))
    if errors:
        raise LabError("\n\n".join(errors))
    return {"base_build_s": build_s, "boot_s": results, "wall_s": time.monotonic() - t_start}


def stop_host(host: Host, purge: bool, timeout: float = 20, quiet: bool = False) -> None:
    pid = nspawn_pid(host)
    if pid is not None:
        if set_frozen(host, False):
            say(f"{host.name}: thawed before shutdown")
        t0 = time.monotonic()
        init = init_pid(pid)
        with contextlib.suppress(ProcessLookupError):
            if init is not None:
                os.kill(init, POWEROFF_SIGNAL)
            else:
                os.kill(pid, signal.SIGTERM)
        while pid_alive(pid) and time.monotonic() - t0 < timeout:
            time.sleep(0.1)
        if pid_alive(pid):
            say(f"{host.name}: no clean poweroff within {timeout:.0f}s; killing it")
            kill_cgroup(host_cgroups(host)[0])
        else:
            say(f"{host.name}: powered off in {time.monotonic() - t0:.1f}s")
        children.pop(pid, None)
    elif not quiet:
        say(f"{host.name}: not running")
    for cg in host_cgroups(host):
        if cgroup_pids(cg):
            kill_cgroup(cg)
        remove_cgroup(cg)
    # nspawn refuses to rm -rf this itself when /run is not a tmpfs (as here)
    shutil.rmtree(f"/run/systemd/nspawn/propagate/{host.name}", ignore_errors=True)
    if is_mounted(host.root):
        cp = run(["umount", str(host.root)], check=False)
        for _ in range(20):
            if cp.returncode == 0:
                break
            time.sleep(0.25)
            cp = run(["umount", str(host.root)], check=False)
        if cp.returncode != 0:
            raise LabError(f"{host.name}: cannot unmount {host.root}: {cp.stderr.strip()}")
        say(f"{host.name}: root unmounted")
    if teardown_netns(host):
        say(f"{host.name}: netns {host.netns} and veth {host.veth} removed")
    if set_partition(host, False):
        say(f"{host.name}: partition healed")
    host.pidfile.unlink(missing_ok=True)
    if purge and host.dir.exists():
        if is_mounted(host.root):
            raise LabError(f"{host.name}: {host.root} still mounted; not purging")
        shutil.rmtree(host.dir)
        say(f"{host.name}: disk purged ({host.dir})")


def down(names: Sequence[str], purge: bool = False, parallel: int = 8, clean_if_idle: bool = False) -> None:
    """Stop hosts; with no names (or clean_if_idle and no host left running) also tear the network down."""
    require("down")
    inventory = load_inventory()
    hosts = select_hosts(inventory, names)
    errors: list[str] = []
    with lab_lock():

        def one(h: Host) -> None:
            try:
                stop_host(h, purge, quiet=not names)
            except LabError as e:
                errors.append(str(e))
            except (OSError, subprocess.SubprocessError) as e:
                errors.append(f"{h.name}: stop failed: {e}")

        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            list(pool.map(one, hosts))
        idle = not names or (clean_if_idle and all(nspawn_pid(h) is None for h in inventory))
        if idle and not errors:
            for what in teardown_network():
                say(f"removed {what}")
    if errors:
        raise LabError("\n".join(errors))


# --------------------------------------------------------------------------- status


def host_status(host: Host, parted: set[ipaddress.IPv4Address], check_ssh: bool = True) -> dict[str, Any]:
    pid = nspawn_pid(host)
    frozen = pid is not None and is_frozen(host)
    state = "stopped" if pid is None else ("frozen" if frozen else "running")
    faults = []
    if frozen:
        faults.append("frozen")
    if host.address in parted:
        faults.append("partitioned")
    ssh_ok = pid is not None and not frozen and check_ssh and ssh_banner(host)
    return {
        "host": host.name,
        "state": state,
        "address": str(host.address),
        "site": host.site.name,
        "pid": pid,
        "ssh": ssh_ok,
        "faults": faults,
    }


def status(as_json: bool) -> list[dict[str, Any]]:
    require("status")
    inventory = load_inventory()
    parted = partitioned()
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        rows = list(pool.map(lambda h: host_status(h, parted), inventory))
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        fmt = "{:<20} {:<8} {:<14} {:<9} {:>8}  {:<4} {}"
        print(fmt.format("HOST", "STATE", "ADDRESS", "SITE", "PID", "SSH", "FAULTS"))
        for r in rows:
            print(fmt.format(r["host"], r["state"], r["address"], r["site"], r["pid"] or "-",
                             "ok" if r["ssh"] else "-", ",".join(r["faults"]) or "-"))  # fmt: skip
        n = sum(r["state"] != "stopped" for r in rows)
        print(f"{n}/{len(rows)} host(s) running")
    return rows


# --------------------------------------------------------------------------- exec / logs


def exec_argv(host: Host, command: Sequence[str]) -> list[str]:
    init = running_init(host)
    env = ["/usr/bin/env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "HOME=/root", "LANG=C.UTF-8", f"TERM={os.environ.get('TERM', 'dumb')}"]  # fmt: skip
    return ["nsenter", "-t", str(init), "-a", "--", *env, *(command or ["/bin/bash", "-l"])]


def show_logs(host: Host, lines: int) -> None:
    print(f"--- console log {host.log} (last {lines} lines)")
    print(log_tail(host, lines))
    pid = nspawn_pid(host)
    if pid is not None and not is_frozen(host):
        print(f"--- journal of {host.name} (last {lines} lines)")
        cp = run(
            exec_argv(host, ["journalctl", "-b", "--no-pager", "-n", str(lines)]), check=False, timeout=20
        )
        print(cp.stdout + cp.stderr)
