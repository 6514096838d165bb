"""Unit tests of the pgbouncer role without a server: ``pytest roles/pgbouncer/tests``.

The ``unde_pgbouncer_stale`` filter, and pgbouncer.ini / pg_hba.conf / userlist.txt rendered by
Ansible's templating engine with the role's defaults and vars for a production-db access list.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from ansible.parsing.dataloader import DataLoader  # type: ignore[import-untyped]
from ansible.template import Templar, trust_as_template  # type: ignore[import-untyped]
from unde_testkit.loaders import load_module

ROLE = Path(__file__).resolve().parents[1]


def _load_filters() -> ModuleType:
    return load_module("unde_pgbouncer", ROLE / "filter_plugins" / "unde_pgbouncer.py")


pgb = _load_filters()

# psql -At -F '|' -c 'SHOW CONFIG' (PgBouncer 1.24: key|value|default|changeable)
SHOW_CONFIG = [
    "listen_addr|198.18.1.2|localhost|no",
    "listen_port|6432|6432|no",
    "auth_type|hba|md5|yes",
    "pool_mode|transaction|session|yes",
    "default_pool_size|10|20|yes",
]


def test_nothing_stale() -> None:
    wanted = {"listen_addr": "198.18.1.2", "listen_port": 6432, "auth_type": "hba", "default_pool_size": 10}
    assert pgb.unde_pgbouncer_stale(SHOW_CONFIG, wanted) == {"reload": [], "restart": [], "missing": []}


def test_changeable_settings_need_a_reload_others_a_restart() -> None:
    wanted = {"listen_addr": "198.18.1.3", "listen_port": 6432, "pool_mode": "session", "nosuch": 1}
    assert pgb.unde_pgbouncer_stale(SHOW_CONFIG, wanted) == {
        "reload": ["pool_mode"],
        "restart": ["listen_addr"],
        "missing": ["nosuch"],
    }


def test_older_show_config_without_default_column() -> None:
    assert pgb.unde_pgbouncer_stale(["auth_type|hba|yes"], {"auth_type": "md5"})["reload"] == ["auth_type"]


def test_unreadable_output() -> None:
    with pytest.raises(pgb.PgbouncerFilterError):
        pgb.unde_pgbouncer_stale(["ERROR: not allowed"], {})


# ------------------------------------------------------------------------------------- templates

ACCESS = [
    {
        "database": "unde_main",
        "user": "app",
        "clients": ["api_gateway_app"],
        "addresses": ["10.2.0.2/32", "10.3.0.1/32", "127.0.0.1/32"],
    },
    {
        "database": "unde_main",
        "user": "pgvector_reader",
        "clients": ["ximilar_gw_app"],
        "addresses": ["10.1.0.12/32", "127.0.0.1/32"],
    },
    {"database": "unde_main", "user": "nobody", "clients": [], "addresses": ["127.0.0.1/32"]},
]
SECRETS = [
    {"rolname": "pgvector_reader", "rolpassword": "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy"},
    {"rolname": "app", "rolpassword": "SCRAM-SHA-256$4096:YQ==$Yg==:Yw=="},
]


def render(name: str, **overrides: Any) -> str:

    loader = DataLoader()
    data = {
        **loader.load_from_file(str(ROLE / "defaults" / "main.yml"), trusted_as_template=True),
        **loader.load_from_file(str(ROLE / "vars" / "main.yml"), trusted_as_template=True),
        "private_ip": "10.1.1.2",
        "group_names": ["production_db", "postgres", "pgbouncer"],
        "unde_services": {"production_pgbouncer": {"port": 6432}},
        "postgresql_server": {"access": ACCESS, "port": 5432, "socket_dir": "/var/run/postgresql"},
        "__pgbouncer_secrets": {"query_result": SECRETS},
        "inventory_hostname": "production-db",
        "ansible_managed": "Ansible managed",
        **overrides,
    }
    text = (ROLE / "templates" / name).read_text()
    return str(Templar(loader=loader, variables=data).template(trust_as_template(text)))


def _section(ini: str, name: str) -> dict[str, str]:
    out: dict[str, str] = {}
    current = None
    for line in ini.splitlines():
        line = line.strip()
        if line.startswith("["):
            current = line.strip("[]")
        elif current == name and line and not line.startswith(";") and "=" in line:
            key, value = (p.strip() for p in line.split("=", 1))
            out[key] = value
    return out


def test_ini_serves_the_database_and_its_alias() -> None:
    ini = render("pgbouncer.ini.j2")
    assert _section(ini, "databases") == {
        "unde_main": "host=127.0.0.1 port=5432 dbname=unde_main",
        "unde_ai": "host=127.0.0.1 port=5432 dbname=unde_main",
    }
    settings = _section(ini, "pgbouncer")
    assert settings["listen_addr"] == "10.1.1.2"
    assert settings["listen_port"] == "6432"
    assert settings["pool_mode"] == "transaction"
    assert settings["auth_type"] == "hba"
    assert settings["auth_hba_file"] == "/etc/pgbouncer/pg_hba.conf"
    assert settings["auth_file"] == "/etc/pgbouncer/userlist.txt"
    assert (settings["max_client_conn"], settings["default_pool_size"]) == ("200", "10")


def test_alias_only_where_its_database_is_served() -> None:
    staging = [dict(rule, database="unde_staging") for rule in ACCESS]
    ini = render("pgbouncer.ini.j2", postgresql_server={"access": staging, "port": 5432})
    assert list(_section(ini, "databases")) == ["unde_staging"]


def test_hba_rules_per_user_and_source_scram_only() -> None:
    # without the server's TLS files (postgresql_server.tls); with them: tests/test_internal_tls.py
    lines = render("pg_hba.conf.j2").splitlines()
    rules = [line.split() for line in lines if line.strip() and not line.startswith("#")]
    assert rules == [
        ["host", "unde_main,unde_ai", "app", "10.2.0.2/32", "scram-sha-256"],
        ["host", "unde_main,unde_ai", "app", "10.3.0.1/32", "scram-sha-256"],
        ["host", "unde_main,unde_ai", "pgvector_reader", "10.1.0.12/32", "scram-sha-256"],
    ]


def test_userlist_holds_the_scram_secrets_sorted() -> None:
    assert render("userlist.txt.j2").splitlines() == [
        '"app" "SCRAM-SHA-256$4096:YQ==$Yg==:Yw=="',
        '"pgvector_reader" "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy"',
    ]
