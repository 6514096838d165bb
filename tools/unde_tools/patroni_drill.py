"""Patroni drills on the lab's shard 0: who leads, waiting for streaming and health, kill and rejoin,
the switch back through the runbook, and the failover measurement under write load.

One copy of these steps for `make bench-failover` (bench/failover.py) and molecule/shard_ha's tests.
Needs the shard_ha lab converged (molecule/shard_ha: etcd, Patroni on local-shard-0 +
shard-replica-0, Redis on local-redis). Member rows are ``patronictl list -f json`` rows.

``failover()`` runs bench/failover_load.py on local-app (api_gateway_app, the shard's real client):
≥ 100 acknowledged inserts/s into ``messages`` as app_rw, following the routing cache. Then
``labctl fault local-shard-0 kill`` (every process of the host, SIGKILL: no leader key released)
and it returns:

* ``rto_s``: kill → first acknowledged insert on the new primary (the client's view);
* ``promotion_s``: kill → Patroni reports shard-replica-0 as leader; ``routing_s``: kill → the
  routing cache names it;
* ``acked_by_old_primary``, ``missing_on_new_primary`` (count) and ``missing_ids`` (each with the
  time it was acknowledged: raw RPO before any client replay);
* ``rejoin_s``: ``labctl up local-shard-0`` → it streams from the new primary (pg_rewind);
* ``switchback_s``: planned switchover back to local-shard-0 (playbooks/runbooks/switchover.yml).
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import yaml

from unde_tools.lab_client import address, ansible_playbook, labctl_ok, ssh, ssh_popen, wait
from unde_tools.lab_ssh import REPO
from unde_tools.lab_vault import decrypt

PRIMARY, REPLICA, CLIENT, REDIS = "local-shard-0", "shard-replica-0", "local-app", "local-redis"
PATRONICTL = "patronictl -c /etc/patroni/config.yml"
SWITCH_MIN_HEALTHY_S = 5  # the lab's healthy period before a switchback (production: 600)
LOADER = REPO / "bench" / "failover_load.py"
STOP_FILE = "/root/failover_load.stop"  # on the client host
ROUTING_KEY = "shard:0"
_GROUP_VARS = REPO / "group_vars" / "all"
# the routing cache's Redis database and port, from the registries the roles render them from
_SERVICES = yaml.safe_load((_GROUP_VARS / "services.yml").read_text())["unde_services"]
ROUTING_DB: int = yaml.safe_load((_GROUP_VARS / "redis.yml").read_text())["unde_redis_db"]["shard_routing"]
REDIS_PORT: int = _SERVICES["redis_hot"]["port"]

Members = list[dict[str, Any]]


# --------------------------------------------------------------------------- the cluster's state


def cluster(via: str = REPLICA) -> Members:
    """``patronictl list`` (from the DCS) as seen from ``via``; [] when it cannot answer."""
    try:
        res = ssh(via, f"{PATRONICTL} list -f json", timeout=20)
    except subprocess.TimeoutExpired:
        return []
    if res.returncode != 0:
        return []
    members: Members = json.loads(res.stdout or "[]")
    return members


def leader(members: Members) -> str | None:
    for m in members:
        if m.get("Role") == "Leader" and m.get("State") == "running":
            return str(m["Member"])
    return None


def streaming(members: Members, member: str) -> bool:
    return any(m["Member"] == member and m.get("State") == "streaming" for m in members)


def timeline(members: Members) -> int:
    return max((int(m.get("TL") or 0) for m in members), default=0)


def healthy(members: Members, lead: str) -> bool:
    """``lead`` leads and every other member streams with no lag."""
    others = [m for m in members if m["Member"] != lead]
    return (
        leader(members) == lead
        and bool(others)
        and all(m.get("State") == "streaming" and m.get("Lag in MB") == 0 for m in others)
    )


def wait_leader(timeout: float = 120) -> str:
    """The member that leads (running), once there is one."""
    wait("a running leader", lambda: leader(cluster()) is not None, timeout, 2)
    found = leader(cluster())
    if found is None:  # lost it again in between: report what the cluster says
        raise TimeoutError(f"no running leader: {cluster()}")
    return found


def wait_streaming(member: str, timeout: float = 240, step: float = 1) -> float:
    return wait(f"{member} streams", lambda: streaming(cluster(), member), timeout, step)


def wait_healthy(lead: str, timeout: float = 120, step: float = 1) -> float:
    return wait(
        f"{lead} leads with the other member streaming", lambda: healthy(cluster(), lead), timeout, step
    )


def routing(secrets: dict[str, Any], key: str = ROUTING_KEY) -> dict[str, str]:
    """The routing cache entry on local-redis (host, port, member, ...); {} when unreadable."""
    res = ssh(
        REDIS,
        "read -r REDISCLI_AUTH; export REDISCLI_AUTH; "
        f"redis-cli --user admin --raw -n {ROUTING_DB} hgetall {key}",
        stdin=str(secrets["vault_redis_acl_passwords"]["admin"]) + "\n",
        timeout=20,
    )
    items = res.stdout.split("\n")
    return dict(zip(items[0::2], items[1::2], strict=False)) if res.returncode == 0 else {}


# --------------------------------------------------------------------------- drill steps


def kill(host: str) -> None:
    """SIGKILL every process of a lab host (no leader key released); disk and network stay."""
    labctl_ok("fault", host, "kill")


def rejoin(host: str, timeout: float = 240) -> float:
    """Boot a killed member again and wait until it streams; seconds from boot to streaming."""
    start = time.monotonic()
    labctl_ok("up", "--timeout", "120", host)
    wait(f"{host} rejoins as a streaming replica", lambda: streaming(cluster(), host), timeout, 1)
    return time.monotonic() - start


def switchover(to: str, min_healthy_s: int = SWITCH_MIN_HEALTHY_S) -> subprocess.CompletedProcess[str]:
    """playbooks/runbooks/switchover.yml towards ``to`` (lab: short healthy period)."""
    return ansible_playbook(
        "playbooks/runbooks/switchover.yml",
        "-e", f"switchover_candidate={to}",
        "-e", f"switchover_min_healthy_s={min_healthy_s}",
        timeout=600,
    )  # fmt: skip


def move_leader(to: str) -> float:
    """Move the lead to ``to`` through the runbook: wait until it streams, let it stream for the
    runbook's healthy period (the runbook refuses a candidate that only just started), switch
    over, wait until ``to`` leads with the other member streaming. Seconds it took."""
    start = time.monotonic()
    wait_streaming(to)
    time.sleep(SWITCH_MIN_HEALTHY_S + 1)
    sw = switchover(to)
    if sw.returncode != 0:
        raise RuntimeError(f"switchover to {to} failed:\n{sw.stdout[-4000:]}{sw.stderr[-2000:]}")
    wait_healthy(to)
    return time.monotonic() - start


# --------------------------------------------------------------------------- failover under load


def prepare_client() -> None:
    """local-app: the loader and its two Debian packages (psycopg2, redis)."""
    labctl_ok("up", "--timeout", "120", CLIENT)
    install = (
        "python3 -c 'import psycopg2, redis' 2>/dev/null || { apt-get update -q >/dev/null && "
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "
        "python3-psycopg2 python3-redis >/dev/null; }"
    )
    res = ssh(CLIENT, install, timeout=600)
    if res.returncode != 0:
        raise RuntimeError(f"{CLIENT}: cannot install python3-psycopg2, python3-redis: {res.stderr[-2000:]}")
    res = ssh(CLIENT, "cat > /root/failover_load.py", stdin=LOADER.read_text())
    if res.returncode != 0:
        raise RuntimeError(f"{CLIENT}: cannot copy the loader: {res.stderr}")


def start_load(secrets: dict[str, Any], rate: float, duration_s: float) -> subprocess.Popen[str]:
    conf = {
        "redis_host": address(REDIS),
        "redis_port": REDIS_PORT,
        "redis_db": ROUTING_DB,
        # a routing reader like the apps: read-only on shard:* (persona's ACL user)
        "redis_user": "persona_agent",
        "redis_password": secrets["vault_redis_acl_passwords"]["persona_agent"],
        "routing_key": ROUTING_KEY,
        "database": "unde_shard",
        "user": "app_rw",
        "password": secrets["vault_shard_db_app_rw_password"],
        "rate": rate,
        "duration_s": duration_s,
        "stop_file": STOP_FILE,
    }
    ssh(CLIENT, f"rm -f {STOP_FILE}")
    proc = ssh_popen(CLIENT, "python3 /root/failover_load.py")
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(conf))
    proc.stdin.close()
    proc.stdin = None  # communicate() must not touch it again
    return proc


def finish_load(proc: subprocess.Popen[str], timeout: float = 120) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    if proc.returncode != 0 or not out.strip():
        raise RuntimeError(f"loader failed ({proc.returncode}): {err[-3000:]}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def failover(
    rate: float = 150, warmup_s: float = 8, after_s: float = 40, switch_back: bool = True
) -> dict[str, Any]:
    """Kill the primary under load; the measurements (module docstring)."""
    secrets = decrypt()
    members = cluster()
    if not healthy(members, PRIMARY):
        raise RuntimeError(
            f"precondition: {PRIMARY} must lead with {REPLICA} streaming, got {members}; "
            "run playbooks/runbooks/switchover.yml -e switchover_candidate=local-shard-0 first"
        )
    tl_before = timeline(members)
    prepare_client()
    proc = start_load(secrets, rate, warmup_s + after_s)
    time.sleep(warmup_s)
    t_kill = time.time()
    try:
        kill(PRIMARY)
    except RuntimeError:
        proc.kill()
        raise
    promotion_s = wait("promotion of the replica", lambda: leader(cluster()) == REPLICA, 90, 0.25)
    routing_s = wait(
        "routing cache update", lambda: routing(secrets).get("host") == address(REPLICA), 60, 0.25
    )
    load = finish_load(proc, timeout=warmup_s + after_s + 60)
    if not load["acked"]:
        raise RuntimeError(f"the loader acknowledged nothing: {load}")
    outage = next((o for o in load["outages"] if o["start"] >= t_kill - 1), None)
    rto_s = round(outage["end"] - t_kill, 3) if outage else None
    members = cluster()
    old_acked = int(load["acked_by"].get(address(PRIMARY), 0))
    result: dict[str, Any] = {
        "rate_target_per_s": rate,
        "rate_achieved_per_s": load["rate_per_s"],
        "rate_before_kill_per_s": round(old_acked / max(t_kill - (load["first_ack"] or t_kill), 1e-3), 1),
        "acked_total": load["acked"],
        "acked_by_old_primary": old_acked,
        "acked_by_new_primary": int(load["acked_by"].get(address(REPLICA), 0)),
        "rto_s": rto_s,
        "promotion_s": round(promotion_s, 3),
        "routing_s": round(routing_s + promotion_s, 3),
        "missing_on_new_primary": len(load["missing_ids"]),
        "missing_ids": load["missing_ids"],
        "missing_all_acked_by_old_primary": all(
            m["acked_by"] == address(PRIMARY) for m in load["missing_ids"]
        ),
        "timeline_before": tl_before,
        "timeline_after": timeline(members),
        "leader_after": leader(members),
        "routing_after": routing(secrets),
        "rto_goal_s": 15,
        "rto_goal_met": rto_s is not None and rto_s <= 15,
        "open_outage_at_end": load["open_outage_since"] is not None,
    }
    result["rejoin_s"] = round(rejoin(PRIMARY), 3)
    if switch_back:
        result["switchback_s"] = round(move_leader(PRIMARY), 3)
    return result
