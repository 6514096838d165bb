"""The hosts' disks: the shared Debian base root (debootstrap, built once per recipe) and each
host's overlay on it, made into that host (name, /etc/hosts, machine id, SSH keys)."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from unde_tools.lab_ssh import SSH_KEY

from lab.unde_lab.common import (
    KEYRING,
    LOG_DIR,
    REPO,
    STATE_DIR,
    VAR_DIR,
    LabError,
    digest,
    is_mounted,
    mounts,
    run,
    say,
    write_file,
)
from lab.unde_lab.inventory import Host

BASE_PARENT = VAR_DIR / "base"
SUITE = "trixie"
VARIANT = "minbase"
MIRROR_HOST = "deb.debian.org"
MIRROR_URL = f"http://{MIRROR_HOST}/debian"
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "python3-apt",
    "iproute2",
    "iputils-ping",
    "sudo",
    "ca-certificates",
    "nftables",
    "procps",
    "less",
    "gnupg",
)
# Bump when customise_base() changes: the base root is rebuilt (and host disks reset).
BASE_RECIPE = 2


def ensure_ssh_key() -> Path:
    pub = SSH_KEY.with_suffix(".pub")
    if not SSH_KEY.exists():
        SSH_KEY.parent.mkdir(parents=True, exist_ok=True)
        STATE_DIR.chmod(0o700)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "unde-lab", "-f", str(SSH_KEY)],
            what="ssh-keygen")  # fmt: skip
        say(f"generated lab SSH key {SSH_KEY.relative_to(REPO)}")
    if not pub.exists():
        pub.write_text(run(["ssh-keygen", "-y", "-f", str(SSH_KEY)], what="ssh-keygen -y").stdout)
    return pub


def mirror_addresses() -> list[str]:
    """IPv4 addresses of the Debian mirror: /etc/hosts first, else the controller's resolver."""
    override = os.environ.get("UNDE_LAB_MIRROR_IP")
    if override:
        return [a.strip() for a in override.split(",") if a.strip()]
    found: list[str] = []
    with contextlib.suppress(OSError):
        for line in Path("/etc/hosts").read_text().splitlines():
            fields = line.split("#", 1)[0].split()
            if len(fields) >= 2 and MIRROR_HOST in fields[1:] and ":" not in fields[0]:
                found.append(fields[0])
    if not found:
        try:
            infos = socket.getaddrinfo(MIRROR_HOST, 80, socket.AF_INET, socket.SOCK_STREAM)
        except OSError as e:
            raise LabError(f"cannot resolve {MIRROR_HOST} on the controller: {e}") from e
        found = [str(i[4][0]) for i in infos]
    out = list(dict.fromkeys(found))
    for a in out:
        if ipaddress.IPv4Address(a) in ipaddress.IPv4Network("10.0.0.0/8"):
            raise LabError(f"{MIRROR_HOST} resolves to {a} (10/8): refusing to route lab traffic there")
    return out


# --------------------------------------------------------------------------- base root


def base_key() -> str:
    recipe = {"suite": SUITE, "variant": VARIANT, "mirror": MIRROR_URL, "packages": sorted(PACKAGES),
              "recipe": BASE_RECIPE}  # fmt: skip
    return digest(json.dumps(recipe, sort_keys=True))[:12]


def base_path() -> Path:
    return BASE_PARENT / f"{SUITE}-{base_key()}"


BASE_MARKER = ".unde-lab-base.json"

SSHD_CONF = """\
# unde lab: root logs in with the lab key only
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
"""

APT_SOURCES = f"""\
deb {MIRROR_URL} {SUITE} main
deb {MIRROR_URL} {SUITE}-updates main
deb http://{MIRROR_HOST}/debian-security {SUITE}-security main
"""


def customise_base(root: Path) -> None:
    """One-time edits of the shared base root (per-host edits are in prepare_root)."""
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()  # per-host keys are generated into each host's upper layer
    write_file(root / "etc/ssh/sshd_config.d/50-unde-lab.conf", SSHD_CONF)
    write_file(root / "etc/resolv.conf", "# unde lab: no DNS; names come from /etc/hosts\n")
    write_file(root / "etc/apt/sources.list", APT_SOURCES)
    write_file(root / "etc/machine-id", "")  # per host
    write_file(root / "etc/hostname", "unde-lab-base\n")
    # No background apt runs: they would race converges for the dpkg lock and hit the mirror at random.
    for unit in ("apt-daily.timer", "apt-daily-upgrade.timer"):
        link = root / "etc/systemd/system" / unit
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to("/dev/null")
    for deb in (root / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
    write_file(root / "etc/systemd/journald.conf.d/50-unde-lab.conf", "[Journal]\nSystemMaxUse=32M\n")
    # Do the first-boot work (ConditionNeedsUpdate: ldconfig, journal catalog) once in the base, not
    # once per host: saves boot time and ~250 KB of upper layer per host.
    for cmd in (["ldconfig"], ["journalctl", "--update-catalog"], ["/usr/lib/systemd/systemd-update-done"]):
        run(["chroot", str(root), *cmd], what=f"base root: {cmd[0]}")


def ensure_base() -> tuple[Path, float | None]:
    """The base root for the current recipe; builds it when missing. Returns (path, build seconds)."""
    final = base_path()
    if (final / BASE_MARKER).exists():
        prune_bases(keep=final)
        return final, None
    BASE_PARENT.mkdir(parents=True, exist_ok=True)
    for stale in BASE_PARENT.glob(".tmp-*"):
        say(f"removing interrupted base build {stale}")
        shutil.rmtree(stale)
    if final.exists():  # no marker: incomplete, never reuse
        shutil.rmtree(final)
    tmp = BASE_PARENT / f".tmp-{final.name}-{os.getpid()}"
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    build_log = LOG_DIR / "base-build.log"
    say(f"building base root {final} (debootstrap {SUITE}, about a minute; log {build_log})")
    t0 = time.monotonic()
    cmd = ["debootstrap", f"--variant={VARIANT}", f"--keyring={KEYRING}", "--include=" + ",".join(PACKAGES),
           SUITE, str(tmp), MIRROR_URL]  # fmt: skip
    with open(build_log, "w") as logf:
        try:
            rc = subprocess.run(
                cmd, stdout=logf, stderr=subprocess.STDOUT, timeout=1800, check=False
            ).returncode
        except subprocess.TimeoutExpired:
            rc = -1
    if rc != 0:
        tail = "\n".join(build_log.read_text(errors="replace").splitlines()[-25:])
        raise LabError(f"debootstrap failed (rc {rc}); last lines of {build_log}:\n{tail}")
    customise_base(tmp)
    marker = {"key": base_key(), "packages": list(PACKAGES), "built": time.strftime("%FT%TZ", time.gmtime())}
    write_file(tmp / BASE_MARKER, json.dumps(marker) + "\n")
    os.rename(tmp, final)
    took = time.monotonic() - t0
    say(f"base root ready in {took:.0f}s")
    prune_bases(keep=final)
    return final, took


def prune_bases(keep: Path) -> None:
    in_use = " ".join(opts for _, fstype, opts in mounts() if fstype == "overlay")
    for old in BASE_PARENT.glob(f"{SUITE}-*"):
        if old != keep and f"lowerdir={old}" not in in_use:
            say(f"removing old base root {old}")
            shutil.rmtree(old)


# --------------------------------------------------------------------------- host disk


def overlay_supported() -> bool:
    return "overlay" in Path("/proc/filesystems").read_text().split()


def prepare_root(host: Host, base: Path) -> None:
    """Mount (or copy) the host's root and make it this host: name, /etc/hosts, keys."""
    host.dir.mkdir(parents=True, exist_ok=True)
    meta_file = host.dir / "meta.json"
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, ValueError):
        meta = {}
    mounted_opts = [o.split(",") for mp, _, o in mounts() if mp == str(host.root)]
    if mounted_opts and f"lowerdir={base}" not in mounted_opts[-1]:
        run(["umount", str(host.root)], what=f"{host.name}: unmount root on an old base")
    if meta.get("base") != str(base):
        if meta:
            say(f"{host.name}: base root changed; resetting its disk")
        if is_mounted(host.root):
            raise LabError(f"{host.name}: {host.root} is still mounted; not resetting its disk")
        for d in ("upper", "work", "root"):
            if (host.dir / d).exists():
                shutil.rmtree(host.dir / d)
    if overlay_supported():
        if not is_mounted(host.root):
            for d in ("upper", "work", "root"):
                (host.dir / d).mkdir(exist_ok=True)
            opts = f"lowerdir={base},upperdir={host.dir / 'upper'},workdir={host.dir / 'work'}"
            run(["mount", "-t", "overlay", f"unde-lab-{host.name}", "-o", opts, str(host.root)],
                what=f"{host.name}: overlay mount")  # fmt: skip
    elif not (host.root / "etc").exists():
        say(f"{host.name}: no overlayfs in this kernel; copying the base root")
        run(["cp", "-a", "--reflink=auto", str(base), str(host.root)], timeout=600, what=f"{host.name}: copy")
    meta_file.write_text(
        json.dumps({"base": str(base), "mode": "overlay" if overlay_supported() else "copy"})
    )


def hosts_file(inventory: Sequence[Host], mirror: Sequence[str]) -> str:
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback", "",
             "# Debian archive (the only address outside the lab that lab hosts may reach)"]  # fmt: skip
    lines += [f"{a}\t{MIRROR_HOST}" for a in mirror[:1]]
    lines += ["", "# unde lab hosts"]
    lines += [f"{h.address}\t{h.name}" for h in inventory]
    return "\n".join(lines) + "\n"


def personalise(host: Host, inventory: Sequence[Host], mirror: Sequence[str], pubkey: str) -> None:
    r = host.root
    write_file(r / "etc/hostname", host.name + "\n")
    write_file(r / "etc/hosts", hosts_file(inventory, mirror))
    mid = r / "etc/machine-id"
    if not mid.exists() or mid.read_text().strip() != host.machine_id:
        write_file(mid, host.machine_id + "\n", 0o444)
    write_file(r / "root/.ssh/authorized_keys", pubkey, 0o600)
    (r / "root/.ssh").chmod(0o700)
    if not (r / "etc/ssh/ssh_host_ed25519_key").exists():
        run(["ssh-keygen", "-A", "-f", str(r)], what=f"{host.name}: ssh host keys")
