"""Hardening of what the roles install, checked on the rendered files (no lab):

* the systemd units and drop-ins of redis, redis_exporter, PostgreSQL, Patroni, the routing
  publisher and the backup metrics carry the strict sandbox (directive by directive), no unit that
  runs as postgres removes the user's IPC objects (PostgreSQL's shared memory), the complete units
  pass ``systemd-analyze verify`` and their ``systemd-analyze security`` exposure is bounded;
* the backup metrics run as postgres with no capability (no root, no CAP_DAC_OVERRIDE);
* no task puts a secret on a command line (``ps`` shows it to every local user);
* runbooks remove directories only through a validated path, never ``rm -rf {{ ... }}``;
* the firewall's egress allow-list renders into a ruleset ``nft -c`` accepts, for lab hosts.
"""

from __future__ import annotations

import ast
import functools
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from ansible.inventory.manager import InventoryManager  # type: ignore[import-untyped]
from ansible.parsing.dataloader import DataLoader  # type: ignore[import-untyped]
from ansible.plugins.loader import add_all_plugin_dirs, init_plugin_loader  # type: ignore[import-untyped]
from ansible.template import Templar, trust_as_template  # type: ignore[import-untyped]
from ansible.vars.hostvars import HostVars  # type: ignore[import-untyped]
from ansible.vars.manager import VariableManager  # type: ignore[import-untyped]
from support import REPO

TEMPLATES = REPO / "templates"
ROLES = REPO / "roles"

# Every unit below has these, from templates/sandbox.j2 or written out.
STRICT = (
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectKernelLogs=yes",
    "ProtectControlGroups=yes",
    "ProtectClock=yes",
    "ProtectHostname=yes",
    "RestrictNamespaces=yes",
    "RestrictRealtime=yes",
    "RestrictSUIDSGID=yes",
    "LockPersonality=yes",
    "SystemCallArchitectures=native",
    "AmbientCapabilities=",
)


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _env() -> jinja2.Environment:
    env = jinja2.Environment(  # noqa: S701 (systemd text, not HTML)
        loader=jinja2.FileSystemLoader([TEMPLATES, *sorted(ROLES.glob("*/templates"))]),
        keep_trailing_newline=True,
        undefined=jinja2.ChainableUndefined,
    )
    env.filters["combine"] = lambda base, extra: {**base, **extra}
    env.filters["bool"] = bool
    return env


def _dropin(role: str, task_name: str, **values: Any) -> str:
    """templates/hardening.conf.j2 with the ``unde_dropin`` of the named task of the role (role
    values that are Jinja expressions are rendered with ``values``)."""

    def walk(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for task in tasks or []:
            out += walk(task.get("block", []))
            if task.get("name") == task_name:
                out.append(task)
        return out

    found = [t for p in sorted((ROLES / role / "tasks").glob("*.yml")) for t in walk(_yaml(p))]
    assert len(found) == 1, f"roles/{role}: task {task_name!r} not found once"
    env = _env()

    def render(value: Any) -> Any:
        if isinstance(value, str):
            text = env.from_string(value).render(**values)
            # Ansible keeps an expression's native type (a list of paths, of [Unit] lines)
            return ast.literal_eval(text) if text.startswith("[") else text
        if isinstance(value, dict):
            return {k: render(v) for k, v in value.items()}
        if isinstance(value, list):
            return [render(v) for v in value]
        return value

    dropin = render(found[0]["vars"]["unde_dropin"])
    return env.get_template("hardening.conf.j2").render(unde_dropin=dropin, ansible_managed="Ansible managed")


def _role_template(role: str, name: str, **values: Any) -> str:
    text = (ROLES / role / "templates" / name).read_text()
    return _env().from_string(text).render(ansible_managed="Ansible managed", **values)


def _directives(text: str) -> dict[str, str]:
    """The [Service] directives of a unit or drop-in (last one wins, as systemd reads them)."""
    out: dict[str, str] = {}
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out[key] = value
    return out


PG_CAPS = _yaml(ROLES / "postgresql" / "vars" / "main.yml")["__postgresql_unit_capabilities"]


@functools.cache
def _units() -> dict[str, str]:
    return {
        "redis-server": _dropin("redis", "Harden the redis-server unit", redis_memory_max="3584M"),
        "redis_exporter": _dropin(
            "redis", "Harden the redis_exporter unit", redis_exporter_memory_max="128M"
        ),
        "postgresql": _dropin(
            "postgresql",
            "Harden the cluster unit",
            __postgresql_read_write_paths=["/var/lib/postgresql", "/run/postgresql", "/var/log/postgresql"],
            __postgresql_unit_capabilities=" ".join(PG_CAPS),
            __postgresql_memory_max="4G",
            postgresql_tasks_max=512,
            __postgresql_data_dir="/var/lib/postgresql/17/main",
        ),
        "patroni": _dropin(
            "patroni",
            "Harden patroni.service",
            __patroni_pg={
                "read_write_paths": ["/var/lib/postgresql"],
                "data_dir": "/var/lib/postgresql/17/main",
            },
            patroni_memory_max="4G",
            patroni_tasks_max=512,
        ),
        "patroni-routing": _role_template(
            "patroni", "patroni-routing.service.j2", __patroni_routing_script="/usr/bin/true"
        ),
        "unde-backup-metrics": _role_template(
            "pgbackrest",
            "unde-backup-metrics.service.j2",
            pgbackrest_stanza="unde-production",
            pgbackrest_kind="production",
            pgbackrest_metrics_group="unde-textfile",
            pgbackrest_metrics_textfile_dir="/var/lib/prometheus/node-exporter",
            pgbackrest_metrics_memory_max="128M",
            __pgbackrest_runner="/usr/local/lib/unde-backup/unde_backup.py",
            __pgbackrest_runner_args="--stanza=unde-production",
            __pgbackrest_repo_roles={"storagebox": 1},
            __pgbackrest_rw_paths=["/var/lib/pgbackrest", "/var/log/pgbackrest"],
            __pgbackrest_shard=False,
        ),
    }


# Units that filter system calls with @system-service (PostgreSQL and Patroni do not: huge pages,
# SysV/POSIX shared memory and pg_ctlcluster's Perl vary by release; said in their drop-ins).
SYSCALL_FILTERED = {"redis-server", "redis_exporter", "patroni-routing", "unde-backup-metrics"}
# Units whose processes run as postgres (or start PostgreSQL): RemoveIPC= would remove its shared memory.
POSTGRES_USER = {"postgresql", "patroni", "patroni-routing", "unde-backup-metrics"}


@pytest.mark.parametrize("unit", sorted(_units()))
def test_unit_has_the_strict_sandbox(unit: str) -> None:
    d = _directives(_units()[unit])
    missing = [
        line
        for line in STRICT
        if f"{line.split('=', 1)[0]}={d.get(line.split('=', 1)[0], '<unset>')}" != line
    ]
    assert not missing, f"{unit} lacks {missing}"
    assert d.get("MemoryMax"), f"{unit}: no MemoryMax"
    assert set(d.get("RestrictAddressFamilies", "").split()) <= {
        "AF_UNIX",
        "AF_INET",
        "AF_INET6",
        "AF_NETLINK",
    }
    assert d.get("RestrictAddressFamilies"), f"{unit}: no RestrictAddressFamilies"
    if unit in SYSCALL_FILTERED:
        assert d.get("SystemCallFilter") == "@system-service", unit
        assert d.get("SystemCallErrorNumber") == "EPERM", unit
    if unit == "postgresql":
        # pg_ctlcluster starts as root: a bounded set, nothing that administers the host
        caps = d["CapabilityBoundingSet"].split()
        assert caps and set(caps) <= set(PG_CAPS)
        assert not {"CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_SYS_MODULE", "CAP_SYS_PTRACE"} & set(caps)
    else:
        assert d.get("CapabilityBoundingSet") == "", (
            f"{unit}: capabilities {d.get('CapabilityBoundingSet')!r}"
        )
    if unit in POSTGRES_USER:
        assert "RemoveIPC" not in d, f"{unit}: RemoveIPC= would remove PostgreSQL's shared memory"
    else:
        assert d.get("RemoveIPC") == "yes", unit
    if unit not in {"postgresql", "patroni"}:
        assert d.get("MemoryDenyWriteExecute") == "yes", unit
        assert d.get("UMask") in {"0077", "0007"}, unit


def test_backup_metrics_run_as_postgres_without_capabilities() -> None:
    text = _units()["unde-backup-metrics"]
    d = _directives(text)
    assert (d["User"], d["Group"], d["SupplementaryGroups"]) == ("postgres", "postgres", "unde-textfile")
    assert "CAP_" not in text
    assert "--as-postgres" not in text and "setpriv" not in text
    assert d["ReadWritePaths"].split()[0] == "/var/lib/prometheus/node-exporter"
    # the role makes the textfile directory writable for that group only
    tasks = _yaml(ROLES / "pgbackrest" / "tasks" / "configure.yml")
    textfile = next(
        t for t in tasks if str(t.get("name", "")).startswith("Create the textfile collector directory")
    )
    assert textfile["ansible.builtin.file"]["group"] == "{{ pgbackrest_metrics_group }}"
    assert textfile["ansible.builtin.file"]["mode"] == "0775"


def _sections(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    section = ""
    for line in text.splitlines():
        if line.startswith("["):
            section = line.strip()
        elif line.strip() and not line.startswith("#") and section:
            out.setdefault(section, []).append(line)
    return out


def _complete_unit(unit: str) -> str:
    """A unit systemd-analyze can read: a drop-in merged into a stand-in of the package's unit
    (ExecStart, the package's User=). This host has no postgres, redis or prometheus user:
    ``daemon`` stands in, which scores like any other unprivileged user."""
    text = _units()[unit]
    if not re.search(r"^ExecStart=", text, re.M):
        user = {"redis-server": "redis", "redis_exporter": "prometheus", "patroni": "postgres"}.get(unit)
        base = "[Unit]\nDescription=stand-in\n[Service]\nExecStart=/usr/bin/true\n"
        base += f"User={user}\n" if user else ""
        merged = _sections(base)
        for section, lines in _sections(text).items():
            merged.setdefault(section, []).extend(lines)
        text = "".join(
            f"{section}\n" + "".join(f"{line}\n" for line in lines) for section, lines in merged.items()
        )
    for user in ("postgres", "redis", "prometheus"):
        text = text.replace(f"User={user}\n", "User=daemon\n").replace(f"Group={user}\n", "Group=daemon\n")
    return text.replace("SupplementaryGroups=unde-textfile", "SupplementaryGroups=daemon")


SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
# systemd-analyze security's exposure (0 best, 10 worst; <= 2.0 is "OK"). Measured on Debian 12's
# systemd 252: postgresql 4.4 (pg_ctlcluster starts as root with a bounded capability set, no
# syscall filter), patroni 3.2 (no syscall filter, no MemoryDenyWriteExecute: LLVM JIT), every
# other unit <= 2.0.
EXPOSURE_MAX = {"postgresql": 4.5, "patroni": 3.5}


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("unit", sorted(_units()))
def test_unit_passes_systemd_analyze(unit: str, tmp_path: Path) -> None:
    assert SYSTEMD_ANALYZE
    path = tmp_path / f"{unit}.service"
    path.write_text(_complete_unit(unit))
    verify = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", str(path)], capture_output=True, text=True, check=False
    )
    problems = [
        line
        for line in (verify.stdout + verify.stderr).splitlines()
        if line.strip() and "Failed to " not in line and "bus" not in line.lower()
    ]
    assert verify.returncode == 0 and not problems, verify.stdout + verify.stderr
    security = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=yes", "--no-pager", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", security.stdout)
    if found is None:
        pytest.skip(f"systemd-analyze security --offline unavailable: {security.stderr.strip()[:200]}")
    exposure = float(found.group(1))
    print(f"{unit}: exposure {exposure}")
    assert exposure <= EXPOSURE_MAX.get(unit, 2.0), f"{unit}: exposure {exposure}"


# ---------------------------------------------------------------------------- command lines

SECRET_ON_COMMAND_LINE = re.compile(
    r"--(new-user-)?password(=|\s|$)|--pass(=|\s|$)|--user[= ]\S+:|\s-a\s|PGPASSWORD=|"
    r"requirepass|://[^/@\s:]+:[^/@]+@",
    re.I,
)


def _command_tasks() -> list[tuple[str, str]]:
    out = []

    def walk(tasks: Any, where: str) -> None:
        if not isinstance(tasks, list):
            return
        for task in tasks:
            if not isinstance(task, dict):
                continue
            for key in ("block", "rescue", "always", "tasks", "pre_tasks", "post_tasks"):
                walk(task.get(key), where)
            for module in ("ansible.builtin.command", "ansible.builtin.shell", "command", "shell"):
                args = task.get(module)
                if args is None:
                    continue
                line = (
                    args
                    if isinstance(args, str)
                    else " ".join(map(str, args.get("argv") or [args.get("cmd", "")]))
                )
                out.append((f"{where}: {task.get('name')}", line))

    for path in sorted([*ROLES.glob("*/tasks/*.yml"), *(REPO / "playbooks").rglob("*.yml")]):
        walk(_yaml(path), str(path.relative_to(REPO)))
    return out


def test_command_tasks_are_found() -> None:
    assert any("etcdctl" in line for _, line in _command_tasks())


def test_no_secret_on_a_command_line() -> None:
    bad = [(where, line) for where, line in _command_tasks() if SECRET_ON_COMMAND_LINE.search(line)]
    assert not bad, bad


def test_etcd_passwords_go_through_stdin() -> None:
    tasks = _yaml(ROLES / "etcd" / "tasks" / "auth.yml")
    adds = [
        t
        for t in tasks
        if (t.get("ansible.builtin.command") or {}).get("argv", [None])[1:3] == ["user", "add"]
    ]
    assert len(adds) == 2
    for task in adds:
        args = task["ansible.builtin.command"]
        assert "--interactive=false" in args["argv"]
        assert not any("password" in str(a) for a in args["argv"])
        assert "password" in args["stdin"]
        assert task["no_log"] is True


def test_the_secret_pattern_catches_what_it_should() -> None:
    for line in (
        "etcdctl user add root --interactive=false --new-user-password={{ x }}",
        "curl --user admin:{{ pw }} http://x",
        "redis-cli -a {{ pw }} ping",
        "psql postgresql://u:{{ pw }}@h/db",
    ):
        assert SECRET_ON_COMMAND_LINE.search(line), line
    assert not SECRET_ON_COMMAND_LINE.search("etcdctl user add root --interactive=false")


# ---------------------------------------------------------------------------------- runbooks


def test_no_unquoted_recursive_removal_of_a_templated_path() -> None:
    bad = []
    for path in sorted([*(REPO / "playbooks").rglob("*.yml"), *ROLES.glob("*/tasks/*.yml")]):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\brm\s+-[a-z]*r[a-z]*\s+[^|;&]*\{\{(?![^}]*\|\s*quote)", line) or re.search(
                r"\bfind\s+\{\{.*-delete", line
            ):
                bad.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert not bad, bad


@functools.cache
def _scratch_assert() -> list[str]:
    plays = _yaml(REPO / "playbooks" / "runbooks" / "verify_backups.yml")
    first = plays[0]["tasks"][0]
    assert "ansible.builtin.assert" in first, "verify_backups.yml checks its scratch directory first"
    return [str(c) for c in first["ansible.builtin.assert"]["that"]]


@pytest.mark.parametrize(
    ("path", "ok"),
    [
        ("/var/lib/pgbackrest/verify", True),
        ("/srv/unde/verify_2", True),
        ("/", False),
        ("/var", False),
        ("/var/lib", False),
        ("/var/lib/../../etc", False),
        ("/var/lib/pgbackrest/.", False),
        ("var/lib/pgbackrest/verify", False),
        ("/var/lib/pgbackrest/verify dir", False),
        ("/var/lib/pgbackrest/$(reboot)", False),
        ("/var/lib/pgbackrest/verify; rm -rf /", False),
        ("/var/lib/pgbackrest/verify/", False),
        ("/var//lib/pgbackrest", False),
    ],
)
def test_verify_backups_refuses_a_bad_scratch_directory(path: str, ok: bool) -> None:
    templar = Templar(variables={"verify_backups_scratch_dir": path})
    results = [templar.template(trust_as_template("{{ " + c + " }}")) for c in _scratch_assert()]
    assert all(results) is ok, (path, results)


def test_verify_backups_removes_through_the_file_module() -> None:
    text = (REPO / "playbooks" / "runbooks" / "verify_backups.yml").read_text()
    assert "rm -rf" not in text
    plays = _yaml(REPO / "playbooks" / "runbooks" / "verify_backups.yml")
    removals = []

    def walk(tasks: list[dict[str, Any]]) -> None:
        for task in tasks or []:
            for key in ("block", "always", "rescue"):
                walk(task.get(key, []))
            module = task.get("ansible.builtin.file") or {}
            if module.get("state") == "absent":
                removals.append(module["path"])

    walk(plays[0]["tasks"])
    assert removals == ["{{ verify_backups_scratch_dir }}"] * 2


# ---------------------------------------------------------------------------------- firewall

FIREWALL = ROLES / "firewall"
LAB_INVENTORY = REPO / "inventories" / "lab" / "hosts.yml"


@functools.cache
def _inventory() -> tuple[Any, Any, Any]:

    init_plugin_loader()
    add_all_plugin_dirs(str(FIREWALL))
    loader = DataLoader()
    inventory = InventoryManager(loader=loader, sources=[str(LAB_INVENTORY)])
    return loader, inventory, VariableManager(loader=loader, inventory=inventory)


def _nftables(host: str, **overrides: Any) -> str:

    loader, inventory, variables = _inventory()
    host_vars = variables.get_vars(host=inventory.get_host(host), include_hostvars=True)
    host_vars["hostvars"] = HostVars(inventory=inventory, variable_manager=variables, loader=loader)
    data = {
        **loader.load_from_file(str(FIREWALL / "defaults" / "main.yml"), trusted_as_template=True),
        **host_vars,
        **loader.load_from_file(str(FIREWALL / "vars" / "main.yml"), trusted_as_template=True),
        **loader.load_from_file(str(FIREWALL / "vars" / "Debian.yml"), trusted_as_template=True),
        "ansible_managed": "Ansible managed",
        **overrides,
    }
    templar = Templar(loader=loader, variables=data)
    return str(templar.template(trust_as_template((FIREWALL / "templates" / "nftables.conf.j2").read_text())))


def _output_chain(text: str) -> str:
    return text[text.index("chain output {") :]


def _nft_check(text: str, tmp_path: Path) -> None:
    nft = shutil.which("nft") or "/usr/sbin/nft"
    if not Path(nft).exists():
        pytest.skip("nft is not installed")
    path = tmp_path / "nftables.conf"
    path.write_text(text)
    res = subprocess.run([nft, "-c", "-f", str(path)], capture_output=True, text=True, check=False)
    if res.returncode != 0 and "Operation not permitted" in res.stderr:
        pytest.skip("nft -c needs CAP_NET_ADMIN here")
    assert res.returncode == 0, res.stderr


def test_lab_hosts_keep_output_accept() -> None:
    # the lab's hosts reach the controller (198.18.0.1) and the simulators (198.18.0.1:18080)
    for host in ("recognition", "ximilar-gw", "llm-reranker"):
        out = _output_chain(_nftables(host))
        assert "policy accept;" in out and "drop" not in out, host


LAB_EXTRA = [{"name": "lab_simulators", "proto": "tcp", "port": 18080, "destinations": ["198.18.0.1"]}]


@pytest.mark.parametrize(
    "host", ["recognition", "ximilar-gw", "production-db", "local-shard-0", "monitoring"]
)
def test_egress_allowlist_renders_a_valid_ruleset(host: str, tmp_path: Path) -> None:
    text = _nftables(host, firewall_egress_policy="allowlist", firewall_egress_extra=LAB_EXTRA)
    out = _output_chain(text)
    assert "type filter hook output priority filter; policy drop;" in out
    assert "ct state established,related accept" in out and 'oif "lo" accept' in out
    # HTTPS only to public addresses: never the private networks, the lab range or the metadata service
    assert re.search(r"tcp dport 443 ip daddr != \{ [^}]*169\.254\.0\.0/16[^}]*198\.18\.0\.0/15", out)
    assert 'udp dport 53 accept comment "dns"' in out
    assert 'tcp dport 18080 ip daddr {\n\t\t\t198.18.0.1,\n\t\t} accept comment "lab_simulators"' in out
    _nft_check(text, tmp_path)


def _egress_ports(host: str) -> dict[str, str]:
    out = _output_chain(_nftables(host, firewall_egress_policy="allowlist"))
    return {
        m.group(2): m.group(1)
        for m in re.finditer(r"dport (\d+) ip daddr \{[^}]*\} accept comment \"(\w+)\"", out)
    }


def test_egress_allowlist_follows_the_registry() -> None:
    recognition = _egress_ports("recognition")
    # recognition calls ximilar-gw, the reranker, the embedder, production-db and push's Redis ...
    assert {"ximilar_gw", "llm_reranker", "embedder", "production_pgbouncer", "redis_batch"} <= set(
        recognition
    )
    # ... but is no client of etcd, the shards or node_exporter (the monitoring server scrapes)
    assert not {"etcd_client", "etcd_peer", "shard_postgres", "node_exporter"} & set(recognition)
    monitoring = _egress_ports("monitoring")
    assert {"node_exporter", "redis_exporter", "postgres_exporter"} <= set(monitoring)
    assert "production_postgres" not in monitoring
