"""site.yml's preflight refuses to touch a server when the inventory's vault lacks a credential
(every name that group_vars/all/credentials.yml maps), naming the missing names, never values."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support import REPO

BIN = Path(sys.executable).parent


def _preflight(inventory: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_VAULT_IDENTITY_LIST": f"lab@{REPO / 'inventories/lab/vault-password.txt'}",
        "PYTHONPATH": str(REPO / "tools"),
    }
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", inventory, "playbooks/preflight.yml"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_lab_vault_passes_preflight() -> None:
    proc = _preflight("inventories/lab")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "credentials are in the vault" in proc.stdout


def test_inventory_without_vault_is_refused_naming_the_credentials() -> None:
    proc = _preflight("inventories/helsinki,inventories/local")
    assert proc.returncode != 0
    assert "the vault of this inventory lacks" in proc.stdout
    assert "vault_redis_acl_passwords" in proc.stdout
    assert "nothing was changed" in proc.stdout
