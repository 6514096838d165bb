#!/usr/bin/python3
"""UNDE backup runner on a database server (installed by roles/pgbackrest).

Subcommands (each prints what it did, exits non-zero on failure):

* ``backup --type full|diff --repo N``: runs ``pgbackrest backup`` for the stanza, but only on a
  primary: on a Patroni replica (``pg_is_in_recovery()``) it prints that the leader does it and
  exits 0, so the same timer can run on every member of a shard cluster.
* ``gfs-expire --repo N --daily 7 --weekly 4 --monthly 3``: grandfather-father-son retention.
  pgBackRest retention is count-based only, so the repository keeps every full backup
  (retention-full is set very high) and this command expires, with ``pgbackrest expire --set``,
  every full backup that is not the newest of one of the last N days, weeks or months that have
  backups. WAL older than the oldest kept backup is then removed by pgBackRest itself.
* ``metrics --textfile PATH``: writes the backup/replication gauges for node_exporter's textfile
  collector (atomically): pgbackrest_last_full_age_hours, basebackup_last_age_hours,
  local_snapshot_age_hours, replication_lag_seconds, replica_up, replication_slot_wal_bytes.

Only the standard library: the host's python3, psql and pgbackrest.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

UTC = dt.UTC
Runner = Callable[[Sequence[str]], str]


class BackupError(RuntimeError):
    """A failed step, with the command and its output."""


def run(argv: Sequence[str]) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BackupError(
            f"{' '.join(argv)} failed (rc {proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}"
        )
    return proc.stdout


@dataclass(frozen=True)
class BackupSet:
    label: str
    type: str
    stop: dt.datetime


def parse_info(info_json: str, stanza: str, repo: int | None = None) -> list[BackupSet]:
    """Backup sets of ``stanza`` (optionally of one repository) from ``pgbackrest info --output=json``."""
    data = json.loads(info_json)
    out: list[BackupSet] = []
    for st in data:
        if st.get("name") != stanza:
            continue
        for b in st.get("backup") or []:
            key = (b.get("database") or {}).get("repo-key")
            if repo is not None and key is not None and int(key) != repo:
                continue
            stop = dt.datetime.fromtimestamp(int(b["timestamp"]["stop"]), tz=UTC)
            out.append(BackupSet(str(b["label"]), str(b["type"]), stop))
    return sorted(out, key=lambda s: s.stop)


def gfs_keep(sets: Iterable[BackupSet], daily: int, weekly: int, monthly: int) -> set[str]:
    """Labels of the full backups to keep: the newest one overall, and the newest of each of the
    last ``daily`` days, ``weekly`` ISO weeks and ``monthly`` months (UTC) that have a backup."""
    fulls = sorted((s for s in sets if s.type == "full"), key=lambda s: s.stop, reverse=True)
    if not fulls:
        return set()
    keep = {fulls[0].label}
    for count, bucket in (
        (daily, lambda t: t.date().isoformat()),
        (weekly, lambda t: "{}-W{:02d}".format(*t.isocalendar()[:2])),
        (monthly, lambda t: t.strftime("%Y-%m")),
    ):
        seen: list[str] = []
        for s in fulls:  # newest first: the first set of a bucket is its newest
            b = bucket(s.stop)
            if b in seen:
                continue
            if len(seen) >= count:
                break
            seen.append(b)
            keep.add(s.label)
    return keep


def gfs_expire_plan(sets: Sequence[BackupSet], daily: int, weekly: int, monthly: int) -> list[str]:
    """Full backup labels to expire, oldest first."""
    keep = gfs_keep(sets, daily, weekly, monthly)
    return [s.label for s in sorted(sets, key=lambda s: s.stop) if s.type == "full" and s.label not in keep]


def pgbackrest(stanza: str, *args: str) -> list[str]:
    return ["pgbackrest", f"--stanza={stanza}", *args]


def in_recovery(psql: Sequence[str], runner: Runner = run) -> bool:
    return runner([*psql, "-XAtc", "SELECT pg_is_in_recovery()"]).strip() == "t"


def cmd_backup(args: argparse.Namespace, runner: Runner = run) -> int:
    if in_recovery(args.psql, runner):
        print(f"{args.stanza}: replica (pg_is_in_recovery): the primary takes the backup. Nothing done.")
        return 0
    print(f"{args.stanza}: {args.type} backup to repo{args.repo} ...", flush=True)
    extra = ["--no-archive-check"] if getattr(args, "no_archive_check", False) else []
    out = runner(pgbackrest(args.stanza, f"--repo={args.repo}", f"--type={args.type}", *extra, "backup"))
    if out.strip():
        print(out.strip())
    info = parse_info(
        runner(pgbackrest(args.stanza, f"--repo={args.repo}", "--output=json", "info")), args.stanza
    )
    newest = info[-1] if info else None
    print(f"{args.stanza}: done, newest backup in repo{args.repo}: {newest.label if newest else '(none)'}")
    return 0


def cmd_gfs_expire(args: argparse.Namespace, runner: Runner = run) -> int:
    if in_recovery(args.psql, runner):
        print(f"{args.stanza}: replica, retention is applied by the primary. Nothing done.")
        return 0
    sets = parse_info(
        runner(pgbackrest(args.stanza, f"--repo={args.repo}", "--output=json", "info")), args.stanza
    )
    plan = gfs_expire_plan(sets, args.daily, args.weekly, args.monthly)
    kept = len([s for s in sets if s.type == "full"]) - len(plan)
    for label in plan:
        runner(pgbackrest(args.stanza, f"--repo={args.repo}", f"--set={label}", "expire"))
        print(f"{args.stanza}: expired {label} (repo{args.repo})")
    print(
        f"{args.stanza}: repo{args.repo} keeps {kept} full backup(s) "
        f"({args.daily} daily + {args.weekly} weekly + {args.monthly} monthly), expired {len(plan)}"
    )
    return 0


# --- metrics -------------------------------------------------------------------------------


def age_hours(
    sets: Sequence[BackupSet], now: dt.datetime, types: tuple[str, ...] = ("full",)
) -> float | None:
    stops = [s.stop for s in sets if s.type in types]
    return (now - max(stops)).total_seconds() / 3600 if stops else None


REPLICATION_SQL = """
SELECT json_build_object(
  'in_recovery', pg_is_in_recovery(),
  'lag_seconds', CASE WHEN pg_is_in_recovery() THEN
      CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
           ELSE COALESCE(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0) END
    ELSE (SELECT COALESCE(max(extract(epoch FROM replay_lag)), 0) FROM pg_stat_replication) END,
  'replicas_streaming', (SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'),
  'receiver_streaming', (SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'),
  'slots', COALESCE((SELECT json_agg(json_build_object('slot', slot_name, 'active', active,
      'wal_bytes', CASE WHEN restart_lsn IS NULL THEN 0 ELSE pg_wal_lsn_diff(
          CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END,
          restart_lsn) END) ORDER BY slot_name)
    FROM pg_replication_slots), '[]'::json)
)::text
"""


def replication_state(psql: Sequence[str], runner: Runner = run) -> dict[str, Any]:
    state: dict[str, Any] = json.loads(runner([*psql, "-XAtc", REPLICATION_SQL]).strip())
    return state


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _value(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    if value == float("-inf"):
        return "-Inf"
    return repr(float(value))


def _role(replication: dict[str, Any]) -> str:
    return "replica" if replication["in_recovery"] else "primary"


def render_metrics(
    stanza: str,
    kind: str,
    repos: dict[str, list[BackupSet]],
    replication: dict[str, Any] | None,
    now: dt.datetime,
    errors: Sequence[str] = (),
) -> str:
    """The textfile body. ``kind``: production|staging|shard; ``repos``: role -> backup sets, roles
    ``storagebox`` (production/staging), ``objstore`` and ``snapshot`` (shards)."""
    lines: list[str] = []

    def gauge(name: str, help_text: str, samples: list[tuple[dict[str, str], float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} gauge")
        for labels, value in samples:
            lab = ",".join(f'{k}="{_label(v)}"' for k, v in sorted(labels.items()))
            text = _value(value)
            lines.append(f"{name}{{{lab}}} {text}" if lab else f"{name} {text}")

    base = {"stanza": stanza}
    never = float("inf")

    def age(role: str) -> float:
        a = age_hours(repos.get(role, []), now)
        return never if a is None else a

    if kind in ("production", "staging"):
        gauge(
            "pgbackrest_last_full_age_hours",
            "Hours since the newest full pgBackRest backup finished (Storage Box); +Inf when there is none.",
            [(base, age("storagebox"))],
        )
    if kind == "shard":
        gauge(
            "basebackup_last_age_hours",
            "Hours since the newest base backup of the shard finished (Object Storage); +Inf when none.",
            [(base, age("objstore"))],
        )
        # Only the leader takes snapshots (on its own NVMe): the role label lets the alert look at
        # the primary's age, not at a replica that has never led (+Inf there is expected).
        snap = base if replication is None else {**base, "role": _role(replication)}
        gauge(
            "local_snapshot_age_hours",
            "Hours since the newest local lz4 snapshot on this host's NVMe finished (taken by the leader"
            " only; alert on role=primary); +Inf when none.",
            [(snap, age("snapshot"))],
        )
    if replication is not None:
        rl = {**base, "role": _role(replication)}
        gauge(
            "replication_lag_seconds",
            "Replication lag: replica: replay delay (0 when caught up); primary: largest replay_lag.",
            [(rl, float(replication["lag_seconds"] or 0))],
        )
        up = (
            float(replication["receiver_streaming"] > 0)
            if replication["in_recovery"]
            else float(replication["replicas_streaming"] > 0)
        )
        gauge(
            "replica_up",
            "1 when streaming replication is up (primary: a replica streams; replica: it streams).",
            [(rl, up)],
        )
        gauge(
            "replication_slot_wal_bytes",
            "WAL bytes retained by each replication slot (current LSN minus restart_lsn).",
            [
                (
                    {**rl, "slot": s["slot"], "active": str(bool(s["active"])).lower()},
                    float(s["wal_bytes"] or 0),
                )
                for s in replication["slots"]
            ],
        )
    gauge(
        "unde_backup_metrics_errors",
        "Steps that failed while collecting these metrics (see the unit's journal).",
        [(base, float(len(errors)))],
    )
    gauge(
        "unde_backup_metrics_timestamp_seconds", "When these metrics were written.", [(base, now.timestamp())]
    )
    return "\n".join(lines) + "\n"


def write_textfile(path: str, body: str) -> None:
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".unde_backup.", dir=directory)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(body)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def cmd_metrics(args: argparse.Namespace, runner: Runner = run) -> int:
    now = dt.datetime.now(tz=UTC)
    errors: list[str] = []
    repos: dict[str, list[BackupSet]] = {}
    for spec in args.repo_role:
        role, _, num = spec.partition("=")
        try:
            out = runner(
                [*args.as_postgres, *pgbackrest(args.stanza, f"--repo={num}", "--output=json", "info")]
            )
            repos[role] = parse_info(out, args.stanza)
        except (BackupError, ValueError, KeyError) as exc:
            errors.append(f"repo{num} ({role}): {exc}")
    replication = None
    if args.replication:
        try:
            replication = replication_state([*args.as_postgres, *args.psql], runner)
        except (BackupError, ValueError) as exc:
            errors.append(f"replication: {exc}")
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    write_textfile(args.textfile, render_metrics(args.stanza, args.kind, repos, replication, now, errors))
    print(f"{args.stanza}: wrote {args.textfile} ({len(errors)} error(s))")
    return 1 if errors else 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--stanza", required=True)
    ap.add_argument("--pg-port", default="5432", help="port of the local PostgreSQL (unix socket)")
    ap.add_argument("--pg-socket", default="/var/run/postgresql", help="socket directory")
    sub = ap.add_subparsers(dest="command", required=True)
    b = sub.add_parser("backup")
    b.add_argument("--type", choices=["full", "diff", "incr"], required=True)
    b.add_argument("--repo", type=int, default=1)
    b.add_argument(
        "--no-archive-check", action="store_true", help="the repository holds no WAL (shard snapshot, repo2)"
    )
    g = sub.add_parser("gfs-expire")
    g.add_argument("--repo", type=int, default=1)
    g.add_argument("--daily", type=int, required=True)
    g.add_argument("--weekly", type=int, required=True)
    g.add_argument("--monthly", type=int, required=True)
    m = sub.add_parser("metrics")
    m.add_argument("--kind", choices=["production", "staging", "shard"], required=True)
    m.add_argument("--textfile", required=True)
    m.add_argument("--repo-role", action="append", default=[], help="ROLE=N: storagebox|objstore|snapshot")
    m.add_argument("--replication", action="store_true")
    m.add_argument(
        "--as-postgres",
        action="store_true",
        help="run as postgres (setpriv)",
    )
    args = ap.parse_args(argv)
    args.psql = ["psql", "-h", args.pg_socket, "-p", str(args.pg_port), "-d", "postgres"]
    if getattr(args, "as_postgres", False):
        args.as_postgres = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]
    else:
        args.as_postgres = []
    try:
        if args.command == "backup":
            return cmd_backup(args)
        if args.command == "gfs-expire":
            return cmd_gfs_expire(args)
        return cmd_metrics(args)
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
