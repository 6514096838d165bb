"""TLS on the database hops, from the internal CA (roles/internal_cert):

* the rendered configuration: PostgreSQL (production-db, the shards under Patroni) has ssl on with
  the role's key pair, every pg_hba line for a network address is ``hostssl`` (loopback stays
  ``host``); Patroni replicates and rewinds with ``sslmode=verify-full`` and the CA, serves its
  REST API over HTTPS and every caller (Patroni/patronictl, the role's uri tasks, the routing
  callback, the switchover runbook) verifies it with the CA; PgBouncer requires TLS from its
  clients with the same certificate and keeps its loopback hop to PostgreSQL without; the apps
  whose database hop crosses sites render ``DB_SSLMODE=verify-full`` and the CA path that
  roles/unde_app installs;
* for real: ``ansible-playbook`` runs roles/internal_cert's ``certificate`` entry point on this
  machine (a second run changes nothing and notifies no handler; a new SAN reissues with the same
  key and notifies the caller's handler), a real PostgreSQL (Debian's, built with OpenSSL) serves
  that certificate with the role's ssl settings and a hostssl-only pg_hba, and ``unde_common.db``
  connects with verify-full and the CA — and is refused with another CA, with a host name the
  certificate does not carry, and without TLS; after ``pg_ctl reload`` (roles/postgresql's
  handler) the server serves the reissued certificate.
"""

from __future__ import annotations

import functools
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from ansible.inventory.manager import InventoryManager  # type: ignore[import-untyped]
from ansible.parsing.dataloader import DataLoader  # type: ignore[import-untyped]
from ansible.plugins.loader import add_all_plugin_dirs, init_plugin_loader  # type: ignore[import-untyped]
from ansible.template import Templar, trust_as_template  # type: ignore[import-untyped]
from ansible.vars.hostvars import HostVars  # type: ignore[import-untyped]
from ansible.vars.manager import VariableManager  # type: ignore[import-untyped]
from support import REPO
from unde_common.db import PoolConfig, connect
from unde_testkit.testing import free_port
from unde_tools.lab_vault import _ca_certificate, _pem_key

ROLES = REPO / "roles"
LAB_INVENTORY = REPO / "inventories" / "lab" / "hosts.yml"
BIN = Path(sys.executable).parent
CA_PATH = "/etc/unde/internal-ca.pem"
# the real part runs ansible-playbook three times and a PostgreSQL server
pytestmark = pytest.mark.timeout(300)


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


# ------------------------------------------------------------------------------- rendering


@functools.cache
def _inventory() -> tuple[Any, Any, Any]:
    init_plugin_loader()
    for role in ("postgresql", "pgbouncer"):
        add_all_plugin_dirs(str(ROLES / role))
    loader = DataLoader()
    inventory = InventoryManager(loader=loader, sources=[str(LAB_INVENTORY)])
    return loader, inventory, VariableManager(loader=loader, inventory=inventory)


class Role:
    """A role's variables for one lab host (defaults < inventory < role vars < overrides), rendered
    by Ansible's own templating engine."""

    def __init__(self, role: str, host: str, **overrides: Any) -> None:
        loader, inventory, variables = _inventory()
        base = ROLES / role
        host_vars = variables.get_vars(host=inventory.get_host(host), include_hostvars=True)
        host_vars["hostvars"] = HostVars(inventory=inventory, variable_manager=variables, loader=loader)
        data = {
            **loader.load_from_file(str(base / "defaults" / "main.yml"), trusted_as_template=True),
            **host_vars,
            **loader.load_from_file(str(base / "vars" / "main.yml"), trusted_as_template=True),
            "ansible_facts": {"virtualization_role": "host", "virtualization_type": "kvm"},
            "ansible_managed": "Ansible managed",
            "role_path": str(base),
            **overrides,
        }
        self.base = base
        self.templar = Templar(loader=loader, variables=data)

    def value(self, expression: str) -> Any:
        return self.templar.template(trust_as_template("{{ " + expression + " }}"))

    def template(self, name: str) -> str:
        return str(self.templar.template(trust_as_template((self.base / "templates" / name).read_text())))


def _rules(text: str) -> list[list[str]]:
    return [
        line.split()
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith(("#", ";"))
    ]


def _tcp_rules_are_hostssl_off_loopback(rules: list[list[str]]) -> None:
    tcp = [r for r in rules if r[0] in ("host", "hostssl")]
    assert tcp, "no TCP rule rendered"
    for rule in tcp:
        loopback = rule[3].startswith(("127.", "::1/"))
        assert rule[0] == ("host" if loopback else "hostssl"), rule


@pytest.mark.parametrize("host", ["production-db", "staging-db"])
def test_postgresql_serves_tls_and_admits_the_network_only_with_it(host: str) -> None:
    r = Role("postgresql", host)
    settings = r.value("__postgresql_settings")
    assert settings["ssl"] == "on"
    assert settings["ssl_cert_file"] == "/etc/unde/tls/postgresql/server.crt"
    assert settings["ssl_key_file"] == "/etc/unde/tls/postgresql/server.key"
    assert settings["ssl_ca_file"] == "/etc/unde/tls/postgresql/ca.crt"
    assert settings["ssl_min_protocol_version"] == "TLSv1.2"
    _tcp_rules_are_hostssl_off_loopback(_rules(r.template("pg_hba.conf.j2")))
    assert r.value("__postgresql_tls")["ca_file"] == "/etc/unde/tls/postgresql/ca.crt"


def test_postgresql_without_tls_keeps_host_lines() -> None:
    r = Role("postgresql", "production-db", postgresql_tls=False)
    assert r.value("__postgresql_settings")["ssl"] == "off"
    assert {x[0] for x in _rules(r.template("pg_hba.conf.j2")) if x[0] != "local"} == {"host"}
    assert r.value("__postgresql_tls") == {}


def test_the_certificate_is_issued_before_the_settings_name_it() -> None:
    """configure.yml issues the server key pair (owner postgres) with the internal CA before the
    cluster's settings drop-in, on hosts where this role or Patroni runs the cluster."""
    tasks = _yaml(ROLES / "postgresql" / "tasks" / "configure.yml")
    names = [t["name"] for t in tasks]
    issue = names.index("Issue the server certificate from the internal CA")
    assert issue < names.index("Cluster and its configuration (not on shard replicas)")
    task = tasks[issue]
    assert task["ansible.builtin.include_role"] == {"name": "internal_cert", "tasks_from": "certificate"}
    assert task["vars"]["internal_cert_owner"] == "postgres"
    assert task["vars"]["internal_cert_name"] == "server"
    assert "postgresql_patroni" in task["when"]


def _patroni(host: str) -> Role:
    """roles/patroni for a shard member, with what roles/postgresql publishes there."""
    pg = Role("postgresql", host, postgresql_patroni=True, postgresql_server_kind="shard")
    published = {
        "version": 17,
        "bindir": "/usr/lib/postgresql/17/bin",
        "data_dir": "/var/lib/postgresql/17/main",
        "wal_dir": "",
        "socket_dir": "/var/run/postgresql",
        "listen_addresses": ["127.0.0.1", pg.value("private_ip")],
        "port": 5432,
        "settings": pg.value("__postgresql_settings"),
        "hba": [
            line
            for line in pg.template("pg_hba.conf.j2").splitlines()
            if line.strip() and not line.startswith("#")
        ],
        "ident": [],
        "locale": "C.UTF-8",
        "encoding": "UTF8",
        "data_checksums": True,
        "replication_user": "replicator",
        "replication_credential": "unde_replication_password",
        "replication_addresses": pg.value("__postgresql_replication_addresses"),
        "admin_user": "admin",
        "admin_credential": "unde_shard_db_admin_password",
        "memory_max": "90%",
        "read_write_paths": [],
        "tls": pg.value("__postgresql_tls"),
    }
    # the vault is not decrypted here: the passwords Patroni's settings name
    names = ("restapi", "replication", "rewind", "etcd", "routing_redis")
    secrets = {f"patroni_{name}_password": "x" for name in names}
    return Role("patroni", host, postgresql_server={"patroni": published}, **secrets)


@pytest.mark.parametrize(
    ("host", "partner"), [("local-shard-0", "198.18.1.10/32"), ("shard-replica-0", "198.19.0.10/32")]
)
def test_patroni_replicates_across_sites_with_verify_full(host: str, partner: str) -> None:
    settings = _patroni(host).value("__patroni_settings")
    pg = settings["postgresql"]
    for user in ("replication", "rewind"):
        auth = pg["authentication"][user]
        assert auth["sslmode"] == "verify-full", user
        assert auth["sslrootcert"] == "/etc/unde/tls/postgresql/ca.crt", user
        assert auth["password"], user
    assert pg["parameters"]["ssl"] == "on"
    assert pg["parameters"]["ssl_key_file"] == "/etc/unde/tls/postgresql/server.key"
    hba = [line.split() for line in pg["pg_hba"]]
    _tcp_rules_are_hostssl_off_loopback(hba)
    # the partner replicates and rewinds over TLS only; Patroni's own local check stays on loopback
    assert ["hostssl", "replication", "replicator", partner, "scram-sha-256"] in hba
    assert ["hostssl", "postgres", "rewind", partner, "scram-sha-256"] in hba
    assert ["host", "replication", "replicator", "127.0.0.1/32", "scram-sha-256"] in hba


def test_patroni_rest_api_is_https_and_every_caller_verifies_it() -> None:
    r = _patroni("local-shard-0")
    settings = r.value("__patroni_settings")
    assert settings["restapi"]["certfile"] == "/etc/unde/tls/postgresql/server.crt"
    assert settings["restapi"]["keyfile"] == "/etc/unde/tls/postgresql/server.key"
    assert settings["restapi"]["listen"] == "198.19.0.10:8008"
    assert settings["restapi"]["authentication"] == {"username": "patroni", "password": "x"}
    # Patroni's calls to the other member and patronictl
    assert settings["ctl"] == {"cacert": "/etc/unde/tls/postgresql/ca.crt"}
    assert r.value("__patroni_api") == "https://198.19.0.10:8008"
    routing = r.value("__patroni_routing")
    assert (routing["api"], routing["api_cafile"]) == ("https://198.19.0.10:8008", TLS_FILES["ca_file"])
    script = (ROLES / "patroni" / "templates" / "patroni-routing.j2").read_text()
    assert 'local_state(conf["api"], conf.get("api_cafile", ""))' in script
    assert "ssl.create_default_context(cafile=cafile)" in script
    # the role's own REST calls
    calls = [t for t in _yaml(ROLES / "patroni" / "tasks" / "run.yml") if "ansible.builtin.uri" in t]
    assert len(calls) >= 5
    for task in calls:
        uri = task["ansible.builtin.uri"]
        assert uri["url"].startswith("{{ __patroni_api }}/"), task["name"]
        assert uri["ca_path"] == "{{ __patroni_tls.ca_file | default(omit) }}", task["name"]
    # the switchover runbook, with the CA at roles/postgresql's path
    (play,) = _yaml(REPO / "playbooks" / "runbooks" / "switchover.yml")
    pg_tls_dir = _yaml(ROLES / "postgresql" / "defaults" / "main.yml")["postgresql_tls_dir"]
    assert play["vars"]["__api_ca"] == f"{pg_tls_dir}/ca.crt"
    runbook = [t["ansible.builtin.uri"] for t in play["tasks"] if "ansible.builtin.uri" in t]
    assert len(runbook) == 3
    assert all(u["url"].startswith("https://") and u["ca_path"] == "{{ __api_ca }}" for u in runbook)


def test_patroni_without_tls_keeps_http() -> None:
    r = Role(
        "patroni", "local-shard-0", __patroni_tls={}, **{f"patroni_{n}_password": "x" for n in ("restapi",)}
    )
    assert r.value("__patroni_api") == "http://198.19.0.10:8008"
    assert r.value("__patroni_restapi_tls") == {}


TLS_FILES = {
    "cert_file": "/etc/unde/tls/postgresql/server.crt",
    "key_file": "/etc/unde/tls/postgresql/server.key",
    "ca_file": "/etc/unde/tls/postgresql/ca.crt",
}


def _pgbouncer(**overrides: Any) -> Role:
    pg = Role("postgresql", "production-db")
    server = {
        "access": pg.value("__postgresql_access"),
        "port": 5432,
        "socket_dir": "/var/run/postgresql",
        "tls": TLS_FILES,
    }
    return Role("pgbouncer", "production-db", postgresql_server=server, **overrides)


def test_pgbouncer_requires_tls_from_its_clients() -> None:
    r = _pgbouncer(__pgbouncer_certificate={"fingerprints": {"sha256": "ab:cd"}})
    config = r.value("__pgbouncer_config")
    assert config["client_tls_sslmode"] == "require"
    assert config["client_tls_cert_file"] == TLS_FILES["cert_file"]
    assert config["client_tls_key_file"] == TLS_FILES["key_file"]
    assert config["client_tls_ca_file"] == TLS_FILES["ca_file"]
    # PostgreSQL is on this host (127.0.0.1): no TLS on that hop
    assert config["server_tls_sslmode"] == "disable"
    ini = r.template("pgbouncer.ini.j2")
    assert "client_tls_sslmode = require" in ini.splitlines()
    # a renewed certificate changes the file, which reloads PgBouncer (it re-reads TLS files then)
    assert "; sha256 ab:cd (a renewed one changes this file: reload)." in ini.splitlines()
    rules = _rules(r.template("pg_hba.conf.j2"))
    assert rules and {x[0] for x in rules} == {"hostssl"}


def test_pgbouncer_to_another_host_verifies_the_server() -> None:
    config = _pgbouncer(pgbouncer_server_host="198.18.1.3").value("__pgbouncer_config")
    assert (config["server_tls_sslmode"], config["server_tls_ca_file"]) == (
        "verify-full",
        TLS_FILES["ca_file"],
    )


def test_pgbouncer_without_server_tls_files_has_no_client_tls() -> None:
    pg = Role("postgresql", "production-db")
    server = {"access": pg.value("__postgresql_access"), "port": 5432}
    r = Role("pgbouncer", "production-db", postgresql_server=server)
    assert "client_tls_sslmode" not in r.value("__pgbouncer_config")
    assert {x[0] for x in _rules(r.template("pg_hba.conf.j2"))} == {"host"}


@pytest.mark.parametrize("role", ["context_agent", "persona_agent"])
def test_apps_across_sites_verify_the_database(role: str) -> None:
    """Local-site apps whose database is in Helsinki (context: production-db over the tunnel;
    persona: the shards, whose primary moves to the Helsinki replica on failover)."""
    defaults = _yaml(ROLES / role / "defaults" / "main.yml")
    env = _yaml(ROLES / role / "vars" / "main.yml")[f"__{role}_env"]
    assert env["DB_SSLMODE"] == "{{ " + role + "_db_sslmode }}"
    assert env["DB_SSLROOTCERT"] == "{{ " + role + "_db_sslrootcert }}"
    assert defaults[f"{role}_db_sslmode"] == "verify-full"
    assert defaults[f"{role}_db_sslrootcert"] == CA_PATH


def test_unde_app_installs_the_ca_the_app_names() -> None:
    tasks = _yaml(ROLES / "unde_app" / "tasks" / "configure.yml")
    names = [t["name"] for t in tasks]
    install = names.index("Install the internal CA certificate the app verifies its databases with")
    assert install < names.index("Render the app's settings (.env, 0600, the app's own user)")
    task = tasks[install]
    assert task["ansible.builtin.include_role"] == {"name": "internal_cert", "tasks_from": "ca"}
    assert task["vars"]["internal_cert_ca_path"] == "{{ unde_app_env.DB_SSLROOTCERT }}"
    assert _yaml(ROLES / "internal_cert" / "defaults" / "main.yml")["internal_cert_ca_path"] == CA_PATH


# ------------------------------------------------------------------- roles/internal_cert itself


def test_internal_cert_argument_specs_match_defaults() -> None:
    """The role has only tasks_from entry points (no main); together they cover every default,
    each with the default's value."""
    defaults = _yaml(ROLES / "internal_cert" / "defaults" / "main.yml")
    specs = _yaml(ROLES / "internal_cert" / "meta" / "argument_specs.yml")["argument_specs"]
    assert sorted(specs) == ["ca", "certificate"]
    for entry, spec in specs.items():
        assert (ROLES / "internal_cert" / "tasks" / f"{entry}.yml").is_file()
        for name, option in spec["options"].items():
            assert option.get("description"), (entry, name)
            # expressions (vault CA, host name/address) are documented in defaults/main.yml only
            if "default" in option:
                assert option["default"] == defaults[name], (entry, name)
            else:
                assert "{{" in str(defaults[name]), (entry, name)
    covered = set().union(*(spec["options"] for spec in specs.values()))
    assert covered == set(defaults)


def test_etcd_issues_its_certificates_through_internal_cert() -> None:
    """roles/etcd's entry point `certificate` (also used by roles/patroni) hands every one of its
    options to roles/internal_cert, with the etcd CA."""
    (task,) = _yaml(ROLES / "etcd" / "tasks" / "certificate.yml")
    assert task["ansible.builtin.include_role"] == {"name": "internal_cert", "tasks_from": "certificate"}
    etcd_options = _yaml(ROLES / "etcd" / "meta" / "argument_specs.yml")["argument_specs"]["certificate"][
        "options"
    ]
    passed = {value.strip("{} ") for value in task["vars"].values()}
    assert passed == set(etcd_options)
    assert task["vars"]["internal_cert_ca_key"] == "{{ etcd_ca_key }}"


# --------------------------------------------------------------- for real: issue, serve, connect


@dataclass
class Issued:
    dir: Path
    ca: Path
    run: Any


def _playbook(
    directory: Path, owner: str, ca_cert: str, ca_key: str, sans: list[str]
) -> subprocess.CompletedProcess[str]:
    play = [
        {
            "name": "Issue a certificate with roles/internal_cert",
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "tasks": [
                {
                    "name": "Issue",
                    "ansible.builtin.include_role": {"name": "internal_cert", "tasks_from": "certificate"},
                    "vars": {
                        "internal_cert_dir": str(directory),
                        "internal_cert_name": "server",
                        "internal_cert_owner": owner,
                        "internal_cert_common_name": "localhost",
                        "internal_cert_subject_alt_names": sans,
                        "internal_cert_ca_certificate": ca_cert,
                        "internal_cert_ca_key": ca_key,
                        "internal_cert_notify": ["Count the reloads"],
                    },
                }
            ],
            # the caller's handler that internal_cert_notify names (a server reloading its key pair)
            "handlers": [
                {
                    "name": "Count the reloads",
                    "ansible.builtin.lineinfile": {
                        "path": str(directory.parent / "reloads"),
                        "line": "reload {{ now().timestamp() }}",
                        "create": True,
                        "mode": "0644",
                    },
                }
            ],
        }
    ]
    book = directory.parent / "issue.yml"
    book.write_text(yaml.safe_dump(play, sort_keys=False))
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(ROLES),
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
    }
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "localhost,", str(book)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _recap(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return next(line for line in proc.stdout.splitlines() if line.startswith("localhost") and "ok=" in line)


def _postgres_bin() -> Path:
    """Debian's PostgreSQL (built with OpenSSL; pgserver's build has no TLS)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name)
    )
    if not found:
        pytest.skip("no PostgreSQL with TLS support (Debian's postgresql package) on this machine")
    return found[-1].parent


def _server_user() -> str:
    """The role's tasks chown to root and to the key's owner, and PostgreSQL refuses to run as
    root: this part runs as root, with Debian's postgres user owning the key and running the server."""
    if os.geteuid() != 0:
        pytest.skip("issuing with roles/internal_cert chowns its files: run as root")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("no postgres user (Debian's postgresql package) to own the key and run the server")
    return "postgres"


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    # not pytest's 0700 tmp: the server user must reach its files
    path = Path(tempfile.mkdtemp(prefix="unde-tls-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _reloads(workdir: Path) -> int:
    path = workdir / "reloads"
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.fixture(scope="module")
def issued(workdir: Path) -> Issued:
    """roles/internal_cert run twice on this machine: the second run changes nothing."""
    user = _server_user()
    ca_key = _pem_key()
    ca_cert = _ca_certificate(ca_key, "internal_ca")
    directory = workdir / "tls"
    sans = ["DNS:localhost", "IP:127.0.0.1"]
    first = _recap(_playbook(directory, user, ca_cert, ca_key, sans))
    assert "changed=0" not in first
    second = _recap(_playbook(directory, user, ca_cert, ca_key, sans))
    assert "changed=0" in second, second
    assert _reloads(workdir) == 1  # notified on the first run only
    ca = workdir / "ca.pem"
    ca.write_text(ca_cert)
    return Issued(directory, ca, lambda s: _recap(_playbook(directory, user, ca_cert, ca_key, s)))


def test_the_issued_key_pair(issued: Issued) -> None:
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key = issued.dir / "server.key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert pwd.getpwuid(key.stat().st_uid).pw_name == _server_user()
    cert = x509.load_pem_x509_certificate((issued.dir / "server.crt").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert (issued.dir / "ca.crt").read_text().strip() == issued.ca.read_text().strip()


@dataclass
class Server:
    port: int
    ca: Path
    pg_ctl: list[str]
    user: str

    def reload(self) -> None:
        """What roles/postgresql's handler "Reload the server certificate" runs."""
        subprocess.run([*self.pg_ctl, "reload"], check=True, capture_output=True, timeout=30, user=self.user)

    def dsn(self, host: str = "localhost", **extra: str) -> str:
        params = {
            "host": host,
            "port": str(self.port),
            "dbname": "postgres",
            "user": "app",
            "password": "tls-pw",
            **extra,
        }
        return " ".join(f"{k}={v}" for k, v in params.items())


@pytest.fixture(scope="module")
def server(workdir: Path, issued: Issued) -> Iterator[Server]:
    """A real PostgreSQL with the role's ssl settings (its key pair from roles/internal_cert) and a
    pg_hba that admits TCP only over TLS."""
    bindir = _postgres_bin()
    user = _server_user()
    pgdata = workdir / "data"
    pgdata.mkdir()
    shutil.chown(pgdata, user)
    subprocess.run(
        [str(bindir / "initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust"],
        check=True,
        capture_output=True,
        timeout=120,
        user=user,
    )
    # the settings roles/postgresql renders, with this test's directory in place of /etc/unde/tls/postgresql
    settings = Role("postgresql", "production-db", postgresql_tls_dir=str(issued.dir)).value(
        "__postgresql_tls_settings"
    )
    port = free_port()
    conf = {
        **settings,
        "listen_addresses": "127.0.0.1",
        "port": port,
        "unix_socket_directories": str(pgdata),
        "password_encryption": "scram-sha-256",
    }
    with (pgdata / "postgresql.conf").open("a") as fh:
        for key, value in conf.items():
            fh.write(f"{key} = '{value}'\n")
    (pgdata / "pg_hba.conf").write_text(
        "local all postgres trust\nhostssl all app 127.0.0.1/32 scram-sha-256\n"
    )
    pg_ctl = [str(bindir / "pg_ctl"), "-w", "-D", str(pgdata)]
    subprocess.run(
        [*pg_ctl, "-l", str(pgdata / "server.log"), "start"],
        check=True,
        capture_output=True,
        timeout=60,
        user=user,
    )
    try:
        with psycopg.connect(
            host=str(pgdata), port=port, dbname="postgres", user="postgres", autocommit=True
        ) as conn:
            conn.execute("CREATE ROLE app LOGIN PASSWORD 'tls-pw'")
        yield Server(port, issued.ca, pg_ctl, user)
    finally:
        subprocess.run(
            [*pg_ctl, "-m", "immediate", "stop"], capture_output=True, timeout=60, check=False, user=user
        )


def _verify_full(ca: Path) -> PoolConfig:
    return PoolConfig(sslmode="verify-full", sslrootcert=str(ca))


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_verify_full_with_the_ca_connects(server: Server, host: str) -> None:
    with connect(server.dsn(host), app_name="tls-test", config=_verify_full(server.ca)) as conn:
        row = conn.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
    assert row is not None and row["ssl"] is True
    assert row["version"] in ("TLSv1.2", "TLSv1.3")


def test_another_ca_is_refused(server: Server, workdir: Path) -> None:
    other = workdir / "other-ca.pem"
    other.write_text(_ca_certificate(_pem_key(), "other"))
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        connect(server.dsn(), app_name="tls-test", config=_verify_full(other))


def test_a_host_name_the_certificate_lacks_is_refused(server: Server) -> None:
    # the right address, but a name the certificate does not carry
    dsn = server.dsn("db.other.invalid", hostaddr="127.0.0.1")
    with pytest.raises(psycopg.OperationalError, match="does not match host name"):
        connect(dsn, app_name="tls-test", config=_verify_full(server.ca))


def test_cleartext_is_refused_by_the_server(server: Server) -> None:
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        connect(server.dsn(), app_name="tls-test", config=PoolConfig(sslmode="disable"))


def test_a_new_san_reissues_the_certificate(issued: Issued, server: Server) -> None:
    """Changing the SANs reissues (same key, new certificate); running again changes nothing."""
    before = (issued.dir / "server.crt").read_text()
    key_before = (issued.dir / "server.key").read_text()
    sans = ["DNS:localhost", "IP:127.0.0.1", "DNS:reissued.invalid"]
    assert "changed=0" not in issued.run(sans)
    assert (issued.dir / "server.crt").read_text() != before
    assert (issued.dir / "server.key").read_text() == key_before
    assert "changed=0" in issued.run(sans)
    assert _reloads(issued.dir.parent) == 2  # the caller's handler ran for the new certificate
    # roles/postgresql's handler (pg_ctl reload): the running server serves the new certificate
    with pytest.raises(psycopg.OperationalError, match="does not match host name"):
        connect(
            server.dsn("reissued.invalid", hostaddr="127.0.0.1"), app_name="t", config=_verify_full(server.ca)
        )
    server.reload()
    # SIGHUP: the postmaster re-reads its files asynchronously; new connections get the new pair
    deadline = time.monotonic() + 10
    while True:
        try:
            dsn = server.dsn("reissued.invalid", hostaddr="127.0.0.1")
            with connect(dsn, app_name="t", config=_verify_full(server.ca)) as conn:
                assert conn.execute("SELECT 1 AS one").fetchone() == {"one": 1}
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
