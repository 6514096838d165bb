"""Failover benchmark on the lab: RTO and raw RPO of shard 0 when its primary is killed.

`make bench-failover`.

Needs the shard_ha lab converged (molecule/shard_ha: etcd, Patroni on local-shard-0 + shard-replica-0,
Redis on local-redis) with local-shard-0 leading. local-app (api_gateway_app, the shard's real
client) runs bench/failover_load.py: ≥ 100 acknowledged inserts/s into ``messages`` as app_rw,
following the routing cache. Then ``labctl fault local-shard-0 kill`` (every process of the host,
SIGKILL: no leader key released) and the benchmark prints one JSON object:

* ``rto_s``: kill → first acknowledged insert on the new primary (the client's view);
* ``promotion_s``: kill → Patroni reports shard-replica-0 as leader; ``routing_s``: kill → the
  routing cache names it;
* ``acked_by_old_primary``, ``missing_on_new_primary`` (count) and ``missing_ids`` (each with the
  time it was acknowledged: raw RPO before any client replay);
* ``rejoin_s``: ``labctl up local-shard-0`` → it streams from the new primary (pg_rewind);
* ``switchback_s``: planned switchover back to local-shard-0 (playbooks/runbooks/switchover.yml).

The functions are also used by molecule/shard_ha/tests. Traffic goes only to lab hosts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
LABCTL = [sys.executable, str(REPO / "lab" / "labctl")]
SSH_KEY = REPO / ".lab" / "ssh" / "id_ed25519"
VAULT = REPO / "inventories" / "lab" / "secrets.vault.yml"
VAULT_ID = f"lab@{REPO / 'inventories' / 'lab' / 'vault-password.txt'}"
LOADER = REPO / "bench" / "failover_load.py"
ADDR = {
    "local-shard-0": "198.19.0.10",
    "shard-replica-0": "198.18.1.10",
    "local-redis": "198.19.0.4",
    "local-app": "198.19.0.2",
    "local-etcd-1": "198.19.0.50",
    "etcd-3": "198.18.1.20",
}
PRIMARY, REPLICA, CLIENT, REDIS = "local-shard-0", "shard-replica-0", "local-app", "local-redis"
PATRONICTL = "patronictl -c /etc/patroni/config.yml"
STOP_FILE = "/root/failover_load.stop"  # on the client host
SWITCH_MIN_HEALTHY_S = 5  # the lab's healthy period before a switchback (production: 600)
SSH_OPTS = [
    "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
    "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=5",
]  # fmt: skip


def vault() -> dict[str, Any]:
    exe = Path(sys.executable).parent / "ansible-vault"
    out = subprocess.run(
        [str(exe), "view", "--vault-id", VAULT_ID, str(VAULT)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "ANSIBLE_VAULT_IDENTITY_LIST": ""},
    ).stdout
    data: dict[str, Any] = yaml.safe_load(out)["all"]["vars"]
    return data


def ssh(
    host: str, command: str, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ssh", "-i", str(SSH_KEY), *SSH_OPTS, f"root@{ADDR[host]}", command],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def labctl(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LABCTL, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO)


def cluster(via: str = REPLICA) -> list[dict[str, Any]]:
    """``patronictl list`` (from the DCS) as seen from ``via``; [] when it cannot answer."""
    try:
        res = ssh(via, f"{PATRONICTL} list -f json", timeout=20)
    except subprocess.TimeoutExpired:
        return []
    if res.returncode != 0:
        return []
    members: list[dict[str, Any]] = json.loads(res.stdout or "[]")
    return members


def leader(members: list[dict[str, Any]]) -> str | None:
    for m in members:
        if m.get("Role") == "Leader" and m.get("State") == "running":
            return str(m["Member"])
    return None


def streaming(members: list[dict[str, Any]], member: str) -> bool:
    return any(m["Member"] == member and m.get("State") == "streaming" for m in members)


def timeline(members: list[dict[str, Any]]) -> int:
    return max((int(m.get("TL") or 0) for m in members), default=0)


def routing(secrets: dict[str, Any], key: str = "shard:0") -> dict[str, str]:
    res = ssh(
        REDIS,
        f"read -r REDISCLI_AUTH; export REDISCLI_AUTH; redis-cli --raw -n 12 hgetall {key}",
        stdin=str(secrets["vault_redis_hot_password"]) + "\n",
        timeout=20,
    )
    items = res.stdout.split("\n")
    return dict(zip(items[0::2], items[1::2], strict=False)) if res.returncode == 0 else {}


def wait(what: str, check: Callable[[], bool], timeout: float, step: float = 0.5) -> float:
    """Seconds until ``check()`` is true; raises TimeoutError naming ``what``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(step)
    raise TimeoutError(f"{what}: not within {timeout:.0f} s")


def prepare_client() -> None:
    """local-app: the loader and its two Debian packages (psycopg2, redis)."""
    res = labctl("up", "--timeout", "120", CLIENT)
    if res.returncode != 0:
        raise RuntimeError(f"labctl up {CLIENT}: {res.stdout}{res.stderr}")
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
        "redis_host": ADDR[REDIS],
        "redis_port": 6379,
        "redis_db": 12,
        "redis_password": secrets["vault_redis_hot_password"],
        "routing_key": "shard:0",
        "database": "unde_shard",
        "user": "app_rw",
        "password": secrets["vault_shard_db_app_rw_password"],
        "rate": rate,
        "duration_s": duration_s,
        "stop_file": STOP_FILE,
    }
    ssh(CLIENT, f"rm -f {STOP_FILE}")
    proc = subprocess.Popen(
        ["ssh", "-i", str(SSH_KEY), *SSH_OPTS, f"root@{ADDR[CLIENT]}", "python3 /root/failover_load.py"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
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


def healthy(members: list[dict[str, Any]], lead: str) -> bool:
    others = [m for m in members if m["Member"] != lead]
    return (
        leader(members) == lead
        and bool(others)
        and all(m.get("State") == "streaming" and m.get("Lag in MB") == 0 for m in others)
    )


def switchover(to: str, min_healthy_s: int = 5) -> subprocess.CompletedProcess[str]:
    """playbooks/runbooks/switchover.yml towards ``to`` (lab: short healthy period)."""
    env = {**os.environ, "ANSIBLE_VAULT_IDENTITY_LIST": VAULT_ID, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}
    return subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(REPO / "inventories" / "lab"),
         str(REPO / "playbooks" / "runbooks" / "switchover.yml"), "-e", f"switchover_candidate={to}",
         "-e", f"switchover_min_healthy_s={min_healthy_s}"],
        capture_output=True, text=True, timeout=600, env=env, cwd=REPO,
    )  # fmt: skip


def failover(
    rate: float = 150, warmup_s: float = 8, after_s: float = 40, switch_back: bool = True
) -> dict[str, Any]:
    """Kill the primary under load; the measurements (module docstring)."""
    secrets = vault()
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
    res = labctl("fault", PRIMARY, "kill")
    if res.returncode != 0:
        proc.kill()
        raise RuntimeError(f"labctl fault {PRIMARY} kill: {res.stdout}{res.stderr}")
    promotion_s = wait("promotion of the replica", lambda: leader(cluster()) == REPLICA, 90, 0.25)
    routing_s = wait("routing cache update", lambda: routing(secrets).get("host") == ADDR[REPLICA], 60, 0.25)
    load = finish_load(proc, timeout=warmup_s + after_s + 60)
    if not load["acked"]:
        raise RuntimeError(f"the loader acknowledged nothing: {load}")
    outage = next((o for o in load["outages"] if o["start"] >= t_kill - 1), None)
    rto_s = round(outage["end"] - t_kill, 3) if outage else None
    members = cluster()
    old_acked = int(load["acked_by"].get(ADDR[PRIMARY], 0))
    result: dict[str, Any] = {
        "rate_target_per_s": rate,
        "rate_achieved_per_s": load["rate_per_s"],
        "rate_before_kill_per_s": round(
            int(load["acked_by"].get(ADDR[PRIMARY], 0)) / max(t_kill - (load["first_ack"] or t_kill), 1e-3), 1
        ),
        "acked_total": load["acked"],
        "acked_by_old_primary": old_acked,
        "acked_by_new_primary": int(load["acked_by"].get(ADDR[REPLICA], 0)),
        "rto_s": rto_s,
        "promotion_s": round(promotion_s, 3),
        "routing_s": round(routing_s + promotion_s, 3),
        "missing_on_new_primary": len(load["missing_ids"]),
        "missing_ids": load["missing_ids"],
        "missing_all_acked_by_old_primary": all(m["acked_by"] == ADDR[PRIMARY] for m in load["missing_ids"]),
        "timeline_before": tl_before,
        "timeline_after": timeline(members),
        "leader_after": leader(members),
        "routing_after": routing(secrets),
        "rto_goal_s": 15,
        "rto_goal_met": rto_s is not None and rto_s <= 15,
        "open_outage_at_end": load["open_outage_since"] is not None,
    }
    t_up = time.monotonic()
    res = labctl("up", "--timeout", "120", PRIMARY)
    if res.returncode != 0:
        raise RuntimeError(f"labctl up {PRIMARY}: {res.stdout}{res.stderr}")
    wait("old primary rejoins as a streaming replica", lambda: streaming(cluster(), PRIMARY), 240, 1)
    result["rejoin_s"] = round(time.monotonic() - t_up, 3)
    if switch_back:
        t_sw = time.monotonic()
        # switchover.yml refuses a candidate that has streamed for less than its healthy period
        time.sleep(SWITCH_MIN_HEALTHY_S + 1)
        sw = switchover(PRIMARY, SWITCH_MIN_HEALTHY_S)
        if sw.returncode != 0:
            raise RuntimeError(f"switchover back failed:\n{sw.stdout[-4000:]}{sw.stderr[-2000:]}")
        wait("preferred primary leads again", lambda: healthy(cluster(), PRIMARY), 120, 1)
        result["switchback_s"] = round(time.monotonic() - t_sw, 3)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=150, help="inserts per second (≥ 100)")
    ap.add_argument("--after", type=float, default=40, help="seconds of load after the kill")
    ap.add_argument("--no-switch-back", action="store_true")
    args = ap.parse_args(argv)
    result = failover(rate=args.rate, after_s=args.after, switch_back=not args.no_switch_back)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
