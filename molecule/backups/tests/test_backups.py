"""Backups of staging-db and production-db on lab hosts (molecule scenario ``backups``).

What is proved, with the real firewall of the base roles in place:

* the lab stand-ins run as hardened units: the chrooted SFTP Storage Box on port 23, reachable
  from the DB servers only, and the moto S3 server over TLS with the platform's buckets;
* pgBackRest on each DB server: stanza on the Storage Box (SFTP, encrypted), WAL archiving from
  PostgreSQL's sandbox, the full and differential backups started by their systemd units (which the
  timers run at the spec's times, retention 4 full + 7 diff), a replica check that skips nothing
  here (a primary backs up);
* the backup metrics in node_exporter's textfile directory and on /metrics;
* playbooks/runbooks/verify_backups.yml restores the latest backup into a scratch instance and
  finds every row count equal, twice in a row (safe to run twice), and refuses a stanza without backups.
"""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from unde_tools import lab_client

REPO = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY") or Path(__file__).resolve().parents[3])
DB_HOSTS = ("staging-db", "production-db")
STANZA = {"staging-db": "staging", "production-db": "production"}
KIND = {"staging-db": "staging", "production-db": "production"}
SCHEDULE = yaml.safe_load((REPO / "group_vars/all/schedule.yml").read_text())
PROM = "/var/lib/prometheus/node-exporter/unde_backup.prom"


ansible_playbook = functools.partial(lab_client.ansible_playbook, timeout=900)


def pgbackrest_info(lab: Any, host: str) -> list[dict[str, Any]]:
    node = lab.host(host)
    out = node.check_output("runuser -u postgres -- pgbackrest --stanza=%s --output=json info", STANZA[host])
    backups: list[dict[str, Any]] = json.loads(out)[0]["backup"]
    return backups


# ------------------------------------------------------------------------------ stand-ins


@pytest.mark.journal("lab-storagebox-sftp")
def test_storagebox_stand_in_is_a_hardened_chrooted_sftp(lab: Any) -> None:
    node = lab.host("lab-storagebox")
    svc = node.service("lab-storagebox-sftp")
    assert svc.is_running and svc.is_enabled
    props = node.check_output(
        "systemctl show lab-storagebox-sftp -p ProtectSystem -p NoNewPrivileges -p PrivateTmp -p MemoryMax"
    )
    assert "ProtectSystem=strict" in props and "NoNewPrivileges=yes" in props and "PrivateTmp=yes" in props
    assert "MemoryMax=infinity" not in props
    addr = lab.private_ip("lab-storagebox")
    assert node.socket(f"tcp://{addr}:23").is_listening
    cfg = node.check_output("/usr/sbin/sshd -T -f /etc/lab-storagebox/sshd_config")
    assert "passwordauthentication no" in cfg and "forcecommand internal-sftp -l INFO" in cfg
    assert re.search(r"^chrootdirectory /srv/storagebox/%u$", cfg, re.M)


def test_storagebox_port_is_open_to_the_db_servers_only(lab: Any) -> None:
    addr = lab.private_ip("lab-storagebox")
    for host in DB_HOSTS:
        res = lab.host(host).run("timeout 5 bash -c 'exec 3<>/dev/tcp/%s/23; head -c 7 <&3'", addr)
        assert res.rc == 0 and res.stdout.startswith("SSH-2.0"), (host, res.stderr)
    # lab-objstore is no client of the SFTP service: its firewall drops the connection
    res = lab.host("lab-objstore").run("timeout 5 bash -c 'exec 3<>/dev/tcp/%s/23'", addr)
    assert res.rc != 0


@pytest.mark.journal("lab-objstore")
def test_objstore_stand_in_serves_s3_over_tls_with_the_buckets(lab: Any) -> None:
    node = lab.host("lab-objstore")
    for unit in ("lab-objstore", "lab-objstore-tls"):  # moto on loopback, nginx terminating TLS
        assert node.service(unit).is_running and node.service(unit).is_enabled
        props = node.check_output(
            "systemctl show %s -p DynamicUser -p ProtectSystem -p NoNewPrivileges", unit
        )
        assert (
            "DynamicUser=yes" in props and "ProtectSystem=strict" in props and "NoNewPrivileges=yes" in props
        )
    assert node.socket("tcp://127.0.0.1:5000").is_listening
    addr = lab.private_ip("lab-objstore")
    # the stand-in's certificate is self-signed: this client does not verify it, like the lab's pgBackRest
    listing = node.check_output(
        "python3 -c %s",
        "import ssl, urllib.request; ctx = ssl._create_unverified_context(); "
        f"print(urllib.request.urlopen('https://{addr}/', context=ctx).read().decode())",
    )
    buckets = yaml.safe_load((REPO / "group_vars/all/storage.yml").read_text())["unde_s3_buckets"]
    for bucket in buckets.values():
        assert f"<Name>{bucket}</Name>" in listing
    cert = node.check_output("openssl x509 -in /etc/lab-objstore/tls.crt -noout -ext subjectAltName")
    assert f"IP Address:{addr}" in cert


# ------------------------------------------------------------------------------ pgBackRest


@pytest.mark.parametrize("host", DB_HOSTS)
def test_pgbackrest_repository_on_the_storagebox(lab: Any, host: str) -> None:
    node = lab.host(host)
    conf = node.check_output("cat /etc/pgbackrest/pgbackrest.conf")
    assert "repo1-type=sftp" in conf
    assert f"repo1-sftp-host={lab.private_ip('lab-storagebox')}" in conf
    assert "repo1-cipher-type=aes-256-cbc" in conf
    assert "repo1-retention-full=4" in conf and "repo1-retention-diff=7" in conf
    assert node.file("/etc/pgbackrest/pgbackrest.conf").mode == 0o640
    key = node.file("/etc/pgbackrest/storagebox_key")
    assert key.user == "postgres" and key.mode == 0o600
    # the stanza lives on the stand-in, inside the account's chroot
    sb = lab.host("lab-storagebox")
    chroot = sb.check_output("ls -d /srv/storagebox/*/pgbackrest/backup/%s", STANZA[host])
    assert chroot.endswith(f"/pgbackrest/backup/{STANZA[host]}"), chroot
    # encrypted: the stanza's info file is not readable JSON/INI text on the Storage Box
    info = sb.check_output("head -c 64 %s/backup.info | od -c | head -2", chroot)
    assert "[backrest]" not in info


@pytest.mark.parametrize("host", DB_HOSTS)
def test_timers_follow_the_spec_schedule(lab: Any, host: str) -> None:
    node = lab.host(host)
    kind = KIND[host]
    for job in ("full", "diff"):
        want = SCHEDULE["unde_backup_schedule"][f"{kind}_{job}"]
        timer = node.check_output(
            "systemctl show unde-backup-%s.timer -p TimersCalendar -p UnitFileState", job
        )
        assert "UnitFileState=enabled" in timer
        normalized = node.check_output(
            "systemd-analyze calendar %s | sed -n 's/^ *Normalized form: //p'", want
        )
        assert normalized in timer, (job, want, timer)
        svc = node.check_output(
            "systemctl show unde-backup-%s.service -p User -p ProtectSystem -p NoNewPrivileges -p MemoryMax",
            job,
        )
        assert "User=postgres" in svc and "ProtectSystem=strict" in svc and "NoNewPrivileges=yes" in svc
    assert node.service("unde-backup-metrics.timer").is_enabled


@pytest.mark.journal("unde-backup-full", "unde-backup-diff", "postgresql@17-main")
@pytest.mark.parametrize("host", DB_HOSTS)
def test_full_then_diff_backup_and_wal_archiving(lab: Any, host: str) -> None:
    node = lab.host(host)
    assert node.check_output("runuser -u postgres -- psql -XAtc 'SHOW archive_mode'") == "on"
    node.check_output("runuser -u postgres -- pgbackrest --stanza=%s check", STANZA[host])
    before = len(pgbackrest_info(lab, host))
    node.check_output("systemctl start unde-backup-full.service")
    node.check_output("runuser -u postgres -- psql -XAtc 'CREATE TABLE IF NOT EXISTS backup_probe (x int)'")
    node.check_output("systemctl start unde-backup-diff.service")
    backups = pgbackrest_info(lab, host)
    assert len(backups) >= before + 2
    assert [b["type"] for b in backups[-2:]] == ["full", "diff"]
    assert backups[-1]["reference"] == [backups[-2]["label"]]
    assert "backup to repo1" in node.check_output("journalctl -u unde-backup-full -n 20 --no-pager -o cat")
    node.check_output("runuser -u postgres -- psql -XAtc 'DROP TABLE backup_probe'")


@pytest.mark.journal("unde-backup-metrics")
@pytest.mark.parametrize("host", DB_HOSTS)
def test_backup_metrics_in_the_textfile_collector(lab: Any, host: str) -> None:
    node = lab.host(host)
    node.check_output("systemctl start unde-backup-metrics.service")
    text = node.check_output("cat %s", PROM)
    pattern = r"^pgbackrest_last_full_age_hours\{stanza=\"" + STANZA[host] + r"\"\} (\S+)$"
    m = re.search(pattern, text, re.M)
    assert m is not None, text
    assert float(m.group(1)) < 1.0  # the test above took a full backup minutes ago
    assert f'unde_backup_metrics_errors{{stanza="{STANZA[host]}"}} 0.0' in text
    url = f"http://{lab.private_ip(host)}:9100/metrics"
    metrics = node.check_output(
        "python3 -c %s", f"import urllib.request; print(urllib.request.urlopen('{url}').read().decode())"
    )
    assert "pgbackrest_last_full_age_hours{" in metrics


# ------------------------------------------------------------------------------ verify_backups


def test_verify_backups_restores_and_compares_twice(lab: Any) -> None:
    for run in (1, 2):
        res = ansible_playbook(
            "playbooks/runbooks/verify_backups.yml",
            "-e",
            "verify_backups_hosts=staging-db,production-db",
            "-e",
            "verify_backups_strict=true",
        )
        assert res.returncode == 0, f"run {run}:\n{res.stdout[-6000:]}\n{res.stderr[-2000:]}"
        for host in DB_HOSTS:
            assert f"verify_backups {host} stanza {STANZA[host]}" in res.stdout
        assert "unde_main  public.deleted_messages_registry" in res.stdout
        assert re.search(r"\d+ relation\(s\), \d+ equal, 0 not equal", res.stdout)
    for host in DB_HOSTS:
        assert not lab.host(host).file("/var/lib/pgbackrest/verify").exists  # scratch removed


def test_verify_backups_refuses_a_stanza_without_backups(lab: Any) -> None:
    res = ansible_playbook(
        "playbooks/runbooks/verify_backups.yml",
        "-e",
        "verify_backups_hosts=staging-db",
        "-e",
        "unde_backup_stanza=nonexistent",
    )
    assert res.returncode != 0
    assert "nonexistent" in res.stdout
