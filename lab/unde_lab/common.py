"""What every part of the lab tool shares: paths, errors, progress output, running commands,
the tools a command needs, the lab lock, and the controller's mount table."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

REPO = Path(__file__).resolve().parents[2]
STATE_DIR = REPO / ".lab"
RUN_DIR = STATE_DIR / "run"
LOG_DIR = STATE_DIR / "logs"
VAR_DIR = Path(os.environ.get("UNDE_LAB_VAR", "/var/lib/unde-lab"))
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")

# binary -> Debian package that ships it
BINARIES = {
    "debootstrap": "debootstrap",
    "systemd-nspawn": "systemd-container",
    "ip": "iproute2",
    "nft": "nftables",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "nsenter": "util-linux",
    "mount": "mount",
    "umount": "mount",
    "chroot": "coreutils",
}
NEEDS = {
    "up": ("debootstrap", "systemd-nspawn", "ip", "nft", "ssh", "ssh-keygen", "mount", "umount", "chroot"),
    "down": ("ip", "nft", "umount"),
    "status": ("nft",),
    "ssh": ("ssh",),
    "exec": ("nsenter",),
    "logs": ("nsenter",),
    "fault": ("nft",),
}
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\r")


class LabError(Exception):
    """A failure to report to the user (no traceback)."""


# --------------------------------------------------------------------------- output

_out: TextIO = sys.stdout
_out_lock = threading.Lock()


def set_output(stream: TextIO) -> None:
    """Send progress messages to ``stream`` (bench_lab keeps stdout for its JSON)."""
    global _out
    _out = stream


def say(msg: str) -> None:
    with _out_lock:
        print(msg, file=_out, flush=True)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --------------------------------------------------------------------------- commands


def run(
    cmd: Sequence[str],
    *,
    check: bool = True,
    timeout: float = 60,
    input_text: str | None = None,
    what: str | None = None,
) -> subprocess.CompletedProcess[str]:
    try:
        cp = subprocess.run(
            list(cmd), capture_output=True, text=True, timeout=timeout, input=input_text, check=False
        )
    except subprocess.TimeoutExpired as e:
        raise LabError(f"{what or 'command'} timed out after {timeout:.0f}s: {' '.join(cmd)}") from e
    except FileNotFoundError as e:
        raise LabError(f"{what or 'command'}: {cmd[0]} not found") from e
    if check and cp.returncode != 0:
        detail = (cp.stderr or cp.stdout).strip()
        raise LabError(f"{what or 'command'} failed (rc {cp.returncode}): {' '.join(cmd)}\n{detail}")
    return cp


def require(command: str) -> None:
    """Fail early, naming the Debian package, when a binary the command needs is missing."""
    missing = sorted({BINARIES[b] for b in NEEDS.get(command, ()) if shutil.which(b) is None})
    if missing:
        raise LabError(f"missing tools for '{command}': apt-get install {' '.join(missing)}")
    if command == "up" and not KEYRING.exists():
        raise LabError(f"{KEYRING} missing: apt-get install debian-archive-keyring")
    if os.geteuid() != 0 and command not in ("ssh",):
        raise LabError(f"'{command}' needs root (namespaces, mounts, nftables)")


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


def write_file(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()
    path.write_text(text)
    path.chmod(mode)


@contextlib.contextmanager
def lab_lock(timeout: float = 900) -> Iterator[None]:
    """Serialise commands that change the lab (two `up`s at once would race on netns/mounts)."""
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    with open(VAR_DIR / "lock", "w") as f:
        deadline = time.monotonic() + timeout
        announced = False
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LabError(
                        f"another labctl still holds {VAR_DIR / 'lock'} after {timeout:.0f}s"
                    ) from None
                if not announced:
                    say("waiting for another labctl command to finish...")
                    announced = True
                time.sleep(0.5)
        yield


# --------------------------------------------------------------------------- mounts


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounts() -> list[tuple[str, str, str]]:
    """(mount point, fs type, super options) of every mount of this process."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        pre, _, post = line.partition(" - ")
        fields, pfields = pre.split(), post.split()
        if len(fields) >= 5 and len(pfields) >= 3:
            out.append((_unescape(fields[4]), pfields[0], pfields[2]))
    return out


def is_mounted(path: Path) -> bool:
    return any(mp == str(path) for mp, _, _ in mounts())
