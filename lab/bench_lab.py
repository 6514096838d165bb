#!/usr/bin/env python3
"""Benchmark the UNDE lab: boot time and idle memory per host, total lab memory, optional converge.

Run from the repo root as root: ``.venv/bin/python lab/bench_lab.py [--converge] [--leave ...]``
(``make bench-lab``). Progress goes to stderr; stdout gets exactly one JSON object.

Hosts already running when the bench starts (someone may be converging them) are left alone and
only their memory is measured; ``--reboot-running`` powers them off first (disks kept) so their boot
is measured too. ``--leave as-was`` (default) puts each host back in the state it was found in.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# as lab/labctl does: the lab package and tools/ (unde_tools)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unde_testkit.testmodel import lab_model
from unde_tools.lab_client import ansible_playbook

from lab.unde_lab.common import REPO, LabError, require, run, say, set_output
from lab.unde_lab.inventory import Host, load_inventory, select_hosts
from lab.unde_lab.machines import DEFAULT_PARALLEL, down, exec_argv, up
from lab.unde_lab.processes import cgroup_pids, host_cgroups, nspawn_pid, process_memory


def mem_available_mib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return 0.0


def userspace_boot_s(host: Host) -> float | None:
    """systemd's own 'Startup finished ... (userspace)' figure for the host, in seconds."""
    props = ["-p", "UserspaceTimestampMonotonic", "-p", "FinishTimestampMonotonic"]
    try:
        out = run(exec_argv(host, ["systemctl", "show", *props]), timeout=20).stdout
    except LabError:
        return None
    vals = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    start, finish = (
        int(vals.get("UserspaceTimestampMonotonic", 0)),
        int(vals.get("FinishTimestampMonotonic", 0)),
    )
    return round((finish - start) / 1e6, 3) if finish > start > 0 else None


def host_memory(host: Host) -> dict[str, Any]:
    pids = cgroup_pids(host_cgroups(host)[0])
    pss, rss = process_memory(pids)
    return {"pss_mib": round(pss / 2**20, 1), "rss_mib": round(rss / 2**20, 1), "processes": len(pids)}


def converge(timeout: float) -> dict[str, Any]:
    if not (REPO / "site.yml").exists():
        return {"skipped": "no site.yml in the repo root"}
    say(f"the embedder's lab model: {lab_model()}")  # as tools/lab_run.sh: the roles copy it
    say("converging: ansible-playbook -i inventories/lab site.yml (as `make lab`)")
    t0 = time.monotonic()
    try:
        cp = ansible_playbook("site.yml", timeout=timeout)
    except subprocess.TimeoutExpired:
        return {
            "seconds": round(time.monotonic() - t0, 1),
            "rc": None,
            "error": f"timed out after {timeout}s",
        }
    recap = (
        cp.stdout[cp.stdout.rfind("PLAY RECAP") :].strip().splitlines()[:40]
        if "PLAY RECAP" in cp.stdout
        else []
    )
    if cp.returncode != 0:
        say(cp.stdout[-4000:] + cp.stderr[-2000:])
    return {"seconds": round(time.monotonic() - t0, 1), "rc": cp.returncode, "recap": recap}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("hosts", nargs="*", help="hosts to bench (default: every inventory host)")
    ap.add_argument("--parallel", type=int, default=DEFAULT_PARALLEL, help="hosts booting at once")
    ap.add_argument("--settle", type=float, default=10.0, help="idle seconds before measuring memory")
    ap.add_argument("--converge", action="store_true", help="also time ansible-playbook site.yml on the lab")
    ap.add_argument("--converge-timeout", type=float, default=3600.0)
    ap.add_argument("--reboot-running", action="store_true",
                    help="power off hosts already running so their boot is measured too")  # fmt: skip
    ap.add_argument("--leave", choices=["as-was", "up", "down"], default="as-was",
                    help="lab state afterwards (default: as it was found)")  # fmt: skip
    args = ap.parse_args()
    set_output(sys.stderr)
    try:
        require("up")
        inventory = load_inventory()
        hosts = select_hosts(inventory, args.hosts)
        was_running = {h.name for h in inventory if nspawn_pid(h) is not None}
        running = [h.name for h in hosts if h.name in was_running]
        if running and args.reboot_running:
            say(f"powering off {len(running)} running host(s) to measure cold boots")
            down(running)
            running = []
        elif running:
            say(f"not rebooting {len(running)} running host(s) (--reboot-running to include them)")
        mem_before = mem_available_mib()
        result = up([h.name for h in hosts], parallel=args.parallel)
        say(f"letting the lab idle for {args.settle:.0f}s")
        time.sleep(args.settle)
        per_host: dict[str, dict[str, Any]] = {}
        for h in hosts:
            per_host[h.name] = {
                "site": h.site.name,
                "boot_s": round(result["boot_s"][h.name], 2) if h.name in result["boot_s"] else None,
                "systemd_userspace_s": userspace_boot_s(h),
                **host_memory(h),
            }
        mem_after = mem_available_mib()
        boots = [v["boot_s"] for v in per_host.values() if v["boot_s"] is not None]
        # idle figures from the hosts this bench booted (hosts found running may be converged/busy)
        fresh = [v for v in per_host.values() if v["boot_s"] is not None] or list(per_host.values())
        pss = [v["pss_mib"] for v in fresh]
        report: dict[str, Any] = {
            "hosts": len(hosts),
            "parallel": args.parallel,
            "already_running_not_rebooted": running,
            "base_build_s": None if result["base_build_s"] is None else round(result["base_build_s"], 1),
            "lab_up_wall_s": round(result["wall_s"], 1),
            "boot_s": {"min": min(boots), "median": statistics.median(boots), "max": max(boots)}
            if boots
            else None,
            "idle_host_pss_mib": {"min": min(pss), "median": statistics.median(pss), "max": max(pss)},
            "lab_total_pss_mib": round(sum(v["pss_mib"] for v in per_host.values()), 1),
            "lab_total_rss_mib": round(sum(v["rss_mib"] for v in per_host.values()), 1),
            "mem_available_drop_mib": round(mem_before - mem_after, 1),
            "per_host": per_host,
        }
        if args.converge:
            report["converge"] = converge(args.converge_timeout)
        if args.leave != "up":
            stop = [h.name for h in hosts if args.leave == "down" or h.name not in was_running]
            remaining = (was_running | {h.name for h in hosts}) - set(stop)
            if not remaining:
                down([])  # nothing else runs: also remove bridges and nft tables
            elif stop:
                down(stop)
    except LabError as e:
        print(f"bench_lab: error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
