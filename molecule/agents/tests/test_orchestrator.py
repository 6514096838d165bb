"""The LLM orchestrator on local-orchestrator, with the agents, the lab shard and local-redis:

* its three units run hardened, the .env is 0600, the master key ring lives in /run (tmpfs) 0400
  in a 0700 directory of the app's user, each worker's /metrics answers monitoring on its port;
* one generate_response turn end to end through the real broker (sent from the controller on
  local-redis DB 11 as api_gateway, the producer of dialogue_queue): an answer with text and
  model_used, one user and one assistant row in the shard;
* gdpr_erase.yml and rotate_master_key.yml, each twice (the second run changes nothing): the erased
  user has 0 rows left and no media, every DEK is on the new version and a turn after the
  rotation decrypts without error.

The provider simulators and the S3 stand-in (started by prepare.yml on the controller) are
stopped when the tests end.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from celery import Celery
from testinfra.host import Host  # type: ignore[import-untyped]
from unde_tools.lab_client import ansible_playbook

_default = sys.modules["unde_molecule_lab"]
lab_host = _default.lab_host
private_ip = _default.private_ip
pytestmark = pytest.mark.lab

REPO = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY") or Path(__file__).resolve().parents[3])
RUN_DIR = REPO / ".cache" / "agents-lab"
S3 = "http://198.18.0.1:18091"
HOST = "local-orchestrator"
UNITS = ["unde-llm-orchestrator-dialogue", "unde-llm-orchestrator-enrichment", "unde-llm-orchestrator-beat"]
# the registry's ports (group_vars/all/services.yml)
METRICS = {"dialogue": 9811, "enrichment": 9812}
RECAP = re.compile(r"^\S+\s*: ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=0", re.M)


@pytest.fixture(scope="module", autouse=True)
def simulators() -> Iterator[None]:
    """The simulators started by prepare.yml are stopped when the tests end."""
    yield
    for pid_file in RUN_DIR.glob("*.pid"):
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
        pid_file.unlink()


def vault() -> dict[str, Any]:
    values: dict[str, Any] = _default.vault()
    return values


def monitoring() -> dict[str, str]:
    return {"Authorization": f"Bearer {vault()['vault_service_tokens']['monitoring']}"}


def shard_sql(sql: str, user_id: str = "") -> str:
    """A query on the lab shard (unde_shard on local-persona), as postgres, the user's id as psql's
    :'uid'; tab-separated rows."""
    out = lab_host("local-persona").run(
        "printf '%%s' %s | runuser -u postgres -- psql -XAt -F '\t' -d unde_shard -v uid=%s -f -",
        sql,
        user_id or "none",
    )
    assert out.rc == 0, out.stderr
    return str(out.stdout).strip()


ROWS_OF_USER = """
SELECT m.role, count(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id
 WHERE c.user_id = :'uid' GROUP BY m.role
UNION ALL SELECT 'knowledge', count(*) FROM user_knowledge WHERE user_id = :'uid'
UNION ALL SELECT 'keys', count(*) FROM user_keys WHERE user_id = :'uid';
"""


def turn(user_id: str, message: str) -> dict[str, Any]:
    """generate_response through local-redis DB 11 as api_gateway; the worker's answer."""
    password = vault()["vault_redis_acl_passwords"]["api_gateway"]
    url = f"redis://api_gateway:{password}@{private_ip('local-redis')}:6379/11"
    app = Celery("lab-gateway", broker=url, backend=url)
    try:
        result = app.send_task(
            "llm_orchestrator.generate_response",
            kwargs={
                "user_id": user_id,
                "message": message,
                "user_message_id": str(uuid.uuid4()),
                "assistant_message_id": str(uuid.uuid4()),
            },
            queue="dialogue_queue",
        )
        answer: dict[str, Any] = result.get(timeout=60)
    finally:
        app.close()
    return answer


def rows_of(user_id: str) -> dict[str, int]:
    """Messages per role of the user's conversations, and the user's knowledge and DEK rows."""
    found = shard_sql(ROWS_OF_USER, str(uuid.UUID(user_id)))
    return {role: int(n) for role, n in (line.split("\t") for line in found.splitlines() if line)}


def playbook_twice(playbook: str, *args: str) -> tuple[str, str]:
    """Run a runbook twice: both succeed, the second changes nothing (recap changed=0)."""
    outputs = []
    for _ in range(2):
        run = ansible_playbook(playbook, *args)
        assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
        outputs.append(run.stdout)
    changed = [int(n) for n in RECAP.findall(outputs[1])]
    assert changed and set(changed) == {0}, outputs[1][-4000:]
    return outputs[0], outputs[1]


def metric(worker: str, name: str) -> float:
    text = httpx.get(
        f"http://{private_ip(HOST)}:{METRICS[worker]}/metrics", headers=monitoring(), timeout=10
    ).text
    return sum(float(v) for v in re.findall(rf"^{name}(?:\{{[^}}]*\}})? (\S+)$", text, re.M))


@pytest.mark.journal(*UNITS)
def test_units_ring_and_metrics() -> None:
    node: Host = lab_host(HOST)
    for unit in UNITS:
        assert node.service(unit).is_running, unit
    env = node.file("/opt/unde/llm_orchestrator/.env")
    assert env.mode == 0o600 and env.user == "unde-llm-orchestrator"
    assert 'MASTER_KEY_FILE="/run/unde/llm_orchestrator/master_keys"' in env.content_string
    ring_dir = node.file("/run/unde/llm_orchestrator")
    assert ring_dir.mode == 0o700 and ring_dir.user == "unde-llm-orchestrator"
    ring = node.file("/run/unde/llm_orchestrator/master_keys")
    assert ring.mode == 0o400 and ring.user == "unde-llm-orchestrator"
    assert node.run("findmnt -n -o FSTYPE --target /run/unde/llm_orchestrator").stdout.strip() == "tmpfs"
    doc = json.loads(ring.content_string)
    assert doc["current"] == 1 and sorted(doc["keys"]) == ["1"]
    assert doc["keys"]["1"] == vault()["vault_master_encryption_keys"]["1"]
    assert not node.run("grep -rl %s /opt/unde /var/lib/unde /etc", doc["keys"]["1"]).stdout.strip()
    for worker, port in METRICS.items():
        assert node.socket(f"tcp://{private_ip(HOST)}:{port}").is_listening, worker
        r = httpx.get(f"http://{private_ip(HOST)}:{port}/metrics", headers=monitoring(), timeout=10)
        assert r.status_code == 200 and "llm_orchestrator" in r.text, worker
    timer = node.run("systemctl show unde-llm-orchestrator-tombstones.timer -p ActiveState -p TimersCalendar")
    assert "ActiveState=active" in timer.stdout and "05:30:00" in timer.stdout


@pytest.mark.journal(*UNITS)
def test_one_turn_end_to_end() -> None:
    user = str(uuid.uuid4())
    answer = turn(user, "Hi! Which jacket goes with white sneakers?")
    assert answer["text"].strip() and answer["model_used"], answer
    rows = rows_of(user)
    assert (rows.get("user"), rows.get("assistant")) == (1, 1), rows


@pytest.mark.journal(*UNITS)
def test_gdpr_erase_twice_leaves_nothing() -> None:
    user = str(uuid.uuid4())
    turn(user, "Remember that my sister's wedding is next Saturday.")
    s3 = boto3.client(
        "s3",
        endpoint_url=S3,
        aws_access_key_id="lab",
        aws_secret_access_key="lab",  # noqa: S106 (moto takes any)
        region_name="hel1",
    )
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
        s3.create_bucket(Bucket="unde-user-media", CreateBucketConfiguration={"LocationConstraint": "hel1"})  # type: ignore[typeddict-item]
    s3.put_object(Bucket="unde-user-media", Key=f"{user}/photo.jpg", Body=b"lab")
    assert rows_of(user).get("user") == 1
    first, _ = playbook_twice(
        "playbooks/runbooks/gdpr_erase.yml", "-e", f"user_id={user}", "-e", f"gdpr_erase_s3_endpoint={S3}"
    )
    assert "Report what was removed" in first
    assert not any(rows_of(user).values()), rows_of(user)
    assert s3.list_objects_v2(Bucket="unde-user-media", Prefix=f"{user}/").get("KeyCount", 0) == 0


@pytest.mark.journal(*UNITS)
def test_rotate_master_key_twice() -> None:
    user = str(uuid.uuid4())
    turn(user, "I'm vegetarian and I love linen shirts.")
    errors_before = metric("dialogue", "user_knowledge_decrypt_errors_total")
    first, _ = playbook_twice("playbooks/runbooks/rotate_master_key.yml", "-e", "master_key_new_version=2")
    assert "unde_master_key_current: 2" in first
    assert shard_sql("SELECT count(*) FROM user_keys WHERE master_key_version <> 2;") == "0"
    ring = json.loads(lab_host(HOST).file("/run/unde/llm_orchestrator/master_keys").content_string)
    assert ring["current"] == 2 and sorted(ring["keys"]) == ["2"]
    # the workers re-read the ring: a turn of the same user decrypts what it knows with key 2
    assert turn(user, "What do you remember about me?")["text"].strip()
    assert metric("dialogue", "user_knowledge_decrypt_errors_total") == errors_before
    # a plain run of the orchestrator's playbook (group_vars still says version 1) is refused
    # before it could drop key 2
    refused = ansible_playbook("playbooks/llm_orchestrator.yml", "--tags", "llm_orchestrator_configure")
    assert refused.returncode != 0 and "rotate_master_key.yml" in refused.stdout, refused.stdout[-3000:]
    ring_after = json.loads(lab_host(HOST).file("/run/unde/llm_orchestrator/master_keys").content_string)
    assert sorted(ring_after["keys"]) == ["2"]
