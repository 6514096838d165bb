"""Drive lab hosts from the controller: ssh by inventory name, ``labctl``, playbooks, waiting.

The client side of the nspawn lab (``lab/labctl`` is the machine side), shared by the benchmarks
in ``bench/``, the molecule tests and the Patroni drills (``unde_tools.patroni_drill``). Host
names resolve to their ``ansible_host`` in ``inventories/lab``; traffic goes only to lab hosts.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from unde_tools.inventory import load
from unde_tools.lab_ssh import REPO, ssh_argv
from unde_tools.lab_vault import VAULT_ID

LAB_INVENTORY = REPO / "inventories" / "lab"
LABCTL = (sys.executable, str(REPO / "lab" / "labctl"))


@functools.cache
def _addresses() -> dict[str, str]:
    inv = load([LAB_INVENTORY])
    return {h: str(hv["ansible_host"]) for h, hv in inv.hostvars.items() if "ansible_host" in hv}


def address(host: str) -> str:
    """The lab address (``ansible_host``) of an inventory host."""
    return _addresses()[host]


def ssh(
    host: str, command: str, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run a shell line on a lab host as root; ``stdin`` carries secrets (never the command line)."""
    return subprocess.run(
        ssh_argv(address(host), [command]),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def ssh_popen(host: str, command: str) -> subprocess.Popen[str]:
    """Start a shell line on a lab host in the background (stdin, stdout, stderr piped)."""
    return subprocess.Popen(
        ssh_argv(address(host), [command]),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def labctl(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``lab/labctl`` with these arguments (up, down, fault, exec, ...); never raises on its rc."""
    return subprocess.run(
        [*LABCTL, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO, check=False
    )


def labctl_ok(*args: str, timeout: float = 300) -> str:
    """``labctl`` that must succeed: its stdout, or RuntimeError with its output."""
    res = labctl(*args, timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError(f"labctl {' '.join(args)} (rc {res.returncode}): {res.stdout}{res.stderr}")
    return res.stdout


def ansible_playbook(
    playbook: str, *args: str, timeout: float = 900, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``ansible-playbook -i inventories/lab playbook args`` from the repository root, with the lab
    vault identity and the project's ansible.cfg; ``env`` adds variables. Never raises on its rc."""
    exe = Path(sys.executable).parent / "ansible-playbook"
    full_env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_VAULT_IDENTITY_LIST": VAULT_ID,
        "ANSIBLE_FORCE_COLOR": "0",
        **(env or {}),
    }
    argv = [str(exe) if exe.exists() else "ansible-playbook", "-i", str(LAB_INVENTORY), playbook, *args]
    return subprocess.run(
        argv, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout, check=False
    )


def wait(what: str, check: Callable[[], bool], timeout: float, step: float = 0.5) -> float:
    """Seconds until ``check()`` is true; raises TimeoutError naming ``what``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(step)
    raise TimeoutError(f"{what}: not within {timeout:.0f} s")
