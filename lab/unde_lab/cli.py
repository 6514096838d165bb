"""``labctl``: the command line of the lab tool (see lab/README.md for the contract)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence

from unde_tools.lab_ssh import SSH_KEY

from lab.unde_lab.common import LabError, require
from lab.unde_lab.faults import fault
from lab.unde_lab.inventory import load_inventory, select_hosts
from lab.unde_lab.machines import (
    DEFAULT_BOOT_TIMEOUT,
    DEFAULT_PARALLEL,
    down,
    exec_argv,
    show_logs,
    ssh_argv,
    status,
    up,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="labctl", description="UNDE lab: booted Debian hosts under systemd-nspawn"
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("up", help="boot hosts (default: all inventory hosts)")
    s.add_argument("hosts", nargs="*")
    s.add_argument("--timeout", type=float, default=DEFAULT_BOOT_TIMEOUT, help="seconds per host until SSH")
    s.add_argument("--parallel", type=int, default=DEFAULT_PARALLEL, help="hosts booting at once")
    s = sub.add_parser("down", help="power off hosts; with no host also remove bridges and nft tables")
    s.add_argument("hosts", nargs="*")
    s.add_argument("--purge", action="store_true", help="also delete the hosts' disks (overlay upper dirs)")
    s.add_argument(
        "--clean-if-idle",
        action="store_true",
        help="with hosts given: also remove bridges/nft tables when no lab host is left running",
    )
    s = sub.add_parser("status", help="state of every inventory host")
    s.add_argument("--json", action="store_true")
    s = sub.add_parser("ssh", help="ssh into a host with the lab key")
    s.add_argument("host")
    s.add_argument("command", nargs=argparse.REMAINDER)
    s = sub.add_parser("exec", help="run a command inside a host without ssh (nsenter)")
    s.add_argument("host")
    s.add_argument("command", nargs=argparse.REMAINDER)
    s = sub.add_parser("fault", help="inject or heal a fault")
    s.add_argument("host", help="host name ('all' with heal)")
    s.add_argument("action", choices=["kill", "freeze", "thaw", "partition", "heal"])
    s = sub.add_parser("logs", help="console log tail and journal of a host")
    s.add_argument("host")
    s.add_argument("-n", "--lines", type=int, default=50)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.cmd == "up":
            up(args.hosts, args.timeout, args.parallel)
        elif args.cmd == "down":
            down(args.hosts, args.purge, clean_if_idle=args.clean_if_idle)
        elif args.cmd == "status":
            status(args.json)
        elif args.cmd == "ssh":
            require("ssh")
            (host,) = select_hosts(load_inventory(), [args.host])
            if not SSH_KEY.exists():
                raise LabError(f"no lab key at {SSH_KEY}; run `labctl up` first")
            cmd = ssh_argv(host, args.command)
            if sys.stdin.isatty() and not args.command:
                cmd.insert(1, "-t")
            return subprocess.run(cmd, check=False).returncode
        elif args.cmd == "exec":
            require("exec")
            (host,) = select_hosts(load_inventory(), [args.host])
            return subprocess.run(exec_argv(host, args.command), check=False).returncode
        elif args.cmd == "fault":
            fault(args.host, args.action)
        elif args.cmd == "logs":
            require("logs")
            (host,) = select_hosts(load_inventory(), [args.host])
            show_logs(host, args.lines)
    except LabError as e:
        print(f"labctl {args.cmd}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"labctl {args.cmd}: interrupted", file=sys.stderr)
        return 130
    return 0
