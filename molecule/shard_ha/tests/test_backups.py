"""Shard backups in the shard_ha scenario: WAL archive + base backup to the Object
Storage stand-in, the NVMe snapshot, metrics, restore from each source (snapshot, replica, PITR)
and apply_deletions after each restore: no deleted message stays readable.

Needs the scenario to converge playbooks/lab_standins.yml (lab-objstore) and playbooks/backups.yml
on the shard members. The tombstone registry is given as a file (the registry's Object Storage
copy; production-db is not part of this scenario), the path apply_deletions.yml documents.
Tests run in file order: each restore leaves the shard healthy for the next.
"""

# ruff: noqa: S608  (SQL text built from uuids this module generates, run through psql on lab hosts)
from __future__ import annotations

import datetime as dt
import functools
import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from unde_tools import lab_client
from unde_tools.patroni_drill import PRIMARY, REPLICA, move_leader, wait_leader

MEMBERS = (PRIMARY, REPLICA)
STANZA = "shard-0"
PROM = "/var/lib/prometheus/node-exporter/unde_backup.prom"
# restores take minutes: pgBackRest, a rebuilt member catching up
ansible_playbook = functools.partial(lab_client.ansible_playbook, timeout=1200)


def sql(lab: Any, host: str, query: str, db: str = "unde_shard") -> str:
    res = lab.host(host).run("runuser -u postgres -- psql -XAt -d %s -c %s", db, query)
    assert res.rc == 0, res.stderr
    return str(res.stdout).strip()


def wait_replica_has(lab: Any, host: str, query: str, want: str) -> None:
    for _ in range(60):
        if (
            lab.host(host).run("runuser -u postgres -- psql -XAt -d unde_shard -c %s", query).stdout.strip()
            == want
        ):
            return
        time.sleep(1)
    pytest.fail(f"{host}: {query} never returned {want}")


def write_conversation(lab: Any, primary: str, n: int = 5) -> tuple[str, list[str]]:
    conv, user = str(uuid.uuid4()), str(uuid.uuid4())
    ids = [str(uuid.uuid4()) for _ in range(n)]
    values = ",".join(f"('{i}', '{conv}', 'user', 'secret number {k}')" for k, i in enumerate(ids))
    sql(lab, primary, f"INSERT INTO conversations (id, user_id) VALUES ('{conv}', '{user}')")
    sql(lab, primary, f"INSERT INTO messages (id, conversation_id, role, content) VALUES {values}")
    return conv, ids


def hard_delete(lab: Any, primary: str, conv: str, mid: str, registry: Path) -> None:
    """The application's GDPR erase (spec 02 §14) on the shard + the tombstone in the registry copy."""
    sql(
        lab,
        primary,
        "UPDATE messages SET content = '[deleted]', embedding = NULL, memory_snippet = NULL, "
        "memory_confidence = NULL, response_description = NULL, reply_to_id = NULL, is_forgotten = TRUE, "
        f"deleted_at = now() WHERE conversation_id = '{conv}' AND id = '{mid}'",
    )
    with registry.open("a") as fh:
        fh.write(f"{conv},{mid},{dt.datetime.now(dt.UTC).isoformat()}\n")


def readable(lab: Any, host: str, conv: str, ids: list[str]) -> set[str]:
    rows = sql(
        lab,
        host,
        f"SELECT id FROM messages WHERE conversation_id = '{conv}' AND content <> '[deleted]'",
    )
    return {r for r in rows.splitlines() if r} & set(ids)


def apply_deletions(registry: Path) -> dict[str, int]:
    res = ansible_playbook(
        "playbooks/runbooks/apply_deletions.yml", "-e", f"apply_deletions_registry_file={registry}"
    )
    assert res.returncode == 0, res.stdout[-5000:] + res.stderr[-2000:]
    # the callback's YAML output folds long lines: read the report with the whitespace flattened
    flat = re.sub(r"\s+", " ", res.stdout)
    m = re.search(r"apply_deletions((?: \w+=\d+)+)", flat)
    assert m is not None and "still_readable=" in m.group(1), res.stdout[-3000:]
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(1))}


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("registry") / "tombstones.csv"
    path.write_text("")
    return path


# ------------------------------------------------------------------------------ backups


@pytest.mark.journal("unde-backup-base", "unde-backup-snapshot", "patroni")
def test_base_backup_and_snapshot_on_the_leader_only(lab: Any) -> None:
    primary = wait_leader()
    replica = next(m for m in MEMBERS if m != primary)
    for unit in ("unde-backup-base", "unde-backup-snapshot"):
        lab.host(primary).check_output("systemctl start %s.service", unit)
        lab.host(replica).check_output("systemctl start %s.service", unit)
        log = lab.host(replica).check_output("journalctl -u %s -n 5 --no-pager -o cat", unit)
        assert "replica (pg_is_in_recovery)" in log
    for repo in (1, 2):
        info = json.loads(
            lab.host(primary).check_output(
                "runuser -u postgres -- pgbackrest --stanza=%s --repo=%s --output=json info",
                STANZA,
                str(repo),
            )
        )
        assert [b["type"] for b in info[0]["backup"]][-1] == "full", repo
    # WAL reaches Object Storage (the stand-in) from Patroni's archive_command
    lab.host(primary).check_output(
        "runuser -u postgres -- pgbackrest --config=/etc/pgbackrest/archive-push.conf --stanza=%s check",
        STANZA,
    )


@pytest.mark.journal("unde-backup-metrics")
def test_backup_and_replication_metrics(lab: Any) -> None:
    for host in MEMBERS:
        lab.host(host).check_output("systemctl start unde-backup-metrics.service")
        text = lab.host(host).check_output("cat %s", PROM)
        age = re.search(r'^basebackup_last_age_hours\{stanza="shard-0"\} (\S+)$', text, re.M)
        assert age is not None and float(age.group(1)) < 1.0, text
        # the snapshot lives on the NVMe of the member that led when it was taken
        role = "primary" if host == wait_leader() else "replica"
        snap = re.search(rf'^local_snapshot_age_hours\{{role="{role}",stanza="shard-0"\}} (\S+)$', text, re.M)
        assert snap is not None, text
        if role == "primary":
            assert float(snap.group(1)) < 1.0, text
        assert re.search(r"^replica_up\{[^}]*\} 1\.0$", text, re.M), text
        assert re.search(r"^replication_lag_seconds\{[^}]*\} \S+$", text, re.M), text
    primary = wait_leader()
    assert "replication_slot_wal_bytes{" in lab.host(primary).check_output("cat %s", PROM)


# ------------------------------------------------------------------------------ restores


def test_restore_refuses_without_confirmation_or_on_the_leader(lab: Any) -> None:
    res = ansible_playbook(
        "playbooks/runbooks/restore_shard.yml",
        "-e",
        "restore_shard=local-shard-0",
        "-e",
        "restore_source=snapshot",
    )
    assert res.returncode != 0 and "restore_confirm" in res.stdout
    primary = wait_leader()
    res = ansible_playbook(
        "playbooks/runbooks/restore_shard.yml",
        "-e",
        f"restore_shard={primary}",
        "-e",
        "restore_source=replica",
        "-e",
        f"restore_confirm={primary}",
    )
    assert res.returncode != 0 and "Switch over first" in res.stdout
    assert wait_leader() == primary


@pytest.mark.journal("patroni")
@pytest.mark.parametrize("source", ["snapshot", "replica"])
def test_rebuild_a_member_then_apply_deletions(lab: Any, registry: Path, source: str) -> None:
    primary = wait_leader()
    other = next(m for m in MEMBERS if m != primary)
    conv, ids = write_conversation(lab, primary)
    if source == "snapshot":
        # The snapshot holds the message before its erase. It lives on the NVMe of the member that
        # led when it was taken, so that member is the one rebuilt: hand the lead to the other first.
        lab.host(primary).check_output("systemctl start unde-backup-snapshot.service")
        hard_delete(lab, primary, conv, ids[0], registry)
        move_leader(other)
        target, lead = primary, other
    else:
        hard_delete(lab, primary, conv, ids[0], registry)
        target, lead = other, primary
    res = ansible_playbook(
        "playbooks/runbooks/restore_shard.yml",
        "-e",
        f"restore_shard={target}",
        "-e",
        f"restore_source={source}",
        "-e",
        f"restore_confirm={target}",
        "-e",
        f"apply_deletions_registry_file={registry}",
    )
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-2000:]
    assert f"rebuilt from {source}" in res.stdout
    wait_replica_has(lab, target, f"SELECT count(*) FROM messages WHERE conversation_id = '{conv}'", "5")
    assert readable(lab, target, conv, ids) == set(ids[1:])
    assert ids[0] not in readable(lab, lead, conv, ids)
    counts = apply_deletions(registry)  # second run: nothing left to do
    assert counts["erased_now"] == 0 and counts["still_readable"] == 0
    if wait_leader() != MEMBERS[0]:
        move_leader(MEMBERS[0])  # the preferred primary leads again for the next tests


@pytest.mark.journal("patroni")
def test_point_in_time_recovery_then_apply_deletions(lab: Any, registry: Path) -> None:
    primary = wait_leader()
    conv, ids = write_conversation(lab, primary)
    lab.host(primary).check_output("systemctl start unde-backup-base.service")
    sql(lab, primary, "SELECT pg_switch_wal()")
    time.sleep(2)
    target = sql(lab, primary, "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || '+00'")
    time.sleep(2)
    # after the target: a message erased (tombstoned) and a row that PITR must undo
    hard_delete(lab, primary, conv, ids[1], registry)
    late = str(uuid.uuid4())
    sql(
        lab,
        primary,
        "INSERT INTO messages (id, conversation_id, role, content)"
        f" VALUES ('{late}', '{conv}', 'user', 'late')",
    )
    sql(lab, primary, "SELECT pg_switch_wal()")
    lab.host(primary).check_output(
        "runuser -u postgres -- pgbackrest --config=/etc/pgbackrest/archive-push.conf --stanza=%s check",
        STANZA,
    )
    res = ansible_playbook(
        "playbooks/runbooks/restore_shard.yml",
        "-e",
        f"restore_shard={primary}",
        "-e",
        "restore_source=pitr",
        "-e",
        f"restore_target_time='{target}'",
        "-e",
        f"restore_confirm={primary}",
        "-e",
        f"apply_deletions_registry_file={registry}",
    )
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-2000:]
    new_leader = wait_leader()
    assert new_leader == primary
    # the database is as it was at the target: the late row is gone ...
    assert sql(lab, primary, f"SELECT count(*) FROM messages WHERE id = '{late}'") == "0"
    # ... but the deletion made after the target was re-applied from the registry
    assert ids[1] not in readable(lab, primary, conv, ids)
    assert readable(lab, primary, conv, ids) == set(ids) - {ids[1]}
    for host in MEMBERS:
        if host != primary:
            wait_replica_has(lab, host, f"SELECT count(*) FROM messages WHERE id = '{late}'", "0")
            assert readable(lab, host, conv, ids) == set(ids) - {ids[1]}
