"""Shard high availability on lab hosts: etcd + Patroni + routing cache.

Converged by converge.yml (the playbooks base, redis, etcd, shards). What is proved:

* etcd: three members healthy over TLS, a client without a certificate from the project's CA is
  refused, the `patroni` user may write only under /service/; hardened units;
* Patroni: local-shard-0 leads (preferred primary), shard-replica-0 streams with lag 0 through its
  replication slot, synchronous_commit = local, the REST API refuses unsafe calls without the password;
* routing: the cache on local-redis names the leader; a deleted entry is restored by the timer;
* automatic failover under write load (unde_tools.patroni_drill, the code of `make bench-failover`): the
  primary is killed, the replica is promoted (higher timeline), the routing cache names it, writes
  resume there, every acknowledged row missing on the new primary was acknowledged by the old one,
  the old primary rejoins as a streaming replica (pg_rewind), and the switchover runbook moves the
  leader back (manual failback);
* quorum: a partition of the local site from Helsinki demotes the local primary (read-only, no
  split brain) while Helsinki promotes the replica; after healing, the old primary follows.

Timings are reported by `make bench-failover`, never asserted here.
"""

from __future__ import annotations

from typing import Any

import pytest
from unde_tools import patroni_drill as drill
from unde_tools.lab_client import address, labctl, ssh, wait
from unde_tools.patroni_drill import PRIMARY, REPLICA

pytestmark = pytest.mark.lab

LOCAL_SITE = ["local-shard-0", "local-etcd-1", "local-redis", "local-app"]
ETCDCTL = (
    "ETCDCTL_API=3 etcdctl --endpoints https://127.0.0.1:2379 --cacert /etc/etcd/ssl/ca.crt "
    "--cert /etc/etcd/ssl/root.crt --key /etc/etcd/ssl/root.key"
)


@pytest.mark.journal("etcd")
def test_etcd_three_members_tls_and_auth(secrets: dict[str, Any]) -> None:
    res = ssh("etcd-3", f"{ETCDCTL} endpoint health --cluster -w json")
    assert res.returncode == 0, res.stderr
    assert res.stdout.count('"health":true') == 3, res.stdout
    plain = ssh("etcd-3", "ETCDCTL_API=3 etcdctl --endpoints https://127.0.0.1:2379 "
                   "--cacert /etc/etcd/ssl/ca.crt --command-timeout=3s get /x")  # fmt: skip
    assert plain.returncode != 0
    # patroni: password login (as Patroni does), read/write under /service/ only
    user = f"patroni:{secrets['vault_etcd_patroni_password']}"
    base = (
        "ETCDCTL_API=3 etcdctl --endpoints https://127.0.0.1:2379 --cacert /etc/etcd/ssl/ca.crt "
        '--cert /etc/patroni/ssl/patroni.crt --key /etc/patroni/ssl/patroni.key --user "$(cat)"'
    )
    inside = ssh(REPLICA, f"{base} get --prefix --keys-only /service/unde-shard-0/leader", stdin=user)
    assert inside.returncode == 0, inside.stderr
    assert "/service/unde-shard-0/leader" in inside.stdout
    outside = ssh(REPLICA, f"{base} put /elsewhere x", stdin=user)
    assert outside.returncode != 0
    assert "permission denied" in outside.stderr


@pytest.mark.parametrize(("host", "unit"), [("etcd-3", "etcd"), (PRIMARY, "patroni"), (REPLICA, "patroni")])
def test_units_are_hardened(host: str, unit: str) -> None:
    res = ssh(host, f"systemctl show {unit} -p ProtectSystem -p NoNewPrivileges -p PrivateTmp -p MemoryMax")
    props = dict(line.split("=", 1) for line in res.stdout.split())
    assert props["ProtectSystem"] == "strict"
    assert props["NoNewPrivileges"] == "yes"
    assert props["PrivateTmp"] == "yes"
    assert props["MemoryMax"] != "infinity"


@pytest.mark.journal("patroni")
def test_preferred_primary_leads_and_replica_streams_through_its_slot() -> None:
    members = drill.cluster()
    assert drill.healthy(members, PRIMARY), members
    sql = (
        "SELECT current_setting('synchronous_commit'), "
        "(SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'shard_replica_0' AND active), "
        "(SELECT count(*) FROM pg_stat_replication"
        " WHERE application_name = 'shard-replica-0' AND state = 'streaming')"
    )
    res = ssh(PRIMARY, f'su postgres -c "psql -XAtF, -c \\"{sql}\\""')
    assert res.stdout.strip() == "local,1,1", res.stdout + res.stderr


def test_rest_api_refuses_unsafe_calls_without_the_password() -> None:
    probe = (
        'python3 -c "import ssl, urllib.request, urllib.error\n'
        "try:\n urllib.request.urlopen(\n"
        "  urllib.request.Request('https://198.19.0.10:8008/restart', method='POST'),\n"
        # HTTPS verified with the internal CA (a certificate error would print no status)
        "  context=ssl.create_default_context(cafile='/etc/unde/tls/postgresql/ca.crt'))\n"
        'except urllib.error.HTTPError as e:\n print(e.code)"'
    )
    res = ssh(REPLICA, probe)
    assert res.stdout.strip() == "401", res.stdout + res.stderr


@pytest.mark.journal("patroni-routing")
def test_routing_cache_names_the_leader_and_the_timer_restores_it(secrets: dict[str, Any]) -> None:
    entry = drill.routing(secrets)
    assert entry["host"] == address(PRIMARY), entry
    assert entry["member"] == PRIMARY
    deleted = ssh(
        drill.REDIS,
        "read -r REDISCLI_AUTH; export REDISCLI_AUTH; "
        f"redis-cli --user admin -n {drill.ROUTING_DB} del {drill.ROUTING_KEY}",
        stdin=str(secrets["vault_redis_acl_passwords"]["admin"]) + "\n",
    )
    # the entry was there and is gone now (the 5 s timer may already have put it back: no read here)
    assert deleted.stdout.strip() == "1", deleted.stdout + deleted.stderr
    wait(
        "routing entry restored by the timer",
        lambda: drill.routing(secrets).get("host") == address(PRIMARY),
        30,
    )


@pytest.mark.journal("patroni")
def test_automatic_failover_under_write_load_then_rejoin_and_failback() -> None:
    result = drill.failover(rate=120, warmup_s=5, after_s=35, switch_back=True)
    assert result["leader_after"] == REPLICA
    assert result["timeline_after"] > result["timeline_before"]
    assert result["routing_after"]["host"] == address(REPLICA)
    assert result["acked_by_old_primary"] > 0
    assert result["acked_by_new_primary"] > 0, result  # writes resumed on the promoted replica
    assert result["rto_s"] is not None
    assert not result["open_outage_at_end"]
    # raw RPO: whatever is missing was acknowledged by the killed primary, each row named by id
    assert result["missing_all_acked_by_old_primary"], result["missing_ids"]
    assert len(result["missing_ids"]) == result["missing_on_new_primary"]
    # the old primary came back as a replica (pg_rewind) and the runbook moved the leader back
    assert "rejoin_s" in result
    assert "switchback_s" in result
    assert drill.healthy(drill.cluster(), PRIMARY)


def _local_role() -> str:
    """What the local shard's PostgreSQL is, asked on the host itself (no cross-site traffic)."""
    res = labctl("exec", PRIMARY, "--", "su", "postgres", "-c", "psql -XAtc 'SELECT pg_is_in_recovery()'")
    return {"t": "read-only", "f": "primary"}.get(res.stdout.strip(), "down")


@pytest.mark.journal("patroni")
def test_partition_of_the_local_site_demotes_the_local_primary(secrets: dict[str, Any]) -> None:
    assert drill.healthy(drill.cluster(), PRIMARY)
    tl_before = drill.timeline(drill.cluster())
    try:
        for host in LOCAL_SITE:
            res = labctl("fault", host, "partition")
            assert res.returncode == 0, res.stdout + res.stderr
        # Helsinki has the etcd quorum (etcd-2 on shard-replica-0, etcd-3): the replica is promoted ...
        wait("Helsinki promotes the replica", lambda: drill.leader(drill.cluster()) == REPLICA, 90, 1)
        # ... and the local primary, without quorum, cannot keep its leader key: it goes read-only.
        wait("the local primary demotes itself", lambda: _local_role() != "primary", 90, 1)
        assert _local_role() in ("read-only", "down")
    finally:
        for host in LOCAL_SITE:
            labctl("fault", host, "heal")
    drill.wait_streaming(PRIMARY, 240, 2)  # the old primary follows the new one
    assert drill.timeline(drill.cluster()) > tl_before
    # the timer publishes the Helsinki leader once local-redis is reachable again
    wait("routing names the replica", lambda: drill.routing(secrets).get("host") == address(REPLICA), 60, 1)
    drill.move_leader(PRIMARY)  # the preferred primary leads again
