"""Unit tests of the postgresql role without a server: ``pytest roles/postgresql/tests``.

* the filters of ``filter_plugins/unde_postgresql.py``;
* the role's templates rendered by Ansible's own templating engine with the role's defaults and
  vars and the real lab inventory (``inventories/lab/hosts.yml`` with its group_vars), for lab
  hosts with host variable overrides: this is where the **tmpfs storage profile** is tested (the
  molecule scenario ``data`` converges local-shard-0 with its inventory profile, nvme; kernel
  settings cannot be applied inside the lab's containers anyway);
* ``meta/argument_specs.yml`` of the postgresql, pgbouncer and postgres_exporter roles against
  their ``defaults/main.yml``.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from ansible.inventory.manager import InventoryManager  # type: ignore[import-untyped]
from ansible.parsing.dataloader import DataLoader  # type: ignore[import-untyped]
from ansible.plugins.loader import add_all_plugin_dirs, init_plugin_loader  # type: ignore[import-untyped]
from ansible.template import Templar, trust_as_template  # type: ignore[import-untyped]
from ansible.vars.hostvars import HostVars  # type: ignore[import-untyped]
from ansible.vars.manager import VariableManager  # type: ignore[import-untyped]
from unde_testkit.loaders import load_module

ROLE = Path(__file__).resolve().parents[1]
REPO = ROLE.parents[1]
LAB_INVENTORY = REPO / "inventories" / "lab" / "hosts.yml"


def _load_filters() -> ModuleType:
    return load_module("unde_postgresql", ROLE / "filter_plugins" / "unde_postgresql.py")


pg = _load_filters()


# ------------------------------------------------------------------------------------- filters


@pytest.mark.parametrize(
    ("value", "expected"),
    [("8GB", 8 * 1024**3), ("512MB", 512 * 1024**2), ("64kB", 65536), (" 1 TB ", 1024**4), (16, 16 * 8192)],
)
def test_size_bytes(value: Any, expected: int) -> None:
    assert pg.unde_pg_size_bytes(value) == expected


@pytest.mark.parametrize("value", ["8G", "lots", "", True, "1.5.2MB"])
def test_size_bytes_refuses_what_postgresql_would(value: Any) -> None:
    with pytest.raises(pg.PostgresqlFilterError):
        pg.unde_pg_size_bytes(value)


def test_hugepages_for_the_spec_shard() -> None:
    """Spec 02 §14: shared_buffers 32GB -> vm.nr_hugepages = 17000."""
    assert pg.unde_pg_hugepages("32GB") == 17000
    # 16384 pages hold the buffers alone; the overhead and the rounding come on top.
    assert pg.unde_pg_hugepages("32GB", overhead=0, round_to=1) == 16384
    assert pg.unde_pg_hugepages("8GB") == 5000
    assert pg.unde_pg_hugepages("32GB", hugepage_kb=1024 * 1024, round_to=1) == 33


def test_setting_rendering() -> None:
    assert pg.unde_pg_setting(True) == "on"
    assert pg.unde_pg_setting(False) == "off"
    assert pg.unde_pg_setting(100) == "100"
    assert pg.unde_pg_setting(0.9) == "0.9"
    assert pg.unde_pg_setting("8GB") == "'8GB'"
    assert pg.unde_pg_setting("it's") == "'it''s'"
    with pytest.raises(pg.PostgresqlFilterError):
        pg.unde_pg_setting("a\nb")


GROUPS = {"app": ["web1"], "batch": ["b1", "b2"], "none": []}
HOSTVARS = {
    "web1": {"private_ip": "10.2.0.2", "wg_tunnel_local": "10.3.0.1"},
    "b1": {"private_ip": "10.1.0.20"},
    "b2": {"private_ip": "10.1.0.3"},
}
DBS = [
    {
        "name": "db",
        "users": [
            {"name": "rw", "credential": "unde_rw", "clients": ["app", "batch"]},
            {"name": "ro", "credential": "unde_ro", "clients": []},
        ],
    }
]


def test_access_rules() -> None:
    rules = pg.unde_pg_access(DBS, GROUPS, HOSTVARS, ["private_ip", "wg_tunnel_local"], ["127.0.0.1"])
    assert [(r["database"], r["user"], r["group_role"]) for r in rules] == [
        ("db", "ro", "db_ro"),
        ("db", "rw", "db_rw"),
    ]
    ro, rw = rules
    assert ro["addresses"] == ["127.0.0.1/32"]
    # sorted numerically, not as text (10.1.0.3 before 10.1.0.20)
    assert rw["addresses"] == ["10.1.0.3/32", "10.1.0.20/32", "10.2.0.2/32", "10.3.0.1/32", "127.0.0.1/32"]
    assert rw["hosts"] == ["b1", "b2", "web1"]
    assert rw["credential"] == "unde_rw"


def test_access_rules_refuse_unknown_groups_and_duplicates() -> None:
    bad_group = [{"name": "db", "users": [{"name": "u", "credential": "c", "clients": ["nope"]}]}]
    with pytest.raises(pg.PostgresqlFilterError, match="nope"):
        pg.unde_pg_access(bad_group, GROUPS, HOSTVARS)
    twice = [{"name": "db", "users": [{"name": "u", "credential": "c", "clients": []}] * 2}]
    with pytest.raises(pg.PostgresqlFilterError, match="twice"):
        pg.unde_pg_access(twice, GROUPS, HOSTVARS)
    no_credential = [{"name": "db", "users": [{"name": "u", "clients": []}]}]
    with pytest.raises(pg.PostgresqlFilterError, match="credential"):
        pg.unde_pg_access(no_credential, GROUPS, HOSTVARS)
    with pytest.raises(pg.PostgresqlFilterError, match="none of"):
        pg.unde_pg_addresses(["web1"], {"web1": {}}, ["private_ip"])


# ------------------------------------------------------------------ templates (lab inventory)


@functools.cache
def _inventory() -> tuple[Any, Any, Any]:

    init_plugin_loader()
    add_all_plugin_dirs(str(ROLE))
    loader = DataLoader()
    inventory = InventoryManager(loader=loader, sources=[str(LAB_INVENTORY)])
    return loader, inventory, VariableManager(loader=loader, inventory=inventory)


class Rendered:
    """The role's variables for one lab host (defaults < inventory < role vars < overrides)."""

    def __init__(self, host: str, **overrides: Any) -> None:

        loader, inventory, variables = _inventory()
        host_vars = variables.get_vars(host=inventory.get_host(host), include_hostvars=True)
        host_vars["hostvars"] = HostVars(inventory=inventory, variable_manager=variables, loader=loader)
        data = {
            **loader.load_from_file(str(ROLE / "defaults" / "main.yml"), trusted_as_template=True),
            **host_vars,
            **loader.load_from_file(str(ROLE / "vars" / "main.yml"), trusted_as_template=True),
            **loader.load_from_file(str(ROLE / "vars" / "Debian.yml"), trusted_as_template=True),
            "ansible_facts": {"virtualization_role": "host", "virtualization_type": "kvm"},
            "ansible_managed": "Ansible managed",
            "role_path": str(ROLE),
            "__postgresql_postgres_gid": 114,
            **overrides,
        }
        self.templar = Templar(loader=loader, variables=data)
        self.loader, self.data = loader, data

    def value(self, expression: str) -> Any:

        return self.templar.template(trust_as_template("{{ " + expression + " }}"))

    def template(self, name: str) -> str:

        text = (ROLE / "templates" / name).read_text()
        return str(self.templar.template(trust_as_template(text)))

    def dropin(self) -> str:
        """The cluster unit's hardening drop-in: the shared templates/hardening.conf.j2 with the
        ``unde_dropin`` of the role's task, as the template module renders it."""
        tasks = self.loader.load_from_file(str(ROLE / "tasks" / "configure.yml"), trusted_as_template=True)
        found = [
            task
            for item in tasks
            for task in [item, *item.get("block", [])]
            if str(task.get("ansible.builtin.template", {}).get("src", "")).endswith("/hardening.conf.j2")
        ]
        shared = REPO / "templates"
        templar = self.templar.copy_with_new_env(
            searchpath=[str(shared)],
            available_variables={**self.data, "unde_dropin": found[0]["vars"]["unde_dropin"]},
        )
        return str(templar.template(trust_as_template((shared / "hardening.conf.j2").read_text())))

    def settings(self) -> dict[str, str]:
        """conf.d/50-unde.conf as key -> value (quotes kept), comments dropped."""
        return _assignments(self.template("postgresql.conf.j2"))


def _assignments(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        body = line.split("  #", 1)[0].strip()
        if body and not body.startswith(("#", ";", "[")) and "=" in body:
            key, value = (part.strip() for part in body.split("=", 1))
            out[key] = value
    return out


def _hba(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_tmpfs_profile_renders_the_spec_values() -> None:
    """Spec 02 §14 on local-shard-0 with shard_storage_profile=tmpfs, outside the lab."""
    r = Rendered("local-shard-0", shard_storage_profile="tmpfs", unde_lab=False)
    assert r.value("__postgresql_profile") == "shard_tmpfs"
    settings = r.settings()
    expected = {
        "shared_buffers": "'32GB'",
        "effective_cache_size": "'140GB'",
        "work_mem": "'40MB'",
        "maintenance_work_mem": "'4GB'",
        "wal_buffers": "'64MB'",
        "random_page_cost": "0.01",
        "seq_page_cost": "0.01",
        "effective_io_concurrency": "0",
        "synchronous_commit": "'local'",
        "wal_level": "'replica'",
        "wal_keep_size": "'8GB'",
        "max_wal_size": "'4GB'",
        "checkpoint_timeout": "'15min'",
        "huge_pages": "'on'",
        "max_connections": "200",
        "password_encryption": "'scram-sha-256'",
        "listen_addresses": "'127.0.0.1,198.19.0.10'",
        "port": "5432",
    }
    assert {k: settings.get(k) for k in expected} == expected
    sysctl = _assignments(r.template("sysctl.conf.j2"))
    assert sysctl == {"vm.nr_hugepages": "17000", "vm.hugetlb_shm_group": "114", "vm.swappiness": "1"}
    argv = r.value("__postgresql_createcluster_argv")
    assert argv[argv.index("--datadir") + 1] == "/pgdata"
    assert "--waldir=/nvme/pg_wal" in argv
    assert "--data-checksums" in argv
    assert r.value("__postgresql_tmpfs_size") == "160G"
    unit = r.dropin()
    assert "RequiresMountsFor=/pgdata /nvme/pg_wal" in unit
    rw = next(line for line in unit.splitlines() if line.startswith("ReadWritePaths="))
    writable = set(rw.split("=", 1)[1].split())
    assert {"/pgdata", "/nvme/pg_wal", "/run/postgresql", "/var/log/postgresql"} <= writable
    assert "MemoryMax=90%" in unit


def test_tmpfs_profile_in_the_lab_is_scaled_down() -> None:
    r = Rendered("local-shard-0", shard_storage_profile="tmpfs")
    text = r.template("postgresql.conf.j2")
    settings = _assignments(text)
    assert settings["shared_buffers"] == "'32MB'"
    assert settings["huge_pages"] == "'try'"
    assert settings["random_page_cost"] == "0.01"  # the profile's planner settings stay
    assert re.search(r"^shared_buffers = '32MB'  # profile: '32GB'$", text, re.M)
    assert r.value("__postgresql_tmpfs_size") == "256M"
    assert "MemoryMax=512M" in r.dropin()
    # huge pages for the lab's shared_buffers: rendered, never applied in a container
    assert _assignments(r.template("sysctl.conf.j2"))["vm.nr_hugepages"] == "1000"


def test_nvme_profile_renders_spec_03() -> None:
    r = Rendered("local-shard-0", unde_lab=False)
    assert r.value("__postgresql_profile") == "shard_nvme"
    settings = r.settings()
    expected = {
        "shared_buffers": "'8GB'",
        "effective_cache_size": "'24GB'",
        "work_mem": "'40MB'",
        "maintenance_work_mem": "'2GB'",
        "random_page_cost": "1.1",
        "effective_io_concurrency": "200",
        "wal_keep_size": "'4GB'",
        "checkpoint_timeout": "'10min'",
        "max_wal_size": "'2GB'",
        "max_connections": "100",
    }
    assert {k: settings.get(k) for k in expected} == expected
    assert "huge_pages" not in settings
    argv = r.value("__postgresql_createcluster_argv")
    assert argv[argv.index("--datadir") + 1] == "/var/lib/postgresql/17/main"
    assert not any(a.startswith("--waldir") for a in argv)


def test_staging_profile_and_access() -> None:
    r = Rendered("staging-db")
    assert r.value("postgresql_server_kind") == "staging"
    settings = r.settings()
    assert (settings["wal_level"], settings["max_wal_senders"], settings["synchronous_commit"]) == (
        "'minimal'",
        "0",
        "'off'",
    )
    rules = _hba(r.template("pg_hba.conf.j2"))
    assert rules[0] == ["local", "all", "postgres", "peer"]
    assert ["local", "unde_staging", "postgres_exporter", "peer", "map=unde_monitoring"] in rules
    assert ["host", "all", "admin", "127.0.0.1/32", "scram-sha-256"] in rules
    # loopback (PgBouncer) is host, every network address hostssl (server TLS)
    host_rules = [x for x in rules if x[0] in ("host", "hostssl") and x[2] != "admin"]
    assert all((x[0] == "host") == x[3].startswith("127.") for x in host_rules)
    assert all(x[1] == "unde_staging" and x[4] == "scram-sha-256" for x in host_rules)
    by_user: dict[str, set[str]] = {}
    for x in host_rules:
        by_user.setdefault(x[2], set()).add(x[3])
    assert by_user == {
        "apify": {"198.18.0.9/32", "127.0.0.1/32"},
        "collage": {"198.18.0.16/32", "127.0.0.1/32"},
        "downloader": {"198.18.0.10/32", "127.0.0.1/32"},
        "recognition": {"198.18.0.14/32", "127.0.0.1/32"},
        "scraper": {"198.18.0.3/32", "127.0.0.1/32"},
        "ximilar": {"198.18.0.11/32", "127.0.0.1/32"},
    }
    assert not any("replication" in x for x in rules)
    assert sorted(r.value("__postgresql_credentials")) == sorted(
        f"unde_staging_db_{u}_password"
        for u in ("apify", "collage", "downloader", "recognition", "scraper", "ximilar", "admin")
    )


def test_shard_replication_only_from_the_partner() -> None:
    r = Rendered("local-shard-0")
    rules = _hba(r.template("pg_hba.conf.j2"))
    assert [x for x in rules if x[1] == "replication"] == [
        ["hostssl", "replication", "replicator", "198.18.1.10/32", "scram-sha-256"]
    ]
    readonly = [x for x in rules if x[2] == "readonly"]
    assert readonly == [["host", "unde_shard", "readonly", "127.0.0.1/32", "scram-sha-256"]]
    persona = {x[3] for x in rules if x[2] == "persona_rw"}
    assert persona == {"127.0.0.1/32", "198.19.0.21/32", "198.19.68.1/32"}  # private + WireGuard tunnel
    assert "unde_replication_password" in r.value("__postgresql_credentials")


def test_shard_replica_runs_no_cluster_and_needs_no_credential() -> None:
    r = Rendered("shard-replica-0")
    assert r.value("postgresql_server_kind") == "shard_replica"
    assert r.value("__postgresql_runs_cluster") is False
    assert r.value("__postgresql_credentials") == []
    assert r.value("__postgresql_shard_partners") == ["local-shard-0"]


# -------------------------------------------------------------------------- argument specs


@pytest.mark.parametrize("role", ["postgresql", "pgbouncer", "postgres_exporter"])
def test_argument_specs_match_defaults(role: str) -> None:
    base = REPO / "roles" / role
    defaults = yaml.safe_load((base / "defaults" / "main.yml").read_text())
    specs = yaml.safe_load((base / "meta" / "argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]
    assert sorted(options) == sorted(defaults)
    assert {k: v.get("default") for k, v in options.items()} == defaults
    assert all(v.get("description") for v in options.values())
