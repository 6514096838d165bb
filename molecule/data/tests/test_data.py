"""Data layer on lab hosts: PostgreSQL (roles/postgresql), PgBouncer, postgres_exporter.

What is proved, against the three database servers converged with the roles of playbooks/base.yml
and of the three DB playbooks (converge.yml), from client hosts that are not converged:

* the schema of each database (tables, the 64 hash partitions of messages, the one-row-per-day
  constraint, unde_ai.sku_image_embeddings with its HNSW index) and the migrations bookkeeping;
* every login user, connected with its vault password, can run what its row of the grants table
  (files/sql/README.md) allows and is refused everything else on every table of its database
  (SELECT/INSERT/UPDATE/DELETE, column-limited UPDATEs, CREATE, TEMP, the partitions of messages);
* from a permitted client host the users reach their database directly and through PgBouncer
  (unde_ai alias included); a user from a host that is not listed for it is rejected by pg_hba and
  by PgBouncer's rules; the firewall drops a client group that is not listed at all;
* PgBouncer serves each database; postgres_exporter answers /metrics with pg_up 1 on the private
  address, connected by peer over the socket;
* the storage profile of local-shard-0 (nvme, lab-scaled) is the running configuration;
* a changed setting is reloaded, one that needs it restarts the server, nothing else does; a
  missing vault secret stops the play before anything changes.

The tmpfs storage profile is tested by rendering the role's templates in
roles/postgresql/tests/test_postgresql_role.py (the lab's containers cannot reserve huge pages).
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from testinfra.host import Host  # type: ignore[import-untyped]
from unde_tools import lab_client

pytestmark = pytest.mark.lab

REPO = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY") or Path(__file__).resolve().parents[3])
PG_UNIT = "postgresql@17-main"
PGBOUNCER = "pgbouncer"
EXPORTER = "prometheus-postgres-exporter"
DB_HOSTS = {"staging-db": "unde_staging", "production-db": "unde_main", "local-shard-0": "unde_shard"}
SCRAPER = "scraper"  # scraper_app: staging and production
LOCAL_APP = "local-app"  # api_gateway_app: production and the shard, not staging
PG_PORT, BOUNCER_PORT, EXPORTER_PORT = 5432, 6432, 9187
PROBE_TIMEOUT_S = 3
PROBE_BOUND_S = 15

# TCP connect to each port at once: one line per port, 'open', 'timeout' (dropped), 'refused', 'error ...'
PROBE = """
import socket, sys
from concurrent.futures import ThreadPoolExecutor
def probe(port):
    try:
        socket.create_connection((sys.argv[1], int(port)), timeout=float(sys.argv[2])).close()
        return "open"
    except TimeoutError:
        return "timeout"
    except ConnectionRefusedError:
        return "refused"
    except OSError as exc:
        return f"error {exc}"
with ThreadPoolExecutor(8) as pool:
    for result in pool.map(probe, sys.argv[3:]):
        print(result)
"""
# Runs each statement in its own rolled-back transaction as the given user (4 sessions at a time);
# one JSON line each.
RUN_STATEMENTS = """
import json, subprocess, sys
from concurrent.futures import ThreadPoolExecutor
dsn, statements = sys.argv[1], json.loads(sys.argv[2])
def run(sql):
    argv = ["psql", "-XAtq", "-v", "ON_ERROR_STOP=1", dsn, "-c", "BEGIN", "-c", sql, "-c", "ROLLBACK"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    return [sql, r.returncode, r.stderr.strip()]
with ThreadPoolExecutor(4) as pool:
    for result in pool.map(run, statements):
        print(json.dumps(result))
"""
SCRAPE = """
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
    print(r.status)
    print(r.read().decode())
"""

# ------------------------------------------------------------------------ the grants to prove
# table -> key column (used in the probe statements)
TABLES = {
    "unde_staging": {
        "raw_products": "source",
        "raw_availability": "brand",
        "raw_stores": "brand",
        "scraper_logs": "scraper_name",
    },
    "unde_main": {
        "products": "sku",
        "routing_table": "user_id",
        "deleted_messages_registry": "conversation_id",
        "recognition_requests": "photo_url",
        "events": "title",
        "unde_ai.sku_image_embeddings": "sku",
    },
    "unde_shard": {
        "conversations": "user_id",
        "messages": "conversation_id",
        "user_keys": "user_id",
        "user_knowledge": "user_id",
        "relationship_stage": "user_id",
        "persona_temp_blocks": "user_id",
        "signal_daily_deltas": "user_id",
        "persona_profiles": "user_id",
        "persona_applied_flushes": "user_id",
    },
}
ALL = "SIUD"
SHARD_TABLES = list(TABLES["unde_shard"])
# database -> user -> table -> privileges (S, I, U, D) or a list of the only columns it may UPDATE
# next to its table privileges: files/sql/README.md "Grants model".
GRANTS: dict[str, dict[str, dict[str, Any]]] = {
    "unde_staging": {
        "apify": {
            "raw_products": (
                "SI",
                [
                    "brand",
                    "name",
                    "description",
                    "price",
                    "currency",
                    "category",
                    "colour",
                    "sizes",
                    "composition",
                    "original_image_urls",
                    "raw_data",
                    "scraped_at",
                    "image_status",
                    "sync_status",
                ],
            ),
            "scraper_logs": "SIU",
        },
        "downloader": {
            "raw_products": ("S", ["image_status", "image_urls", "error_message", "download_attempts"])
        },
        "ximilar": {
            "raw_products": (
                "S",
                ["ximilar_status", "ximilar_synced_at", "ximilar_error_message", "ximilar_attempts"],
            ),
            # store metadata for the Ximilar records (migration 0003)
            "raw_availability": "S",
            "raw_stores": "S",
        },
        "collage": {
            "raw_products": ("S", ["collage_url", "image_status", "error_message", "collage_attempts"])
        },
        "scraper": {t: ALL for t in TABLES["unde_staging"]},
        "recognition": {"raw_availability": "S", "raw_stores": "S"},
    },
    "unde_main": {
        "scraper": {"products": "SIU"},
        "recognition": {"recognition_requests": "SIU", "products": "S"},
        "orchestrator": {
            # DELETE: the GDPR erase of a user (migration 0005)
            "routing_table": "SD",
            "products": "S",
            "events": "S",
            "deleted_messages_registry": "SI",
            # SELECT (user_id) only, for the erase's WHERE (migration 0005): enough for the probe
            "recognition_requests": "SD",
        },
        "app": {
            "routing_table": "SI",
            "products": "S",
            "events": "S",
            "recognition_requests": ("S", ["user_feedback"]),
            "deleted_messages_registry": "SI",
        },
        "embed_writer": {
            "unde_ai.sku_image_embeddings": ("SI", ["image_url", "brand", "embedding", "model_version"]),
            "products": "S",
            # SELECT (id, final_matches, created_at) only (migration 0004): enough for the probe
            "recognition_requests": "S",
        },
        "pgvector_reader": {"unde_ai.sku_image_embeddings": "S", "products": "S"},
        "readonly": {"events": "S", "products": "S"},
    },
    "unde_shard": {
        "app_rw": {t: ALL for t in SHARD_TABLES},
        "knowledge_rw": {"user_knowledge": ALL, "user_keys": ALL},
        "persona_rw": {
            "relationship_stage": ALL,
            "persona_temp_blocks": ALL,
            "signal_daily_deltas": ALL,
            "persona_profiles": ALL,
            "persona_applied_flushes": ALL,
            "user_knowledge": "S",
        },
        "readonly": {t: "S" for t in SHARD_TABLES if t != "user_keys"},
    },
}
# Refused to every user of the database, whatever its grants.
ALWAYS_REFUSED = {
    "unde_staging": ["CREATE TABLE unde_probe (i int)", "CREATE TEMP TABLE unde_probe (i int)"],
    "unde_main": [
        "CREATE TABLE unde_probe (i int)",
        "CREATE TABLE unde_ai.unde_probe (i int)",
        "CREATE TEMP TABLE unde_probe (i int)",
    ],
    "unde_shard": [
        "CREATE TABLE unde_probe (i int)",
        "CREATE TEMP TABLE unde_probe (i int)",
        # privileges are on the partitioned parent only
        "SELECT 1 FROM messages_p00 LIMIT 0",
        "DELETE FROM messages_p63 WHERE false",
    ],
}
ALWAYS_REFUSED_COMMON = ["SELECT 1 FROM public.schema_migrations LIMIT 0", "TRUNCATE {first_table}"]


def statements(database: str, user: str) -> tuple[list[str], list[str]]:
    """(allowed, refused) probe statements for a user: every operation on every table."""
    allowed: list[str] = []
    refused: list[str] = list(ALWAYS_REFUSED[database])
    refused += [s.format(first_table=next(iter(TABLES[database]))) for s in ALWAYS_REFUSED_COMMON]
    grants = GRANTS[database][user]
    for table, key in TABLES[database].items():
        grant = grants.get(table, "")
        privileges, columns = (grant, None) if isinstance(grant, str) else grant
        # names from the constants above, never input
        probes = {
            "S": f"SELECT 1 FROM {table} LIMIT 0",  # noqa: S608
            "I": f"INSERT INTO {table} ({key}) SELECT NULL WHERE false",
            "U": f"UPDATE {table} SET {key} = NULL WHERE false",  # noqa: S608
            "D": f"DELETE FROM {table} WHERE false",  # noqa: S608
        }
        for op, sql in probes.items():
            if op == "U" and columns is not None:
                assignments = ", ".join(f"{c} = NULL" for c in columns)
                allowed.append(f"UPDATE {table} SET {assignments} WHERE false")  # noqa: S608
                assert key not in columns
            (allowed if op in privileges else refused).append(sql)
    return allowed, refused


# ----------------------------------------------------------------------------------- helpers


def migrations(schema: str) -> str:
    """How many migrations the repository has for ``schema`` (files/sql/<schema>/*.sql)."""
    return str(len(list((Path(__file__).resolve().parents[3] / "files" / "sql" / schema).glob("*.sql"))))


def credential_password(secrets: dict[str, Any], kind: str, user: str) -> str:
    return str(secrets[f"vault_{kind}_db_{user}_password"])


KIND = {"unde_staging": "staging", "unde_main": "production", "unde_shard": "shard"}


def password(secrets: dict[str, Any], database: str, user: str) -> str:
    return credential_password(secrets, KIND[database], user)


def dsn(host: str, port: int, user: str, database: str) -> str:
    return f"host={host} port={port} user={user} dbname={database} connect_timeout={PROBE_TIMEOUT_S}"


def psql(src: Host, conninfo: str, secret: str, sql: str) -> Any:
    """Run one statement with psql on ``src`` (password through the environment)."""
    return src.run(
        "env PGPASSWORD=%s timeout %s psql -XAtq -v ON_ERROR_STOP=1 %s -c %s",
        secret,
        str(PROBE_BOUND_S),
        conninfo,
        sql,
    )


def superuser(host: Host, database: str, sql: str) -> str:
    return str(host.check_output("runuser -u postgres -- psql -XAtq -d %s -c %s", database, sql))


def bouncer_console(node: Host, command: str) -> str:
    """PgBouncer's admin console: user pgbouncer over the socket, as PgBouncer's OS user."""
    return str(
        node.check_output(
            "runuser -u postgres -- psql -XAt -F '|' -h /var/run/postgresql -p %s "
            "-U pgbouncer -d pgbouncer -c %s",
            str(BOUNCER_PORT),
            command,
        )
    )


def probe(src: Host, address: str, *ports: int) -> list[str]:
    """Try TCP connects from ``src`` to the ports of ``address``, all at once."""
    res = src.run(
        "timeout %s python3 -c %s %s %s " + " ".join(["%s"] * len(ports)),
        str(PROBE_BOUND_S),
        PROBE,
        address,
        str(PROBE_TIMEOUT_S),
        *[str(p) for p in ports],
    )
    assert res.rc == 0, f"probe did not finish within {PROBE_BOUND_S}s: rc={res.rc} {res.stderr}"
    return str(res.stdout).split()


ansible_playbook = functools.partial(
    lab_client.ansible_playbook, timeout=600, env={"ANSIBLE_GATHERING": "implicit"}
)


# -------------------------------------------------------------------------------------- units


@pytest.mark.parametrize("db_host", list(DB_HOSTS))
@pytest.mark.journal(PG_UNIT, PGBOUNCER, EXPORTER)
def test_services_run_hardened(lab: Any, db_host: str) -> None:
    node = lab.host(db_host)
    for unit in (PG_UNIT, PGBOUNCER, EXPORTER):
        assert node.service(unit).is_running, unit
    assert node.service("postgresql").is_enabled
    assert node.service(PGBOUNCER).is_enabled
    assert node.service(EXPORTER).is_enabled
    for unit in (PG_UNIT, PGBOUNCER, EXPORTER):
        props = dict(
            line.split("=", 1)
            for line in node.check_output(
                "systemctl show -p NoNewPrivileges -p ProtectSystem -p PrivateTmp -p ProtectHome "
                "-p MemoryMax %s",
                unit,
            ).splitlines()
        )
        assert props["NoNewPrivileges"] == "yes", unit
        assert props["ProtectSystem"] == "strict", unit
        assert props["PrivateTmp"] == "yes", unit
        assert props["ProtectHome"] == "yes", unit
        assert props["MemoryMax"] != "infinity", unit
    # the lab's cap for PostgreSQL (postgresql_lab_memory_max)
    assert node.check_output("systemctl show -p MemoryMax --value %s", PG_UNIT) == str(512 * 1024 * 1024)
    writable = node.check_output("systemctl show -p ReadWritePaths --value %s", PG_UNIT).split()
    assert {"/var/lib/postgresql", "/run/postgresql", "/var/log/postgresql"} <= set(writable)


@pytest.mark.parametrize("db_host", list(DB_HOSTS))
def test_listeners(lab: Any, db_host: str) -> None:
    node = lab.host(db_host)
    ip = lab.private_ip(db_host)

    def listening(port: int) -> list[str]:
        return sorted(line.split()[3] for line in node.check_output(f"ss -Htln sport = :{port}").splitlines())

    assert listening(PG_PORT) == sorted([f"127.0.0.1:{PG_PORT}", f"{ip}:{PG_PORT}"])
    assert listening(BOUNCER_PORT) == [f"{ip}:{BOUNCER_PORT}"]
    assert listening(EXPORTER_PORT) == [f"{ip}:{EXPORTER_PORT}"]


# -------------------------------------------------------------------------------------- schema


def test_staging_schema(lab: Any) -> None:
    node = lab.host("staging-db")
    tables = superuser(
        node,
        "unde_staging",
        "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'",
    )
    assert tables.split(",") == [
        "raw_availability",
        "raw_products",
        "raw_stores",
        "schema_migrations",
        "scraper_logs",
    ]
    # one row per product, store and (UTC) day
    unique = superuser(
        node,
        "unde_staging",
        "SELECT string_agg(a.attname, ',' ORDER BY k.ord) FROM pg_constraint c "
        "CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord) "
        "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum "
        "WHERE c.conrelid = 'raw_availability'::regclass AND c.contype = 'u'",
    )
    assert unique == "brand,store_id,product_id,fetched_on"
    applied = superuser(node, "unde_staging", "SELECT count(*) FROM schema_migrations")
    assert applied == migrations("unde_staging")


def test_production_schema(lab: Any) -> None:
    node = lab.host("production-db")
    tables = superuser(
        node,
        "unde_main",
        "SELECT string_agg(schemaname || '.' || tablename, ',' ORDER BY 1) "
        "FROM pg_tables WHERE schemaname IN ('public', 'unde_ai')",
    )
    assert sorted(tables.split(",")) == sorted(
        [
            "public.deleted_messages_registry",
            "public.events",
            "public.products",
            "public.recognition_requests",
            "public.routing_table",
            "public.schema_migrations",
            "unde_ai.sku_image_embeddings",
        ]
    )
    index = superuser(
        node,
        "unde_main",
        "SELECT am.amname FROM pg_class i JOIN pg_am am ON am.oid = i.relam "
        "WHERE i.relname = 'idx_sku_image_embeddings_hnsw'",
    )
    assert index == "hnsw"
    assert (
        superuser(node, "unde_main", "SELECT extname FROM pg_extension WHERE extname = 'vector'") == "vector"
    )
    applied = superuser(node, "unde_main", "SELECT count(*) FROM schema_migrations")
    assert applied == migrations("unde_main")


def test_shard_schema(lab: Any) -> None:
    node = lab.host("local-shard-0")
    tables = superuser(
        node,
        "unde_shard",
        "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class "
        "WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p') AND NOT relispartition",
    )
    assert tables.split(",") == sorted([*SHARD_TABLES, "schema_migrations"])
    partitions = superuser(
        node,
        "unde_shard",
        "SELECT (SELECT partstrat FROM pg_partitioned_table WHERE partrelid = 'messages'::regclass)::text "
        "|| ':' || (SELECT count(*) FROM pg_inherits WHERE inhparent = 'messages'::regclass)",
    )
    assert partitions == "h:64"
    applied = superuser(node, "unde_shard", "SELECT count(*) FROM schema_migrations")
    assert applied == migrations("unde_shard")


# ---------------------------------------------------------------------- each user, each table

USER_CASES = [(db, user) for db in GRANTS for user in GRANTS[db]]


@pytest.mark.parametrize(("database", "user"), USER_CASES, ids=[f"{d}/{u}" for d, u in USER_CASES])
def test_user_may_do_its_row_and_nothing_else(
    lab: Any, secrets: dict[str, Any], database: str, user: str
) -> None:
    """As the user, over TCP with its vault password (127.0.0.1 on the server: every user's row
    there admits it, as PgBouncer's): the allowed statements work, all others are refused."""
    db_host = next(h for h, d in DB_HOSTS.items() if d == database)
    node = lab.host(db_host)
    allowed, refused = statements(database, user)
    res = node.run(
        "env PGPASSWORD=%s python3 -c %s %s %s",
        password(secrets, database, user),
        RUN_STATEMENTS,
        dsn("127.0.0.1", PG_PORT, user, database),
        json.dumps(allowed + refused),
    )
    assert res.rc == 0, res.stderr
    results = {sql: (rc, err) for sql, rc, err in (json.loads(line) for line in res.stdout.splitlines())}
    wrong_allowed = {sql: results[sql][1] for sql in allowed if results[sql][0] != 0}
    wrong_refused = {
        sql: results[sql]
        for sql in refused
        if results[sql][0] == 0 or "permission denied" not in results[sql][1]
    }
    assert wrong_allowed == {}, "allowed statements that failed"
    assert wrong_refused == {}, "statements that were not refused for lack of privilege"


@pytest.mark.parametrize("db_host", list(DB_HOSTS))
def test_users_reach_only_their_database(lab: Any, secrets: dict[str, Any], db_host: str) -> None:
    node = lab.host(db_host)
    database = DB_HOSTS[db_host]
    for user in GRANTS[database]:
        res = psql(
            node, dsn("127.0.0.1", PG_PORT, user, "postgres"), password(secrets, database, user), "SELECT 1"
        )
        assert res.rc != 0 and "no pg_hba.conf entry" in res.stderr, (user, res.stderr)
    # the monitoring login has no password and exists for the socket only
    assert (
        superuser(
            node, "postgres", "SELECT rolpassword IS NULL FROM pg_authid WHERE rolname = 'postgres_exporter'"
        )
        == "t"
    )
    # the administrator is a superuser from the server itself only
    admin = credential_password(
        secrets,
        {"unde_staging": "staging", "unde_main": "production", "unde_shard": "shard"}[database],
        "admin",
    )
    assert (
        psql(node, dsn("127.0.0.1", PG_PORT, "admin", database), admin, "SHOW is_superuser").stdout.strip()
        == "on"
    )


def test_shard_replicator(lab: Any, secrets: dict[str, Any]) -> None:
    node = lab.host("local-shard-0")
    attrs = superuser(
        node,
        "postgres",
        "SELECT rolcanlogin::text || rolreplication::text || rolsuper::text "
        "FROM pg_roles WHERE rolname = 'replicator'",
    )
    assert attrs == "truetruefalse"
    rules = superuser(
        node,
        "postgres",
        "SELECT string_agg(array_to_string(database, ',') || ' ' || "
        "array_to_string(user_name, ',') || ' ' || address, ';') FROM pg_hba_file_rules "
        "WHERE 'replicator' = ANY(user_name)",
    )
    assert rules == f"replication replicator {lab.private_ip('shard-replica-0')}"
    # not even a plain session from the server itself
    res = psql(
        node,
        dsn("127.0.0.1", PG_PORT, "replicator", "unde_shard"),
        str(secrets["vault_replication_password"]),
        "SELECT 1",
    )
    assert res.rc != 0 and "no pg_hba.conf entry" in res.stderr


# ---------------------------------------------------------------------- clients, pg_hba, firewall

# (client host, database server, user): allowed from that client
PERMITTED = [
    (SCRAPER, "staging-db", "scraper"),
    (SCRAPER, "production-db", "scraper"),
    (LOCAL_APP, "production-db", "app"),
    (LOCAL_APP, "local-shard-0", "app_rw"),
]
# (client host, database server, user): the firewall lets the client in, pg_hba does not list it for the user
NOT_LISTED = [
    (LOCAL_APP, "production-db", "scraper"),
    (SCRAPER, "production-db", "app"),
    (LOCAL_APP, "production-db", "embed_writer"),
    (LOCAL_APP, "local-shard-0", "persona_rw"),
    (LOCAL_APP, "local-shard-0", "readonly"),
    (LOCAL_APP, "local-shard-0", "admin"),
]
# (client host, database server): the client's groups are not among the service's clients
FIREWALLED = [(LOCAL_APP, "staging-db"), (SCRAPER, "local-shard-0")]


def _first_allowed_and_refused(database: str, user: str) -> tuple[str, str]:
    allowed, refused = statements(database, user)
    table_level = [
        sql
        for sql in refused
        if sql.split()[0] in ("SELECT", "INSERT", "UPDATE", "DELETE") and "schema_migrations" not in sql
    ]
    return allowed[0], (table_level or refused)[0]


@pytest.mark.parametrize(("client", "db_host", "user"), PERMITTED)
@pytest.mark.parametrize("port", [PG_PORT, BOUNCER_PORT], ids=["direct", "pgbouncer"])
@pytest.mark.journal(PG_UNIT, PGBOUNCER, "nftables")
def test_permitted_client(
    lab: Any, secrets: dict[str, Any], client: str, db_host: str, user: str, port: int
) -> None:
    database = DB_HOSTS[db_host]
    src = lab.host(client)
    secret = password(secrets, database, user)
    conninfo = dsn(lab.private_ip(db_host), port, user, database)
    res = psql(src, conninfo, secret, "SELECT current_user || '@' || current_database()")
    assert res.rc == 0, res.stderr
    assert res.stdout.strip() == f"{user}@{database}"
    allowed, refused = _first_allowed_and_refused(database, user)
    assert psql(src, conninfo, secret, allowed).rc == 0
    denied = psql(src, conninfo, secret, refused)
    assert denied.rc != 0 and "permission denied" in denied.stderr, (refused, denied.stderr)
    wrong = psql(src, conninfo, secret + "x", "SELECT 1")
    # PostgreSQL says "password authentication failed", PgBouncer "SASL authentication failed"
    assert wrong.rc != 0 and re.search(r"(password|SASL) authentication failed", wrong.stderr), wrong.stderr


@pytest.mark.journal(PGBOUNCER)
def test_unde_ai_alias_through_pgbouncer(lab: Any, secrets: dict[str, Any]) -> None:
    """Clients that insist on a database named unde_ai reach unde_main (schema-qualified names)."""
    src = lab.host(LOCAL_APP)
    conninfo = dsn(lab.private_ip("production-db"), BOUNCER_PORT, "app", "unde_ai")
    res = psql(src, conninfo, password(secrets, "unde_main", "app"), "SELECT current_database()")
    assert res.rc == 0 and res.stdout.strip() == "unde_main", res.stderr


@pytest.mark.parametrize(("client", "db_host", "user"), NOT_LISTED)
@pytest.mark.journal(PG_UNIT, PGBOUNCER)
def test_user_from_a_host_not_listed_is_rejected(
    lab: Any, secrets: dict[str, Any], client: str, db_host: str, user: str
) -> None:
    database = DB_HOSTS[db_host]
    src = lab.host(client)
    kind = KIND[database]
    secret = credential_password(secrets, kind, user)
    direct = psql(src, dsn(lab.private_ip(db_host), PG_PORT, user, database), secret, "SELECT 1")
    assert direct.rc != 0
    assert f'no pg_hba.conf entry for host "{lab.private_ip(client)}", user "{user}"' in direct.stderr, (
        direct.stderr
    )
    bouncer = psql(src, dsn(lab.private_ip(db_host), BOUNCER_PORT, user, database), secret, "SELECT 1")
    assert bouncer.rc != 0
    assert "no authentication method" in bouncer.stderr or "no such user" in bouncer.stderr, bouncer.stderr


@pytest.mark.parametrize(("client", "db_host"), FIREWALLED)
@pytest.mark.journal("nftables")
def test_client_group_not_listed_is_dropped_by_the_firewall(lab: Any, client: str, db_host: str) -> None:
    ports = (PG_PORT, BOUNCER_PORT, EXPORTER_PORT, 22)
    # dropped; ssh (clients: all) answers, so the path itself works
    assert probe(lab.host(client), lab.private_ip(db_host), *ports) == [
        "timeout",
        "timeout",
        "timeout",
        "open",
    ]


@pytest.mark.parametrize("db_host", list(DB_HOSTS))
@pytest.mark.journal(PGBOUNCER)
def test_pgbouncer_serves_each_database(lab: Any, db_host: str) -> None:
    node = lab.host(db_host)
    out = bouncer_console(node, "SHOW DATABASES")
    served = {line.split("|")[0]: line.split("|")[3] for line in out.splitlines()}
    database = DB_HOSTS[db_host]
    expected = {database: database, "pgbouncer": "pgbouncer"}
    if database == "unde_main":
        expected["unde_ai"] = "unde_main"
    assert served == expected
    config = dict(line.split("|")[:2] for line in bouncer_console(node, "SHOW CONFIG").splitlines())
    assert (config["pool_mode"], config["auth_type"], config["listen_addr"]) == (
        "transaction",
        "hba",
        lab.private_ip(db_host),
    )
    userlist = node.file("/etc/pgbouncer/userlist.txt")
    assert (userlist.user, userlist.group, userlist.mode) == ("postgres", "postgres", 0o640)
    assert all('"SCRAM-SHA-256$' in line for line in userlist.content_string.splitlines())


# ----------------------------------------------------------------------------------- exporter


@pytest.mark.parametrize("db_host", list(DB_HOSTS))
@pytest.mark.journal(EXPORTER)
def test_exporter_reports_pg_up(lab: Any, db_host: str) -> None:
    node = lab.host(db_host)
    url = f"http://{lab.private_ip(db_host)}:{EXPORTER_PORT}/metrics"
    out = node.check_output("python3 -c %s %s", SCRAPE, url)
    assert out.startswith("200")
    assert "\npg_up 1\n" in out
    # connected over the unix socket as the monitoring login
    sessions = superuser(
        node,
        "postgres",
        "SELECT string_agg(DISTINCT coalesce(client_addr::text, 'socket'), ',') "
        "FROM pg_stat_activity WHERE usename = 'postgres_exporter'",
    )
    assert sessions == "socket"


# ----------------------------------------------------------------------------- storage profile


@pytest.mark.journal(PG_UNIT)
def test_shard_runs_the_nvme_profile(lab: Any) -> None:
    node = lab.host("local-shard-0")
    conf = node.file("/etc/postgresql/17/main/conf.d/50-unde.conf").content_string
    assert "profile shard_nvme" in conf
    # lab-scaled memory, the spec 03 value kept in the comment
    assert "shared_buffers = '32MB'  # profile: '8GB'" in conf
    assert "effective_cache_size = '128MB'  # profile: '24GB'" in conf
    live = {
        name: superuser(node, "postgres", f"SHOW {name}")
        for name in (
            "shared_buffers",
            "random_page_cost",
            "effective_io_concurrency",
            "synchronous_commit",
            "wal_level",
            "max_wal_senders",
            "checkpoint_timeout",
            "data_checksums",
            "data_directory",
            "password_encryption",
        )
    }
    assert live == {
        "shared_buffers": "32MB",
        "random_page_cost": "1.1",
        "effective_io_concurrency": "200",
        "synchronous_commit": "local",
        "wal_level": "replica",
        "max_wal_senders": "5",
        "checkpoint_timeout": "10min",
        "data_checksums": "on",
        "data_directory": "/var/lib/postgresql/17/main",
        "password_encryption": "scram-sha-256",
    }
    # every line of the drop-in is in effect, none waits for a restart
    pending = superuser(
        node,
        "postgres",
        "SELECT count(*) FROM pg_file_settings "
        "WHERE sourcefile LIKE '%/50-unde.conf' AND (NOT applied OR error IS NOT NULL)",
    )
    assert pending == "0"
    assert superuser(node, "postgres", "SELECT count(*) FROM pg_settings WHERE pending_restart") == "0"
    # nvme: no tmpfs, no kernel settings of the tmpfs profile
    assert not node.file("/etc/sysctl.d/70-unde-postgresql.conf").exists
    assert not node.mount_point("/pgdata").exists


def test_staging_runs_its_profile(lab: Any) -> None:
    node = lab.host("staging-db")
    assert superuser(node, "postgres", "SHOW wal_level") == "minimal"
    assert superuser(node, "postgres", "SHOW synchronous_commit") == "off"
    assert superuser(node, "postgres", "SHOW max_wal_senders") == "0"


# --------------------------------------------------------------- replication partner, wiring


@pytest.mark.journal(PG_UNIT, "nftables")
def test_replication_only_from_the_shard_partner(lab: Any, secrets: dict[str, Any]) -> None:
    conninfo = (
        f"host={lab.private_ip('local-shard-0')} port={PG_PORT} user=replicator dbname=replication "
        f"replication=true connect_timeout={PROBE_TIMEOUT_S}"
    )
    secret = str(secrets["vault_replication_password"])
    partner = psql(lab.host("shard-replica-0"), conninfo, secret, "IDENTIFY_SYSTEM")
    assert partner.rc == 0, partner.stderr
    other = psql(lab.host(LOCAL_APP), conninfo, secret, "IDENTIFY_SYSTEM")
    assert other.rc != 0
    assert (
        f'no pg_hba.conf entry for replication connection from host "{lab.private_ip(LOCAL_APP)}"'
        in other.stderr
    )


def test_converge_applies_the_playbooks_roles() -> None:
    """converge.yml runs the roles of playbooks/base.yml and of the three DB playbooks on the
    database servers in two plays (tests/../converge.yml): they must be the same roles (the shards'
    playbook adds Patroni, which molecule/shard_ha covers)."""

    def roles(play: dict[str, Any]) -> list[str]:
        return [r if isinstance(r, str) else r["role"] for r in play["roles"]]

    base_play, db_play = yaml.safe_load((Path(__file__).parents[1] / "converge.yml").read_text())
    (base,) = yaml.safe_load((REPO / "playbooks" / "base.yml").read_text())
    assert roles(base_play) == roles(base)
    assert base_play["become"] is base["become"] is True
    for playbook, hosts in (
        ("staging_db.yml", "staging_db"),
        ("production_db.yml", "production_db"),
    ):
        (play,) = yaml.safe_load((REPO / "playbooks" / playbook).read_text())
        assert play["hosts"] == hosts
        assert play["become"] is True
        assert roles(play) == roles(db_play), playbook
    # The shards run the same roles with Patroni in between (postgresql_patroni: true); this scenario
    # converges the shard without Patroni (roles/postgresql's own cluster), molecule/shard_ha with it.
    (shards,) = yaml.safe_load((REPO / "playbooks" / "shards.yml").read_text())
    assert shards["hosts"] == "shard_primary:shard_replica"
    assert shards["vars"]["postgresql_patroni"] is True
    # pgbouncer only where the group says
    assert [r for r in shards["roles"] if r != "patroni"] == db_play["roles"]


# ----------------------------------------------- handlers and the vault check (run last: they converge)


def _start_time(node: Host) -> str:
    return superuser(node, "postgres", "SELECT pg_postmaster_start_time()")


def _converge_staging(*extra: str) -> subprocess.CompletedProcess[str]:
    res = ansible_playbook(
        "playbooks/staging_db.yml",
        "--limit",
        "staging-db",
        "--tags",
        "postgresql_configure,postgresql_run",
        "--skip-tags",
        "postgresql_databases",
        *extra,
    )
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    return res


@pytest.mark.journal(PG_UNIT)
def test_reload_for_a_setting_restart_only_when_needed(lab: Any) -> None:
    """playbooks/staging_db.yml with a changed setting: reloaded, the server keeps running; then a
    setting that needs a restart: restarted. (The state stays changed: the scenario ends here.)"""
    node = lab.host("staging-db")
    started = _start_time(node)
    res = _converge_staging("-e", json.dumps({"postgresql_settings": {"work_mem": "8MB"}}))
    assert superuser(node, "postgres", "SHOW work_mem") == "8MB"
    assert _start_time(node) == started, "a reloadable setting restarted the server"
    assert "RUNNING HANDLER [postgresql : Reload postgresql]" in res.stdout
    res = _converge_staging("-e", json.dumps({"postgresql_settings": {"max_connections": 60}}))
    assert superuser(node, "postgres", "SHOW max_connections") == "60"
    assert superuser(node, "postgres", "SHOW work_mem") == "4MB"
    assert _start_time(node) != started, "max_connections changed without a restart"
    assert superuser(node, "postgres", "SELECT count(*) FROM pg_settings WHERE pending_restart") == "0"


def test_missing_vault_secret_stops_before_any_change(lab: Any) -> None:
    res = ansible_playbook(
        "playbooks/staging_db.yml",
        "--limit",
        "staging-db",
        "-e",
        "vault_staging_db_scraper_password=",
        "-e",
        "vault_staging_db_admin_password=",
    )
    assert res.returncode != 0
    assert "unde_staging_db_scraper_password" in res.stdout
    assert "unde_staging_db_admin_password" in res.stdout
    assert "unde_staging_db_apify_password" not in res.stdout.split("missing or empty credentials")[-1]
    recap = next(
        line for line in res.stdout.splitlines() if line.startswith("staging-db") and "failed=" in line
    )
    assert "changed=0" in recap and "failed=1" in recap, recap
