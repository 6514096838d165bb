"""roles/pgbackrest/files/unde_backup.py: GFS retention, pgbackrest info parsing, the leader check
and the metrics (replication state read from a real PostgreSQL)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from sql.conftest import Postgres

UTC = dt.UTC
NOW = dt.datetime(2026, 6, 15, 13, 0, tzinfo=UTC)  # a Monday


def info_json(stanza: str, stops: Sequence[dt.datetime], kind: str = "full", repo: int = 1) -> str:
    backups = [
        {
            "label": s.strftime("%Y%m%d-%H%M%S") + ("F" if kind == "full" else "D"),
            "type": kind,
            "timestamp": {"start": int(s.timestamp()) - 60, "stop": int(s.timestamp())},
            "database": {"id": 1, "repo-key": repo},
        }
        for s in stops
    ]
    return json.dumps([{"name": stanza, "backup": backups, "status": {"code": 0}}])


def every_6h(runner: ModuleType, days: int) -> list[Any]:
    stops = [NOW - dt.timedelta(hours=6 * i) for i in range(days * 4)]
    return list(runner.parse_info(info_json("shard-0", stops), "shard-0"))


def test_gfs_keeps_7_daily_4_weekly_3_monthly(runner: ModuleType) -> None:
    sets = every_6h(runner, 120)  # four months of base backups every 6 h
    keep = runner.gfs_keep(sets, 7, 4, 3)
    kept = sorted((s for s in sets if s.label in keep), key=lambda s: s.stop, reverse=True)
    days = {s.stop.date() for s in kept}
    # the newest backup of each of the last 7 days
    for i in range(7):
        day = (NOW - dt.timedelta(days=i)).date()
        newest = max(s.stop for s in sets if s.stop.date() == day)
        assert newest.date() in days and any(s.stop == newest for s in kept)
    weeks = {s.stop.isocalendar()[:2] for s in kept}
    assert len({(NOW - dt.timedelta(weeks=i)).isocalendar()[:2] for i in range(4)} - weeks) == 0
    months = {s.stop.strftime("%Y-%m") for s in kept}
    assert {"2026-06", "2026-05", "2026-04"} <= months
    assert "2026-02" not in months  # older than 3 months: gone
    assert len(kept) <= 7 + 4 + 3
    assert kept[0].stop == NOW  # the newest is always kept
    plan = runner.gfs_expire_plan(sets, 7, 4, 3)
    assert set(plan) == {s.label for s in sets} - keep
    assert plan == sorted(plan)  # oldest first (labels sort by time)


def test_gfs_with_few_backups_keeps_the_newest_of_each_day(runner: ModuleType) -> None:
    sets = every_6h(runner, 1)  # 13:00, 07:00, 01:00 of the 15th and 19:00 of the 14th
    assert runner.gfs_expire_plan(sets, 7, 4, 3) == ["20260615-010000F", "20260615-070000F"]
    assert runner.gfs_expire_plan([], 7, 4, 3) == []
    assert runner.gfs_expire_plan(sets[:1], 7, 4, 3) == []


def test_gfs_ignores_differential_backups(runner: ModuleType) -> None:
    diffs = runner.parse_info(info_json("s", [NOW - dt.timedelta(days=40)], kind="diff"), "s")
    fulls = runner.parse_info(info_json("s", [NOW]), "s")
    assert runner.gfs_expire_plan(diffs + fulls, 1, 1, 1) == []


def test_parse_info_filters_stanza_and_repo(runner: ModuleType) -> None:
    doc = json.loads(info_json("a", [NOW], repo=1)) + json.loads(info_json("b", [NOW], repo=2))
    assert [s.label for s in runner.parse_info(json.dumps(doc), "b")] == ["20260615-130000F"]
    assert runner.parse_info(json.dumps(doc), "b", repo=1) == []
    assert runner.parse_info(json.dumps(doc), "missing") == []


class Recorder:
    """Stands in for subprocess only where pgbackrest itself would run; psql answers are given."""

    def __init__(self, in_recovery: str, info: str = "[]") -> None:
        self.calls: list[list[str]] = []
        self.in_recovery = in_recovery
        self.info = info

    def __call__(self, argv: Sequence[str]) -> str:
        self.calls.append(list(argv))
        if argv[0] == "psql":
            return self.in_recovery + "\n"
        if argv[-1] == "info":
            return self.info
        return ""


def _args(**kw: Any) -> argparse.Namespace:
    base = {"stanza": "shard-0", "psql": ["psql"], "repo": 1, "type": "full"}
    return argparse.Namespace(**{**base, **kw})


def test_backup_runs_only_on_the_leader(runner: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    replica = Recorder("t")
    assert runner.cmd_backup(_args(), replica) == 0
    assert [c for c in replica.calls if c[0] == "pgbackrest"] == []
    assert "replica" in capsys.readouterr().out
    leader = Recorder("f", info_json("shard-0", [NOW]))
    assert runner.cmd_backup(_args(), leader) == 0
    assert ["pgbackrest", "--stanza=shard-0", "--repo=1", "--type=full", "backup"] in leader.calls


def test_gfs_expire_command_expires_by_set(runner: ModuleType) -> None:
    stops = [NOW - dt.timedelta(days=i) for i in range(10)]
    rec = Recorder("f", info_json("shard-0", stops))
    assert runner.cmd_gfs_expire(_args(daily=7, weekly=0, monthly=0), rec) == 0
    expired = [c[3] for c in rec.calls if c[-1] == "expire"]
    assert expired == ["--set=20260606-130000F", "--set=20260607-130000F", "--set=20260608-130000F"]


def test_metrics_of_a_real_primary(runner: ModuleType, pg: Postgres, tmp_path: Path) -> None:
    with pg.connect(autocommit=True) as conn:
        conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots")
        conn.execute("SELECT pg_create_physical_replication_slot('shard_replica_0', true)")
        conn.execute("CREATE TABLE IF NOT EXISTS wal_filler (x text)")
        conn.execute("INSERT INTO wal_filler SELECT repeat('x', 1000) FROM generate_series(1, 2000)")
    psql = [pg.psql, "-h", pg.socket_dir, "-U", "postgres", "-d", "postgres"]
    state = runner.replication_state(psql)
    assert state["in_recovery"] is False
    assert state["replicas_streaming"] == 0
    assert state["slots"][0]["slot"] == "shard_replica_0"
    assert state["slots"][0]["wal_bytes"] > 1_000_000  # the slot holds the WAL of the inserts
    sets = {
        "objstore": runner.parse_info(info_json("shard-0", [NOW - dt.timedelta(hours=3)]), "shard-0"),
        "snapshot": [],
    }
    body = runner.render_metrics("shard-0", "shard", sets, state, NOW)
    values = dict(re.findall(r"^(\w+\{[^}]*\}) (\S+)$", body, re.M))
    assert float(values['basebackup_last_age_hours{stanza="shard-0"}']) == pytest.approx(3.0)
    assert values['local_snapshot_age_hours{role="primary",stanza="shard-0"}'] == "+Inf"
    assert values['replica_up{role="primary",stanza="shard-0"}'] == "0.0"
    assert values['replication_lag_seconds{role="primary",stanza="shard-0"}'] == "0.0"
    slot = 'replication_slot_wal_bytes{active="false",role="primary",slot="shard_replica_0",stanza="shard-0"}'
    assert float(values[slot]) > 1_000_000
    assert "pgbackrest_last_full_age_hours" not in body
    with pg.connect(autocommit=True) as conn:
        conn.execute("SELECT pg_drop_replication_slot('shard_replica_0')")
        conn.execute("DROP TABLE wal_filler")
    out = tmp_path / "unde_backup.prom"
    runner.write_textfile(str(out), body)
    assert out.read_text() == body and oct(out.stat().st_mode & 0o777) == "0o644"


def test_metrics_of_production(runner: ModuleType) -> None:
    sets = {
        "storagebox": runner.parse_info(info_json("production", [NOW - dt.timedelta(days=8)]), "production")
    }
    body = runner.render_metrics("production", "production", sets, None, NOW, errors=["repo1: timeout"])
    assert 'pgbackrest_last_full_age_hours{stanza="production"} 192.0' in body
    assert 'unde_backup_metrics_errors{stanza="production"} 1.0' in body
    assert "replica_up" not in body and "basebackup_last_age_hours" not in body
