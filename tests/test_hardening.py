"""Hardening of what the roles install, checked on the rendered files (no lab):

* every systemd unit and drop-in the roles install (each hardening drop-in, each role's unit
  template, every app's services through templates/app.service.j2; the lab's stand-ins apart; a
  check fails when one is added and not measured) carries the strict sandbox (directive by
  directive, the exceptions named), no unit that runs as postgres removes the user's IPC objects
  (PostgreSQL's shared memory), the complete units and timers pass ``systemd-analyze verify`` and
  ``systemd-analyze security`` rates each at most 2.0, "OK" (a table: ``pytest -s``; the bound
  lives in unde_tools.unit_security, which the molecule scenarios apply on the lab hosts);
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
import tempfile
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
from support import REPO, nft_check
from unde_tools import unit_security

TEMPLATES = REPO / "templates"
ROLES = REPO / "roles"
# Roles of the lab's stand-ins (an object store, a Storage Box): not UNDE's, not measured.
LAB_ROLES = {"lab_objstore", "lab_storagebox"}

# Every unit below has these, from templates/sandbox.j2 or written out.
STRICT = (
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "PrivateMounts=yes",
    "ProtectProc=invisible",
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
    "CapabilityBoundingSet=",
    "AmbientCapabilities=",
)


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _env() -> jinja2.Environment:
    env = jinja2.Environment(  # noqa: S701 (systemd text, not HTML)
        loader=jinja2.FileSystemLoader([TEMPLATES, *sorted(ROLES.glob("*/templates"))]),
        keep_trailing_newline=True,
        trim_blocks=True,  # as Ansible's template module
        undefined=jinja2.ChainableUndefined,
    )
    env.filters["combine"] = lambda base, *extra: functools.reduce(lambda a, b: {**a, **b}, extra, base)
    env.filters["bool"] = bool
    env.tests["match"] = lambda value, pattern: re.match(pattern, str(value)) is not None
    return env


@functools.cache
def _group_vars_all() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path in sorted((REPO / "group_vars" / "all").glob("*.yml")):
        out.update(_yaml(path) or {})
    return out


def _literal_defaults(role: str) -> dict[str, Any]:
    """group_vars/all and the role's defaults, Jinja rendered with them (a value that names a
    host's or the vault's variable renders empty): what a unit's Jinja may refer to."""
    path = ROLES / role / "defaults" / "main.yml"
    values = {**_group_vars_all(), **((_yaml(path) or {}) if path.exists() else {})}
    for _ in range(3):
        values = {k: _try_render(v, values) for k, v in values.items()}
    return values


def _try_render(value: Any, values: dict[str, Any]) -> Any:
    """The value rendered, or left as it is where it needs more than plain Jinja (Ansible's
    filters, lookups)."""
    if "{{" not in str(value):
        return value
    try:
        return _render(value, values)
    except jinja2.TemplateError:
        return value


def _render(value: Any, values: dict[str, Any]) -> Any:
    """Jinja strings of a task's vars rendered with ``values`` (Ansible keeps an expression's
    native type: a list of paths, of [Unit] lines)."""
    env = _env()
    if isinstance(value, str):
        text = env.from_string(value).render(**values)
        if text.startswith("["):
            try:
                return ast.literal_eval(text)
            except (ValueError, SyntaxError):
                return text
        return text
    if isinstance(value, dict):
        return {k: _render(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v, values) for v in value]
    return value


def _walk(tasks: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for task in tasks if isinstance(tasks, list) else []:
        if isinstance(task, dict):
            out.append(task)
            for key in ("block", "rescue", "always"):
                out += _walk(task.get(key))
    return out


def _role_tasks(role: str) -> list[dict[str, Any]]:
    return [t for p in sorted((ROLES / role / "tasks").glob("*.yml")) for t in _walk(_yaml(p))]


def _dropin_tasks() -> list[tuple[str, str]]:
    """(role, task name) of every task that renders templates/hardening.conf.j2."""
    return [
        (role.name, str(task["name"]))
        for role in sorted(ROLES.iterdir())
        if role.name not in LAB_ROLES and (role / "tasks").is_dir()
        for task in _role_tasks(role.name)
        if "unde_dropin" in (task.get("vars") or {})
    ]


def _dropin(role: str, task_name: str, **values: Any) -> str:
    """templates/hardening.conf.j2 with the ``unde_dropin`` of the named task of the role (its
    Jinja rendered with the role's plain defaults and ``values``)."""
    found = [t for t in _role_tasks(role) if t.get("name") == task_name and "vars" in t]
    assert len(found) == 1, f"roles/{role}: task {task_name!r} not found once"
    dropin = _render(found[0]["vars"]["unde_dropin"], {**_literal_defaults(role), **values})
    return (
        _env().get_template("hardening.conf.j2").render(unde_dropin=dropin, ansible_managed="Ansible managed")
    )


def _role_template(role: str, name: str, **values: Any) -> str:
    text = (ROLES / role / "templates" / name).read_text()
    return (
        _env()
        .from_string(text)
        .render(ansible_managed="Ansible managed", **{**_literal_defaults(role), **values})
    )


def _app_roles() -> list[str]:
    """The app roles: those whose vars name the units roles/unde_app renders."""
    return sorted(
        p.parent.parent.name
        for p in ROLES.glob("*/vars/main.yml")
        if {"unde_app_units", "unde_app_timers"} & set(_yaml(p) or {})
    )


def _app_units() -> dict[str, str]:
    """templates/app.service.j2 for every service and timer service of every app role, as
    roles/unde_app renders them (its __unit), the role's values (memory, paths, environment)
    rendered with the role's defaults."""
    out = {}
    for role in _app_roles():
        app_vars = _yaml(ROLES / role / "vars" / "main.yml")
        values = {**_literal_defaults(role), "unde_app_name": role}
        kinds: tuple[tuple[str, dict[str, str]], ...] = (
            ("unde_app_units", {}),
            ("unde_app_timers", {"type": "oneshot", "restart": "no"}),
        )
        for kind, fixed in kinds:
            for item in app_vars.get(kind) or []:
                unit = {"type": "exec", **_render(item, values), **fixed}
                out[f"unde-{unit['name']}"] = (
                    _env()
                    .get_template("app.service.j2")
                    .render(
                        __unit=unit,
                        unde_app_name=role,
                        __unde_app_user=f"unde-{role.replace('_', '-')}",
                        __unde_app_dir=f"/opt/unde/{role}",
                        __unde_app_state_dir=f"/var/lib/unde/{role}",
                        ansible_managed="Ansible managed",
                    )
                )
    return out


PG_PATHS = ["/var/lib/postgresql/17/main", "/var/lib/postgresql", "/run/postgresql", "/var/log/postgresql"]
PGBACKREST = {
    "pgbackrest_stanza": "unde-production",
    "pgbackrest_kind": "production",
    "pgbackrest_metrics_group": "unde-textfile",
    "pgbackrest_metrics_textfile_dir": "/var/lib/prometheus/node-exporter",
    "__pgbackrest_runner": "/usr/local/lib/unde-backup/unde_backup.py",
    "__pgbackrest_runner_args": "--stanza=unde-production",
    "__pgbackrest_repo_roles": {"storagebox": 1},
    "__pgbackrest_rw_paths": ["/var/lib/pgbackrest", "/var/log/pgbackrest"],
    "__pgbackrest_shard": False,
}
# The backup jobs' shapes (roles/pgbackrest/vars/main.yml __pgbackrest_jobs): one with a second step.
BACKUP_JOBS = {
    "full": {"what": "full backup", "args": "backup --type=full --repo=1", "calendar": "Sun 02:00"},
    "base": {
        "what": "base backup",
        "args": "backup --repo=1",
        "post": "gfs-expire --repo=1",
        "calendar": "daily",
    },
}


def _pgbackrest_cluster_dropin() -> str:
    task = next(
        t
        for t in _role_tasks("pgbackrest")
        if str(t.get("name", "")).startswith("Let PostgreSQL's archive_command")
    )
    text = task["ansible.builtin.copy"]["content"]
    values = {"__pgbackrest_lib": "/var/lib/pgbackrest", "__pgbackrest_log": "/var/log/pgbackrest"}
    return str(_render(text, values))


@functools.cache
def _units() -> dict[str, str]:
    """Every service the roles install or harden, rendered: name -> unit or drop-in text."""
    units = {
        "redis-server": _dropin(
            "redis", "Harden the redis-server unit", __redis_service="redis-server", redis_memory_max="3584M"
        ),
        "redis_exporter": _dropin(
            "redis", "Harden the redis_exporter unit", __redis_exporter_service="redis_exporter"
        ),
        # with roles/pgbackrest's drop-in on it (archive_command's lock and log directories)
        "postgresql@17-main": _dropin(
            "postgresql",
            "Harden the cluster unit",
            __postgresql_read_write_paths=PG_PATHS,
            __postgresql_memory_max="4G",
            __postgresql_data_dir=PG_PATHS[0],
            __postgresql_wal_dir="",
        )
        + _pgbackrest_cluster_dropin(),
        "patroni": _dropin(
            "patroni",
            "Harden patroni.service",
            __patroni_pg={"read_write_paths": PG_PATHS, "data_dir": PG_PATHS[0], "wal_dir": ""},
            patroni_memory_max="90%",
        ),
        "etcd": _dropin("etcd", "Harden etcd.service"),
        "pgbouncer": _dropin(
            "pgbouncer",
            "Harden the pgbouncer unit",
            __pgbouncer_service_name="pgbouncer",
            __pgbouncer_socket_dir="/var/run/postgresql",
        ),
        "prometheus-node-exporter": _dropin(
            "node_exporter",
            "Harden the node_exporter unit",
            __node_exporter_service="prometheus-node-exporter",
        ),
        "prometheus-postgres-exporter": _dropin(
            "postgres_exporter",
            "Harden the postgres_exporter unit",
            __postgres_exporter_service="prometheus-postgres-exporter",
        ),
        "nginx": _dropin(
            "nginx",
            "Harden the nginx unit",
            __nginx_service="nginx",
            __nginx_user="www-data",
            __nginx_group="www-data",
            __nginx_log_dir="/var/log/nginx",
            __nginx_state_dir="/var/lib/nginx",
            __nginx_runtime_directory="nginx",
            __nginx_pid="/run/nginx/nginx.pid",
        ),
        "patroni-routing": _role_template(
            "patroni",
            "patroni-routing.service.j2",
            __patroni_routing_script="/usr/local/libexec/unde/patroni-routing",
        ),
        "unde-backup-metrics": _role_template("pgbackrest", "unde-backup-metrics.service.j2", **PGBACKREST),
        **{
            f"unde-backup-{job}": _role_template(
                "pgbackrest", "unde-backup.service.j2", __job=spec, **PGBACKREST
            )
            for job, spec in BACKUP_JOBS.items()
        },
        **_app_units(),
    }
    return units


# Where each measured unit comes from (the coverage check below compares it with the roles).
DROPIN_UNITS = {
    ("redis", "Harden the redis-server unit"): "redis-server",
    ("redis", "Harden the redis_exporter unit"): "redis_exporter",
    ("postgresql", "Harden the cluster unit"): "postgresql@17-main",
    ("patroni", "Harden patroni.service"): "patroni",
    ("etcd", "Harden etcd.service"): "etcd",
    ("pgbouncer", "Harden the pgbouncer unit"): "pgbouncer",
    ("node_exporter", "Harden the node_exporter unit"): "prometheus-node-exporter",
    ("postgres_exporter", "Harden the postgres_exporter unit"): "prometheus-postgres-exporter",
    ("nginx", "Harden the nginx unit"): "nginx",
}
SERVICE_TEMPLATES = {
    "patroni/patroni-routing.service.j2": ["patroni-routing"],
    "pgbackrest/unde-backup-metrics.service.j2": ["unde-backup-metrics"],
    "pgbackrest/unde-backup.service.j2": [f"unde-backup-{job}" for job in BACKUP_JOBS],
}
# The package's User= under a drop-in (the drop-in of the PostgreSQL cluster sets its own).
PACKAGE_USER = {
    "redis-server": "redis",
    "redis_exporter": "prometheus",
    "patroni": "postgres",
    "etcd": "etcd",
    "pgbouncer": "postgres",
    "prometheus-node-exporter": "prometheus",
    "prometheus-postgres-exporter": "prometheus",
}


def test_every_unit_the_roles_install_is_measured() -> None:
    assert sorted(DROPIN_UNITS) == sorted(_dropin_tasks()), "a hardening drop-in task is not measured"
    templates = sorted(
        f"{p.parent.parent.name}/{p.name}"
        for p in ROLES.glob("*/templates/*.service.j2")
        if p.parent.parent.name not in LAB_ROLES
    )
    assert templates == sorted(SERVICE_TEMPLATES), "a role's unit template is not measured"
    apps = {name for name in _units() if name.startswith("unde-") and "# unde_app: " in _units()[name]}
    expected = {
        f"unde-{item['name']}"
        for role in _app_roles()
        for kind in ("unde_app_units", "unde_app_timers")
        for item in _yaml(ROLES / role / "vars" / "main.yml").get(kind) or []
    }
    assert apps == expected and len(_app_roles()) >= 13
    assert set(_units()) == {
        *DROPIN_UNITS.values(),
        *(u for units in SERVICE_TEMPLATES.values() for u in units),
        *apps,
    }


def _directives(text: str) -> dict[str, str]:
    """The [Service] directives of a unit or drop-in (last one wins, as systemd reads them; the
    system call filter's lines are joined, as systemd combines them)."""
    out: dict[str, str] = {}
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out[key] = f"{out[key]} | {value}" if key == "SystemCallFilter" and key in out else value
    return out


# Units whose processes run as postgres (or start PostgreSQL): RemoveIPC= would remove its shared memory.
POSTGRES_USER = {"postgresql@17-main", "patroni", "patroni-routing", "pgbouncer", "unde-backup-metrics"} | {
    f"unde-backup-{job}" for job in BACKUP_JOBS
}
# No MemoryDenyWriteExecute=: PostgreSQL's LLVM JIT (the cluster, and Patroni's child PostgreSQL);
# the apps' cffi callbacks and native wheels (templates/app.service.j2).
WRITABLE_EXECUTABLE = {"postgresql@17-main", "patroni"}
# Also deny @privileged (set*id, chown, capset, ...) and @resources (rlimits, scheduler, NUMA):
# PostgreSQL, Patroni and the backups run as postgres and need none of them; node_exporter only reads.
NO_PRIVILEGED_CALLS = {"postgresql@17-main", "patroni", "prometheus-node-exporter"} | {
    f"unde-backup-{job}" for job in BACKUP_JOBS
}


# Directives of STRICT a unit sets otherwise (the role's drop-in says why): node_exporter's
# filesystem collector statfs()es mount points under /home and reads the host's mounts in
# /proc/1/mountinfo; its timex collector calls adjtimex(), which ProtectClock='s @clock filter
# denies (no capability, so it cannot set the clock anyway).
RELAXED = {
    # nginx binds 80/443 as www-data: the one capability it keeps
    "nginx": {"CapabilityBoundingSet": "CAP_NET_BIND_SERVICE", "AmbientCapabilities": "CAP_NET_BIND_SERVICE"},
    "prometheus-node-exporter": {
        "ProtectHome": "read-only",
        "ProtectClock": "<unset>",
        "ProtectProc": "<unset>",
    },
}


@pytest.mark.parametrize("unit", sorted(_units()))
def test_unit_has_the_strict_sandbox(unit: str) -> None:
    d = _directives(_units()[unit])
    relaxed = RELAXED.get(unit, {})
    missing = [
        line
        for line in STRICT
        if f"{line.split('=', 1)[0]}={d.get(line.split('=', 1)[0], '<unset>')}"
        != f"{line.split('=', 1)[0]}={relaxed.get(line.split('=', 1)[0], line.split('=', 1)[1])}"
    ]
    assert not missing, f"{unit} lacks {missing}"
    assert d.get("MemoryMax"), f"{unit}: no MemoryMax"
    families = d.get("RestrictAddressFamilies", "").split()
    assert families and set(families) <= {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}, unit
    assert d.get("SystemCallFilter", "").startswith("@system-service"), unit
    assert d.get("SystemCallErrorNumber") == "EPERM", unit
    if unit in NO_PRIVILEGED_CALLS:
        assert d["SystemCallFilter"] == "@system-service | ~@privileged @resources", unit
    assert "User=root" not in _units()[unit], unit
    if unit in POSTGRES_USER:
        assert "RemoveIPC" not in d, f"{unit}: RemoveIPC= would remove PostgreSQL's shared memory"
    else:
        assert d.get("RemoveIPC") == "yes", unit
    if unit in WRITABLE_EXECUTABLE or "# unde_app: " in _units()[unit]:
        assert "MemoryDenyWriteExecute" not in d, unit
    else:
        assert d.get("MemoryDenyWriteExecute") == "yes", unit
    assert d.get("UMask") in {"0077", "0007", "0027"}, unit


def test_the_cluster_unit_runs_as_postgres() -> None:
    # pg_ctlcluster as the cluster owner: no capability needed to change to postgres
    d = _directives(_units()["postgresql@17-main"])
    assert (d["User"], d["Group"], d["CapabilityBoundingSet"]) == ("postgres", "postgres", "")


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
    (ExecStart, the package's User=). This host has none of the services' users: ``daemon``
    stands in, which scores like any other unprivileged user."""
    text = _units()[unit]
    if not re.search(r"^ExecStart=", text, re.M):
        user = PACKAGE_USER.get(unit)
        base = "[Unit]\nDescription=stand-in\n[Service]\nExecStart=/usr/bin/true\n"
        base += f"User={user}\n" if user else ""
        merged = _sections(base)
        for section, lines in _sections(text).items():
            merged.setdefault(section, []).extend(lines)
        text = "".join(
            f"{section}\n" + "".join(f"{line}\n" for line in lines) for section, lines in merged.items()
        )
    text = re.sub(r"^(User|Group|SupplementaryGroups)=\S+$", r"\1=daemon", text, flags=re.M)
    # the programs are not installed here (an app's venv, a role's script): /usr/bin/true stands in
    return re.sub(
        r"^(Exec\w+=[-+!@:]*)(/\S+)",
        lambda m: m.group(1) + (m.group(2) if Path(m.group(2)).exists() else "/usr/bin/true"),
        text,
        flags=re.M,
    )


SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


@functools.cache
def _analyze(unit: str) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    """(verify, security --offline) of the complete unit, written under its own name."""
    assert SYSTEMD_ANALYZE
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / f"{unit.replace('@', '-')}.service"
        path.write_text(_complete_unit(unit))
        verify = subprocess.run(
            [SYSTEMD_ANALYZE, "verify", "--man=no", str(path)], capture_output=True, text=True, check=False
        )
        security = subprocess.run(
            [SYSTEMD_ANALYZE, "security", "--offline=yes", "--no-pager", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
    return verify, security


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("unit", sorted(_units()))
def test_unit_passes_systemd_analyze_verify(unit: str) -> None:
    verify, _ = _analyze(unit)
    problems = [
        line
        for line in (verify.stdout + verify.stderr).splitlines()
        if line.strip() and "Failed to " not in line and "bus" not in line.lower()
    ]
    assert verify.returncode == 0 and not problems, verify.stdout + verify.stderr


def _timers() -> dict[str, str]:
    """Every timer the roles install: name -> text (its service is the unit of the same name)."""
    out = {
        "patroni-routing": _role_template("patroni", "patroni-routing.timer.j2"),
        "unde-backup-metrics": _role_template("pgbackrest", "unde-backup-metrics.timer.j2", **PGBACKREST),
        **{
            f"unde-backup-{job}": _role_template(
                "pgbackrest", "unde-backup.timer.j2", __job=spec, **PGBACKREST
            )
            for job, spec in BACKUP_JOBS.items()
        },
    }
    for role in _app_roles():
        values = {**_literal_defaults(role), "unde_app_name": role}
        for item in _yaml(ROLES / role / "vars" / "main.yml").get("unde_app_timers") or []:
            timer = (
                _env()
                .get_template("app.timer.j2")
                .render(item=_render(item, values), unde_app_name=role, ansible_managed="Ansible managed")
            )
            out[f"unde-{item['name']}"] = timer
    return out


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
def test_timers_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    timers = _timers()
    assert {"unde-persona-cleanup", "patroni-routing", "unde-backup-full"} <= set(timers)
    templates = sorted(
        f"{p.parent.parent.name}/{p.name}"
        for p in ROLES.glob("*/templates/*.timer.j2")
        if p.parent.parent.name not in LAB_ROLES
    )
    assert templates == [
        "patroni/patroni-routing.timer.j2",
        "pgbackrest/unde-backup-metrics.timer.j2",
        "pgbackrest/unde-backup.timer.j2",
    ], "a role's timer template is not checked"
    for name, text in sorted(timers.items()):
        directory = tmp_path / name
        directory.mkdir()
        (directory / f"{name}.service").write_text(_complete_unit(name))
        (directory / f"{name}.timer").write_text(text)
        verify = subprocess.run(
            [SYSTEMD_ANALYZE, "verify", "--man=no", str(directory / f"{name}.timer")],  # type: ignore[list-item]
            capture_output=True,
            text=True,
            check=False,
        )
        problems = [
            line
            for line in (verify.stdout + verify.stderr).splitlines()
            if line.strip() and "Failed to " not in line and "bus" not in line.lower()
        ]
        assert verify.returncode == 0 and not problems, f"{name}.timer: {verify.stdout}{verify.stderr}"


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
def test_every_unit_is_exposed_at_most_ok() -> None:
    """``systemd-analyze security`` of every unit: a table (``pytest -s`` shows it) and no unit
    over unit_security's bound (2.0, "OK")."""
    rows: list[tuple[str, float | None]] = []
    costs = {}
    for unit in sorted(_units()):
        _, security = _analyze(unit)
        value = unit_security.exposure(security.stdout)
        if value is None:
            pytest.skip(f"systemd-analyze security --offline unavailable: {security.stderr.strip()[:200]}")
        rows.append((unit, value))
        costs[unit] = unit_security.findings(security.stdout)
    print("\n" + unit_security.table(rows))
    bad = unit_security.over(rows)
    assert not bad, "\n".join(f"{line}: {', '.join(costs[line.split(':')[0]])}" for line in bad)


def test_exposure_parsing() -> None:
    text = (
        "  NAME  DESCRIPTION  EXPOSURE\n"
        "✗ PrivateNetwork=   Service has access to the host's network          0.5\n"
        "✓ ProtectSystem=    Service has strict read-only access\n"
        "✗ ProcSubset=       Service has full access to non-process /proc files 0.1\n"
        "\n→ Overall exposure level for patroni.service: 1.3 OK 🙂\n"
    )
    assert unit_security.exposure(text) == 1.3
    assert unit_security.findings(text) == ["PrivateNetwork= 0.5", "ProcSubset= 0.1"]
    assert unit_security.exposure("Failed to connect to bus") is None
    assert unit_security.over([("a.service", 1.9), ("b.service", 2.1), ("c.service", None)]) == [
        "b.service: 2.1 > 2.0",
        "c.service: not measured",
    ]
    assert "OVER" in unit_security.table([("b.service", 2.1)])


@pytest.mark.skipif(shutil.which("sh") is None, reason="no sh")
def test_the_host_listing_finds_unde_units(tmp_path: Path) -> None:
    """unit_security.LIST_UNITS on a fake /etc/systemd/system: the roles' units and drop-ins,
    not the lab's stand-ins nor the packages' own units."""
    root = tmp_path / "etc" / "systemd" / "system"
    (root / "patroni.service.d").mkdir(parents=True)
    (root / "patroni.service.d" / "10-unde-hardening.conf").write_text("[Service]\n")
    (root / "postgresql@17-main.service.d").mkdir()
    (root / "postgresql@17-main.service.d" / "60-unde-pgbackrest.conf").write_text("[Service]\n")
    (root / "other.service.d").mkdir()
    (root / "other.service.d" / "override.conf").write_text("[Service]\n")
    (root / "unde-scraper-worker.service").write_text(_units()["unde-scraper-worker"])
    (root / "lab-objstore.service").write_text("# Ansible managed\n[Service]\n")
    (root / "sshd.service").write_text("[Service]\n")
    script = unit_security.LIST_UNITS.replace("/etc/systemd/system", str(root)).replace(
        '$(systemctl show -p Type --value "$unit")', "simple"
    )
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:-1] == [
        "patroni.service simple",
        "postgresql@17-main.service simple",
        "unde-scraper-worker.service simple",
    ]


class _Result:
    def __init__(self, stdout: str = "", rc: int = 0) -> None:
        self.stdout, self.stderr, self.rc = stdout, "", rc


class _LabHost:
    """Stands in for a lab host's testinfra host: the listing and unit states as given, and the
    real ``systemd-analyze security`` of the rendered units, measured here offline."""

    def __init__(self, units: dict[str, tuple[str, str]], timers: dict[str, str]) -> None:
        self.units, self.timers = units, timers

    def run(self, command: str, *args: str) -> _Result:
        if command.startswith("sh -c"):
            return _Result("".join(f"{u} {kind}\n" for u, (kind, _) in self.units.items()))
        if command.startswith("systemctl show"):
            state = {**{u: s for u, (_, s) in self.units.items()}, **self.timers}[args[0]]
            return _Result(state)
        if command.startswith("test -f"):
            return _Result(rc=0 if args[0] in self.timers else 1)
        if command.startswith("systemd-analyze security"):
            return _analyze(args[0].removesuffix(".service"))[1]  # type: ignore[return-value]
        return _Result("(journal)")


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
def test_host_report_names_what_is_down_or_over() -> None:
    running = "ActiveState=active\nSubState=running\nResult=success\n"
    host = _LabHost(
        {
            "patroni.service": ("notify", running),
            "patroni-routing.service": ("oneshot", "ActiveState=inactive\nSubState=dead\nResult=success\n"),
            "etcd.service": ("notify", "ActiveState=failed\nSubState=failed\nResult=exit-code\n"),
        },
        {"patroni-routing.timer": "ActiveState=inactive\nSubState=dead\nResult=success\n"},
    )
    table, problems = unit_security.host_report(host, "local-shard-0")
    assert "patroni.service" in table and " 1.3  2.0 ok" in table
    assert sorted(p.split(" is ")[0] for p in problems) == [
        "local-shard-0: etcd.service (notify)",
        "local-shard-0: patroni-routing.timer, which starts patroni-routing.service,",
    ]


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
    nft_check(text, tmp_path)


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
