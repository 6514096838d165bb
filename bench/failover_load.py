#!/usr/bin/python3
"""Steady write load on a shard that follows the routing cache, for failover tests and bench/failover.py.

Runs ON a lab client host (local-app: api_gateway_app, admitted by the shard's firewall and pg_hba as
``app_rw``) with the distribution's python3-psycopg2 and python3-redis, like the API gateway would:
it reads the shard's primary from the routing cache on local-redis (hash ``shard:<index>``, written
by roles/patroni's callback), inserts one message per tick into ``messages`` (autocommit: each
acknowledged insert is a committed row), and on any error reconnects to whatever the routing cache
names, every 0.2 s. Nothing is replayed: the result is the raw RPO.

Settings come as one JSON object on stdin (passwords never on the command line). It stops after
``duration_s`` or when ``stop_file`` appears, then checks on the primary of that moment which
acknowledged ids are missing, and prints one JSON object:

``acked`` (count), ``acked_by`` (host -> count), ``errors``, ``connect_errors``, ``last_error``,
``outages`` (list of
{start, end, seconds, from_host, to_host}: first failed insert to the next acknowledged one),
``missing_ids`` (acknowledged but absent on the final primary, with the host that acknowledged
them), ``final_host``, ``rate_per_s`` (achieved), ``first_ack``/``last_ack`` (unix time).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import uuid
from typing import Any

import psycopg2  # type: ignore[import-untyped]
import redis  # type: ignore[import-not-found,unused-ignore]

CONNECT_TIMEOUT_S = 1
RETRY_S = 0.2
STATEMENT_TIMEOUT_MS = 2000


def route(r: redis.Redis, key: str) -> tuple[str, int] | None:
    try:
        raw = r.hgetall(key)
    except redis.RedisError:
        return None
    entry = {str(k, "utf-8") if isinstance(k, bytes) else str(k): v for k, v in raw.items()}
    if "host" not in entry:
        return None
    host = entry["host"]
    return (str(host, "utf-8") if isinstance(host, bytes) else str(host)), int(entry["port"])


def connect(conf: dict[str, Any], host: str, port: int) -> Any:
    conn = psycopg2.connect(
        host=host,
        port=port,
        dbname=conf["database"],
        user=conf["user"],
        password=conf["password"],
        connect_timeout=CONNECT_TIMEOUT_S,
        options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
        application_name="failover_load",
        keepalives=1,
        keepalives_idle=1,
        keepalives_interval=1,
        keepalives_count=2,
    )
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT pg_is_in_recovery()")
        (in_recovery,) = cur.fetchone()
    if in_recovery:
        conn.close()
        raise psycopg2.OperationalError(f"{host} is a replica (read-only)")
    return conn


def main() -> int:
    conf: dict[str, Any] = json.load(sys.stdin)
    r = redis.Redis(
        host=conf["redis_host"],
        port=conf["redis_port"],
        db=conf["redis_db"],
        username=conf["redis_user"],
        password=conf["redis_password"],
        socket_timeout=1,
        socket_connect_timeout=1,
    )
    key = conf["routing_key"]
    interval = 1.0 / float(conf["rate"])
    conversations = [str(uuid.uuid4()) for _ in range(int(conf.get("conversations", 16)))]
    deadline = time.time() + float(conf["duration_s"])
    stop_file = conf.get("stop_file", "")

    acked: list[tuple[str, str, str, float]] = []  # (conversation, id, host, time)
    outages: list[dict[str, Any]] = []
    errors = 0
    connect_errors = 0
    last_error = ""
    outage_start: float | None = None
    outage_from = ""
    conn = None
    host = ""
    next_tick = time.time()
    n = 0
    while time.time() < deadline and not (stop_file and os.path.exists(stop_file)):
        if conn is None:
            target = route(r, key)
            if target is None:
                time.sleep(RETRY_S)
                continue
            try:
                conn = connect(conf, *target)
                host = target[0]
            except psycopg2.Error as exc:
                conn = None
                connect_errors += 1
                last_error = str(exc).strip()
                time.sleep(RETRY_S)
                continue
        conversation = conversations[n % len(conversations)]
        msg_id = str(uuid.uuid4())
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "INSERT INTO messages (id, conversation_id, role, content) VALUES (%s, %s, 'user', %s)",
                    (msg_id, conversation, f"failover load {n}"),
                )
        except psycopg2.Error as exc:
            errors += 1
            last_error = str(exc).strip()
            if outage_start is None:
                outage_start, outage_from = time.time(), host
            with contextlib.suppress(psycopg2.Error):
                conn.close()
            conn = None
            time.sleep(RETRY_S)
            continue
        now = time.time()
        acked.append((conversation, msg_id, host, now))
        n += 1
        if outage_start is not None:
            outages.append(
                {
                    "start": outage_start,
                    "end": now,
                    "seconds": round(now - outage_start, 3),
                    "from_host": outage_from,
                    "to_host": host,
                }
            )
            outage_start = None
        next_tick += interval
        delay = next_tick - time.time()
        if delay > 0:
            time.sleep(delay)
        else:
            next_tick = time.time()

    # Which acknowledged rows does the primary of this moment have?
    missing: list[dict[str, Any]] = []
    final_host = ""
    for _ in range(150):
        target = route(r, key)
        try:
            if target is None:
                raise psycopg2.OperationalError("no route")
            check = connect(conf, *target)
        except psycopg2.Error:
            time.sleep(RETRY_S)
            continue
        final_host = target[0]
        ids = [a[1] for a in acked]
        with check.cursor() as cur:
            cur.execute("SELECT id::text FROM messages WHERE id = ANY(%s::uuid[])", (ids,))
            present = {row[0] for row in cur.fetchall()}
        check.close()
        missing = [
            {"conversation_id": c, "id": i, "acked_by": h, "acked_at": t}
            for c, i, h, t in acked
            if i not in present
        ]
        break
    by_host: dict[str, int] = {}
    for _, _, h, _ in acked:
        by_host[h] = by_host.get(h, 0) + 1
    span = (acked[-1][3] - acked[0][3]) if len(acked) > 1 else 0.0
    print(
        json.dumps(
            {
                "acked": len(acked),
                "acked_by": by_host,
                "errors": errors,
                "connect_errors": connect_errors,
                "last_error": last_error,
                "outages": outages,
                "open_outage_since": outage_start,
                "missing_ids": missing,
                "final_host": final_host,
                "rate_per_s": round(len(acked) / span, 1) if span else 0.0,
                "first_ack": acked[0][3] if acked else None,
                "last_ack": acked[-1][3] if acked else None,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
