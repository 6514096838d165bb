"""UNDE lab: booted Debian hosts (systemd-nspawn) on one machine, no Docker.

Everything ``lab/labctl`` does lives here so ``lab/bench_lab.py`` and the tests can reuse it.
Layout (see lab/README.md):

* base root   ``/var/lib/unde-lab/base/trixie-<hash>``  (debootstrap, shared read-only lower layer)
* host disk   ``/var/lib/unde-lab/hosts/<host>/{upper,work,root}``  (overlayfs, ``root`` is merged)
* network     netns ``unde-<host>``, veth ``ul-<hash8>`` on bridge ``unde-hel``/``unde-loc``
* processes   cgroup v2 ``<unified>/unde-lab/<host>`` (freeze, kill, memory of a host)
* state       ``.lab/ssh`` (key), ``.lab/run`` (pid files), ``.lab/logs`` (console logs)
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

REPO = Path(__file__).resolve().parent.parent
STATE_DIR = REPO / ".lab"
SSH_KEY = STATE_DIR / "ssh" / "id_ed25519"
RUN_DIR = STATE_DIR / "run"
LOG_DIR = STATE_DIR / "logs"
INVENTORY = Path(os.environ.get("UNDE_LAB_INVENTORY", str(REPO / "inventories/lab/hosts.yml")))
VAR_DIR = Path(os.environ.get("UNDE_LAB_VAR", "/var/lib/unde-lab"))
BASE_PARENT = VAR_DIR / "base"
HOSTS_DIR = VAR_DIR / "hosts"

SUITE = "trixie"
VARIANT = "minbase"
MIRROR_HOST = "deb.debian.org"
MIRROR_URL = f"http://{MIRROR_HOST}/debian"
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
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

LAB_RANGE = ipaddress.IPv4Network("198.18.0.0/15")
NFT_TABLE = "unde_lab"
NFT_FAULTS = "unde_lab_faults"
SSH_OPTS = (
    "-o", "BatchMode=yes",
    "-o", "IdentitiesOnly=yes",
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "LogLevel=ERROR",
    "-o", "ConnectTimeout=5",
)  # fmt: skip
POWEROFF_SIGNAL = signal.SIGRTMIN + 4  # systemd: SIGRTMIN+4 on PID 1 = poweroff
DEFAULT_BOOT_TIMEOUT = 60.0
DEFAULT_PARALLEL = 4

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


# --------------------------------------------------------------------------- inventory


@dataclass(frozen=True)
class Site:
    name: str
    bridge: str
    net: ipaddress.IPv4Network

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        return self.net.network_address + 1


SITES: dict[str, Site] = {
    "helsinki": Site("helsinki", "unde-hel", ipaddress.IPv4Network("198.18.0.0/16")),
    "local": Site("local", "unde-loc", ipaddress.IPv4Network("198.19.0.0/16")),
}


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Host:
    name: str
    address: ipaddress.IPv4Address
    site: Site

    @property
    def netns(self) -> str:
        return f"unde-{self.name}"

    @property
    def veth(self) -> str:  # controller end; <= 15 chars
        return "ul-" + _digest(self.name)[:8]

    @property
    def veth_peer(self) -> str:  # temporary name of the host end, renamed eth0 inside the netns
        return "up-" + _digest(self.name)[:8]

    @property
    def mac(self) -> str:  # stable, so peers' ARP caches stay valid across restarts
        h = _digest("mac:" + self.name)
        return "02:" + ":".join(h[i : i + 2] for i in range(0, 10, 2))

    @property
    def machine_id(self) -> str:
        return _digest("machine-id:" + self.name)[:32]

    @property
    def dir(self) -> Path:
        return HOSTS_DIR / self.name

    @property
    def root(self) -> Path:
        return self.dir / "root"

    @property
    def pidfile(self) -> Path:
        return RUN_DIR / f"{self.name}.pid"

    @property
    def log(self) -> Path:
        return LOG_DIR / f"{self.name}.log"


def _walk_groups(
    name: str, body: Any, site: str | None, hosts: dict[str, dict[str, Any]], sites: dict[str, set[str]]
) -> None:
    if not isinstance(body, dict):
        return
    gvars = body.get("vars") or {}
    site = str(gvars["unde_site"]) if "unde_site" in gvars else site
    for host, hv in (body.get("hosts") or {}).items():
        hosts.setdefault(host, {}).update(hv or {})
        if site is not None:
            sites.setdefault(host, set()).add(site)
    for child, cbody in (body.get("children") or {}).items():
        _walk_groups(child, cbody, site, hosts, sites)


def load_inventory(path: Path = INVENTORY) -> list[Host]:
    """Every lab host, in inventory order, with its lab address and site (validated)."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise LabError(f"cannot read the lab inventory {path}: {e}") from e
    hostvars: dict[str, dict[str, Any]] = {}
    sites: dict[str, set[str]] = {}
    _walk_groups("all", (data or {}).get("all"), None, hostvars, sites)
    out: list[Host] = []
    seen: dict[ipaddress.IPv4Address, str] = {}
    veths: dict[str, str] = {}
    for name, hv in hostvars.items():
        if "ansible_host" not in hv:
            continue
        site_names = sites.get(name, set())
        if len(site_names) != 1:
            raise LabError(f"{path}: host {name} must belong to exactly one site group, has {site_names}")
        site_name = next(iter(site_names))
        if site_name not in SITES:
            raise LabError(f"{path}: host {name}: unknown site {site_name!r} (known: {', '.join(SITES)})")
        site = SITES[site_name]
        try:
            addr = ipaddress.IPv4Address(str(hv["ansible_host"]))
        except ValueError as e:
            raise LabError(f"{path}: host {name}: ansible_host is not an IPv4 address: {e}") from e
        if addr not in LAB_RANGE or addr not in site.net:
            raise LabError(f"{path}: host {name}: {addr} is outside its site's lab range {site.net}")
        if addr in (site.gateway, site.net.network_address, site.net.broadcast_address):
            raise LabError(f"{path}: host {name}: {addr} is reserved (gateway/network/broadcast)")
        if addr in seen:
            raise LabError(f"{path}: hosts {seen[addr]} and {name} share the address {addr}")
        seen[addr] = name
        host = Host(name, addr, site)
        if host.veth in veths:
            raise LabError(f"veth name clash between {veths[host.veth]} and {name}; rename a host")
        veths[host.veth] = name
        out.append(host)
    if not out:
        raise LabError(f"{path}: no hosts with ansible_host found")
    return out


def select_hosts(inventory: Sequence[Host], names: Sequence[str]) -> list[Host]:
    if not names:
        return list(inventory)
    by_name = {h.name: h for h in inventory}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise LabError(f"unknown lab host(s): {', '.join(unknown)}; known: {', '.join(by_name)}")
    return [by_name[n] for n in dict.fromkeys(names)]


# --------------------------------------------------------------------------- helpers


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


def log_tail(host: Host, lines: int = 40) -> str:
    try:
        data = host.log.read_text(errors="replace")
    except OSError:
        return f"(no console log at {host.log})"
    tail = strip_ansi(data).splitlines()[-lines:]
    return "\n".join(f"  | {line}" for line in tail)


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


# --------------------------------------------------------------------------- mounts and cgroups


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

_children: dict[int, subprocess.Popen[bytes]] = {}


def pid_alive(pid: int) -> bool:
    child = _children.get(pid)
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


def ssh_banner(host: Host, timeout: float = 1.5) -> bool:
    try:
        with socket.create_connection((str(host.address), 22), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def ssh_argv(host: Host, command: Sequence[str] = ()) -> list[str]:
    return ["ssh", "-i", str(SSH_KEY), *SSH_OPTS, f"root@{host.address}", *command]


# --------------------------------------------------------------------------- base root


def base_key() -> str:
    recipe = {"suite": SUITE, "variant": VARIANT, "mirror": MIRROR_URL, "packages": sorted(PACKAGES),
              "recipe": BASE_RECIPE}  # fmt: skip
    return _digest(json.dumps(recipe, sort_keys=True))[:12]


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


# --------------------------------------------------------------------------- network


def _link_exists(name: str, netns: str | None = None) -> bool:
    cmd = ["ip", *(["-n", netns] if netns else []), "link", "show", "dev", name]
    return run(cmd, check=False).returncode == 0


def netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def uplink() -> str | None:
    routes = json.loads(run(["ip", "-j", "-4", "route", "show", "default"]).stdout or "[]")
    for r in routes:
        if r.get("dev") and not str(r["dev"]).startswith(("unde-", "ul-")):
            return str(r["dev"])
    return None


SYSCTL_ORIG = VAR_DIR / "sysctl.orig.json"
# Many systemd instances on one kernel: the default 128 inotify instances run out after ~20 hosts
# ("Failed to allocate manager object: Too many open files").
SYSCTL_MIN = {"fs/inotify/max_user_instances": 8192, "fs/inotify/max_user_watches": 524288}


def _sysctl(key: str) -> str:
    return Path("/proc/sys", key).read_text().strip()


def _set_sysctl(key: str, value: str) -> None:
    """Set a controller sysctl, remembering its first original value for `down` to restore."""
    orig: dict[str, str] = json.loads(SYSCTL_ORIG.read_text()) if SYSCTL_ORIG.exists() else {}
    if key not in orig:
        orig[key] = _sysctl(key)
        SYSCTL_ORIG.write_text(json.dumps(orig, indent=1) + "\n")
    Path("/proc/sys", key).write_text(value + "\n")


def forward_was_off() -> bool:
    orig: dict[str, str] = json.loads(SYSCTL_ORIG.read_text()) if SYSCTL_ORIG.exists() else {}
    return orig.get("net/ipv4/ip_forward", _sysctl("net/ipv4/ip_forward")) == "0"


def ensure_sysctls() -> None:
    for key, minimum in SYSCTL_MIN.items():
        if int(_sysctl(key)) < minimum:
            _set_sysctl(key, str(minimum))
    if _sysctl("net/ipv4/ip_forward") != "1":
        _set_sysctl("net/ipv4/ip_forward", "1")


def restore_sysctls() -> list[str]:
    done: list[str] = []
    if not SYSCTL_ORIG.exists():
        return done
    for key, value in json.loads(SYSCTL_ORIG.read_text()).items():
        if _sysctl(key) != value:
            Path("/proc/sys", key).write_text(value + "\n")
            done.append(f"{key.replace('/', '.')} restored to {value}")
    SYSCTL_ORIG.unlink()
    return done


def ensure_bridges() -> None:
    addrs = json.loads(run(["ip", "-j", "-4", "addr", "show"]).stdout or "[]")
    bridges = {s.bridge for s in SITES.values()}
    for link in addrs:
        for a in link.get("addr_info", []):
            ip = ipaddress.IPv4Address(a["local"])
            if ip in LAB_RANGE and link["ifname"] not in bridges:
                raise LabError(f"{link['ifname']} already holds {ip} inside the lab range {LAB_RANGE}")
    for site in SITES.values():
        if not _link_exists(site.bridge):
            mac = "02:" + ":".join(_digest("bridge:" + site.bridge)[i : i + 2] for i in range(0, 10, 2))
            run(["ip", "link", "add", site.bridge, "address", mac, "type", "bridge", "stp_state", "0"],
                what=f"create bridge {site.bridge}")  # fmt: skip
            say(f"bridge {site.bridge} {site.gateway}/{site.net.prefixlen} created")
        have = run(["ip", "-j", "-4", "addr", "show", "dev", site.bridge]).stdout
        if f'"{site.gateway}"' not in have:
            run(["ip", "addr", "add", f"{site.gateway}/{site.net.prefixlen}", "dev", site.bridge])
        run(["ip", "link", "set", site.bridge, "up"])


def nft_ruleset(up: str | None, mirror: Sequence[str], forward_was_off: bool) -> str:
    lab = ", ".join(f'"{s.bridge}"' for s in SITES.values())
    rules = [
        f'iifname {{ {lab} }} oifname {{ {lab} }} accept comment "site to site through the controller"',
    ]
    nat: list[str] = []
    if up is not None and mirror:
        rules += [
            f'iifname {{ {lab} }} oifname "{up}" ip daddr {{ {", ".join(mirror)} }} tcp dport {{ 80, 443 }} '
            'accept comment "lab hosts reach the Debian archive only"',
            f'iifname "{up}" oifname {{ {lab} }} ct state established,related accept',
        ]
        nat = [f'oifname "{up}" ip saddr {LAB_RANGE} masquerade']
    rules += [
        f'iifname {{ {lab} }} counter drop comment "nothing else leaves the lab"',
        f'oifname {{ {lab} }} counter drop comment "nothing else enters the lab"',
    ]
    if forward_was_off:
        rules.append('counter drop comment "forwarding was off before the lab: lab traffic only"')
    body = "\n".join(f"    {r}" for r in rules)
    nat_body = "\n".join(f"    {r}" for r in nat)
    return f"""table inet {NFT_TABLE}
delete table inet {NFT_TABLE}
table inet {NFT_TABLE} {{
  chain forward {{
    type filter hook forward priority filter; policy accept;
{body}
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
{nat_body}
  }}
}}
"""


def ensure_firewall(mirror: Sequence[str]) -> None:
    up = uplink()
    if up is None:
        say("warning: no default route on the controller; lab hosts get no access to the Debian archive")
    run(["nft", "-f", "-"], input_text=nft_ruleset(up, mirror, forward_was_off()), what="nft lab table")


def ensure_netns(host: Host) -> None:
    site = host.site
    cidr = f"{host.address}/{site.net.prefixlen}"
    if netns_exists(host.netns) and _link_exists(host.veth):
        have = run(["ip", "-n", host.netns, "-j", "-4", "addr", "show", "dev", "eth0"], check=False).stdout
        if f'"{host.address}"' in have:
            run(["ip", "link", "set", host.veth, "master", site.bridge, "up"])
            return
    # (re)build from scratch
    if netns_exists(host.netns):
        run(["ip", "netns", "del", host.netns], what=f"{host.name}: delete stale netns")
    if _link_exists(host.veth):
        run(["ip", "link", "del", host.veth])
    what = f"{host.name}: network"
    run(["ip", "netns", "add", host.netns], what=what)
    run(["ip", "link", "add", host.veth, "type", "veth", "peer", "name", host.veth_peer], what=what)
    run(["ip", "link", "set", host.veth_peer, "netns", host.netns], what=what)
    ns = ["ip", "-n", host.netns]
    run([*ns, "link", "set", host.veth_peer, "name", "eth0", "address", host.mac], what=what)
    run([*ns, "addr", "add", cidr, "dev", "eth0"], what=what)
    run([*ns, "link", "set", "lo", "up"], what=what)
    run([*ns, "link", "set", "eth0", "up"], what=what)
    run([*ns, "route", "add", "default", "via", str(site.gateway)], what=what)
    run(["ip", "link", "set", host.veth, "master", site.bridge, "up"], what=what)


def teardown_netns(host: Host) -> bool:
    did = False
    if netns_exists(host.netns):
        run(["ip", "netns", "del", host.netns], what=f"{host.name}: delete netns")
        did = True
    if _link_exists(host.veth):
        run(["ip", "link", "del", host.veth], check=False)
        did = True
    return did


def teardown_network() -> list[str]:
    done: list[str] = []
    for site in SITES.values():
        if _link_exists(site.bridge):
            run(["ip", "link", "del", site.bridge], what=f"delete bridge {site.bridge}")
            done.append(f"bridge {site.bridge}")
    for table in (NFT_TABLE, NFT_FAULTS):
        if run(["nft", "list", "table", "inet", table], check=False).returncode == 0:
            run(["nft", "delete", "table", "inet", table], what=f"delete nft table {table}")
            done.append(f"nft table inet {table}")
    done += restore_sysctls()
    if Path("/run/netns").is_dir():
        for ns in Path("/run/netns").glob("unde-*"):
            run(["ip", "netns", "del", ns.name], check=False)
            done.append(f"stray netns {ns.name}")
    for root in (cgroup2_root(), named_systemd_root()):
        if root is not None and (root / "unde-lab").is_dir():
            with contextlib.suppress(OSError):
                (root / "unde-lab").rmdir()
    return done


# --------------------------------------------------------------------------- faults (nftables)


def _fault_table_exists() -> bool:
    return run(["nft", "list", "table", "inet", NFT_FAULTS], check=False).returncode == 0


def _set_name(site: Site) -> str:
    return f"part_{site.name}"


def ensure_fault_table() -> None:
    if _fault_table_exists():
        return
    sets, rules = [], []
    for site in SITES.values():
        sets.append(f"  set {_set_name(site)} {{ type ipv4_addr; }}")
        for other in SITES.values():
            if other is site:
                continue
            rules.append(f"    ip saddr @{_set_name(site)} ip daddr {other.net} drop")
            rules.append(f"    ip saddr {other.net} ip daddr @{_set_name(site)} drop")
    text = (
        f"table inet {NFT_FAULTS} {{\n" + "\n".join(sets) + "\n  chain forward {\n"
        "    type filter hook forward priority filter - 10; policy accept;\n"
        + "\n".join(rules) + "\n  }\n}\n"
    )  # fmt: skip
    run(["nft", "-f", "-"], input_text=text, what="nft faults table")


def partitioned() -> set[ipaddress.IPv4Address]:
    if not _fault_table_exists():
        return set()
    out: set[ipaddress.IPv4Address] = set()
    for site in SITES.values():
        cp = run(["nft", "-j", "list", "set", "inet", NFT_FAULTS, _set_name(site)], check=False)
        if cp.returncode != 0:
            continue
        for item in json.loads(cp.stdout).get("nftables", []):
            for elem in item.get("set", {}).get("elem", []):
                if isinstance(elem, str):
                    out.add(ipaddress.IPv4Address(elem))
    return out


def set_partition(host: Host, on: bool) -> bool:
    """Add/remove the host to/from its site's partition set; True when that changed something."""
    if on:
        ensure_fault_table()
    elif not _fault_table_exists():
        return False
    if (host.address in partitioned()) == on:
        return False
    verb = "add" if on else "delete"
    run(["nft", verb, "element", "inet", NFT_FAULTS, _set_name(host.site), f"{{ {host.address} }}"],
        what=f"{host.name}: partition {verb}")  # fmt: skip
    return True


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
    _children[proc.pid] = proc
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


def network_setup(mirror: Sequence[str]) -> None:
    ensure_sysctls()
    ensure_bridges()
    ensure_firewall(mirror)


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
        _children.pop(pid, None)
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


# --------------------------------------------------------------------------- status / memory


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


# --------------------------------------------------------------------------- faults


def fault(name: str, action: str) -> None:
    require("fault")
    inventory = load_inventory()
    with lab_lock():
        if action == "heal" and name == "all":
            heal_all(inventory)
            return
        (host,) = select_hosts(inventory, [name])
        if action == "kill":
            pid = nspawn_pid(host)
            if pid is None:
                say(f"{host.name}: already stopped")
                return
            kill_cgroup(host_cgroups(host)[0])
            set_frozen(host, False)
            _children.pop(pid, None)
            host.pidfile.unlink(missing_ok=True)
            say(f"{host.name}: killed (SIGKILL to every process of the container, pid {pid}); "
                f"disk and network kept; `labctl up {host.name}` boots it again")  # fmt: skip
        elif action in ("freeze", "thaw"):
            if nspawn_pid(host) is None:
                raise LabError(f"{host.name}: not running; cannot {action}")
            changed = set_frozen(host, action == "freeze")
            word = "frozen" if action == "freeze" else "thawed"
            say(f"{host.name}: {word} (cgroup.freeze)" if changed else f"{host.name}: already {word}")
        elif action == "partition":
            others = ", ".join(str(s.net) for s in SITES.values() if s is not host.site)
            if set_partition(host, True):
                say(f"{host.name}: partitioned from the other site ({host.address} <-/-> {others}; "
                    f"same-site traffic unaffected)")  # fmt: skip
            else:
                say(f"{host.name}: already partitioned")
        elif action == "heal":
            did = []
            if set_partition(host, False):
                did.append("partition removed")
            if nspawn_pid(host) is not None and set_frozen(host, False):
                did.append("thawed")
            say(f"{host.name}: healed ({', '.join(did)})" if did else f"{host.name}: nothing to heal")
        else:
            raise LabError(f"unknown fault action {action}")


def heal_all(inventory: Sequence[Host]) -> None:
    did = False
    for host in inventory:
        if set_partition(host, False):
            say(f"{host.name}: partition removed")
            did = True
        if nspawn_pid(host) is not None and set_frozen(host, False):
            say(f"{host.name}: thawed")
            did = True
    if not did:
        say("nothing to heal")


# --------------------------------------------------------------------------- ssh / exec / logs


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


# --------------------------------------------------------------------------- CLI


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
