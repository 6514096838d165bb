"""The dialogue agents on their lab hosts, called over HTTP from the controller.

* each agent runs as its hardened unit on its host's private address :8080, its .env is 0600 and
  owned by the app's user, /health answers 200 (its dependencies reachable) and /metrics serves;
* persona: /persona for an unknown user (stage 0 from the shard), feedback → flush applies the
  conservative signal under the momentum cap and creates the temp block, /persona/profile shows
  it, a foreign contract major is 409, a bad body 422; the 04:00 cleanup timer is scheduled and
  its service runs;
* persona routing: an entry in the routing cache (local-redis DB 12, this scenario's key) naming a
  dead primary makes /health fail; naming the lab shard again heals it (the agent reconnects);
* mood: the lab cannot reach DeepSeek or Gemini, so the local classifier answers /analyze, in the
  spec's mood_frame shape;
* context: /context resolves the mall and nearest store, serves the lab event as an opportunity,
  and marks the (unreachable) weather absent.
"""

from __future__ import annotations

import re
import sys
import time
import uuid
from typing import Any

import httpx
import pytest
from testinfra.host import Host  # type: ignore[import-untyped]

# molecule/conftest.py, loaded by pytest before this module (the shared helpers: ssh to the lab hosts)
_default = sys.modules["unde_molecule_lab"]
lab_host = _default.lab_host
private_ip = _default.private_ip
pytestmark = pytest.mark.lab

AGENTS = {
    "local-persona": ("persona_agent", "persona-agent"),
    "local-mood": ("mood_agent", "mood-agent"),
    "local-context": ("context_agent", "context-agent"),
}


def url(host: str, path: str) -> str:
    return f"http://{private_ip(host)}:8080{path}"


def bearer(caller: str) -> dict[str, str]:
    """The vault's service token of ``caller`` (the agents accept api_gateway, llm_orchestrator;
    /health and /metrics only monitoring)."""
    return {"Authorization": f"Bearer {_default.vault()['vault_service_tokens'][caller]}"}


def post(host: str, path: str, body: dict[str, Any], **kw: Any) -> httpx.Response:
    return httpx.post(url(host, path), json=body, headers=bearer("api_gateway"), timeout=10, **kw)


@pytest.mark.parametrize("host", sorted(AGENTS))
def test_unit_env_health_metrics(host: str) -> None:
    app, unit = AGENTS[host]
    node: Host = lab_host(host)
    assert node.service(f"unde-{unit}").is_running
    env = node.file(f"/opt/unde/{app}/.env")
    assert env.mode == 0o600 and env.user == f"unde-{app.replace('_', '-')}"
    assert node.socket(f"tcp://{private_ip(host)}:8080").is_listening
    health = httpx.get(url(host, "/health"), headers=bearer("monitoring"), timeout=10)
    assert health.status_code == 200, health.text
    assert (
        f"{app}_http_requests_total"
        in httpx.get(url(host, "/metrics"), headers=bearer("monitoring"), timeout=10).text
    )
    assert node.file(f"/run/unde-{unit}").is_directory  # PROMETHEUS_MULTIPROC_DIR (roles/unde_app)


def _health_count(host: str, app: str) -> float:
    text = httpx.get(url(host, "/metrics"), headers=bearer("monitoring"), timeout=10).text
    pattern = rf'^{app}_http_requests_total\{{method="GET",route="/health",status="200"\}} (\S+)$'
    found = re.search(pattern, text, re.M)
    return float(found.group(1)) if found else 0.0


@pytest.mark.parametrize("host", sorted(AGENTS))
def test_metrics_add_up_every_worker(host: str) -> None:
    """The agents run several uvicorn workers: /metrics (answered by any one of them) counts the
    requests of all of them (prometheus multiprocess mode), not a single worker's share."""
    app, _ = AGENTS[host]
    before = _health_count(host, app)
    for _ in range(30):  # a new connection each time, so the kernel spreads them over the workers
        assert httpx.get(url(host, "/health"), headers=bearer("monitoring"), timeout=10).status_code == 200
    assert _health_count(host, app) - before >= 30


def test_persona_endpoints() -> None:
    host = "local-persona"
    user = str(uuid.uuid4())
    out = post(host, "/persona", {"user_id": user}).json()
    assert out["debug"]["stage"] == 0 and out["debug"]["state_source"] == "shard"
    assert len(out["persona_directive"]["blocks"]) == 7 and out["voice_params"]["preset"] == "friendly_warm"
    for kind in ("humor_positive", "humor_rejected"):
        r = post(
            host,
            "/persona/feedback",
            {"user_id": user, "signal_id": str(uuid.uuid4()), "exchange_id": "e1", "signal_type": kind},
        )
        assert r.json() == {"buffered": True, "duplicate": False}
    flushed = post(host, "/persona/flush", {"user_id": user, "exchange_id": "e1"}).json()
    assert flushed["applied"] == {"humor_level": -0.05, "tease_level": -0.05}
    assert flushed["temp_blocks"] == ["humor"]
    profile = httpx.get(
        url(host, "/persona/profile"), params={"user_id": user}, headers=bearer("api_gateway"), timeout=10
    ).json()
    assert [b["key"] for b in profile["temp_blocks"]] == ["humor"]
    assert post(host, "/persona", {"user_id": user, "contract_version": "1.0.0"}).status_code == 409
    bad = post(host, "/persona", {"user_id": "nope"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "user_id"]


def test_persona_cleanup_timer_runs() -> None:
    node: Host = lab_host("local-persona")
    timer = node.run("systemctl show unde-persona-cleanup.timer -p ActiveState -p TimersCalendar")
    assert "ActiveState=active" in timer.stdout and "04:00:00" in timer.stdout
    run = node.run("systemctl start unde-persona-cleanup.service")
    assert run.rc == 0, run.stderr
    result = node.run("systemctl show unde-persona-cleanup.service -p Result")
    assert "Result=success" in result.stdout
    assert (
        '"job": "persona_cleanup"'
        in node.run("journalctl -u unde-persona-cleanup.service -n 20 --no-pager").stdout
    )


def test_mood_analyze_falls_back_to_the_local_classifier() -> None:
    r = post(
        "local-mood", "/analyze", {"user_id": str(uuid.uuid4()), "text": "ugh, again not what I asked!!"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["analysis"]["classifier"] == "lexicon"
    frame = body["mood_frame"]
    assert set(frame) == {
        "mood_frame_id",
        "timestamp",
        "emotion",
        "signals",
        "smoothed_baseline",
        "topic",
        "style_params",
        "rive_params",
        "voice_params",
    }
    assert frame["topic"]["action"] == "defuse"
    assert post("local-mood", "/analyze", {"user_id": "x", "text": "hi"}).status_code == 422


def test_context_frame() -> None:
    body = {
        "user_id": str(uuid.uuid4()),
        "lat": 25.1026,
        "lng": 55.2435,
        "mall_id": "dubai-hills-mall",
        "compact_preferences": {"favorite_brands": ["Zara"], "cultural_sensitivity_level": "medium"},
    }
    frame = post("local-context", "/context", body).json()
    assert (
        frame["location"]["mall_id"] == "dubai-hills-mall"
        and frame["location"]["near_store"] == "zara-ground-floor"
    )
    assert {
        "store": "Zara",
        "type": "sale",
        "discount": "30%",
        "relevance_reason": "user_favorite_brand",
    } in frame["opportunities"]
    assert frame["data_status"]["events"] in ("fresh", "cached")
    assert frame["data_status"]["weather"] in ("absent", "stale")
    assert (
        post("local-context", "/context", {"user_id": body["user_id"], "lat": 500, "lng": 1}).status_code
        == 422
    )


def test_persona_follows_its_routing_entry() -> None:
    redis_node: Host = lab_host("local-redis")
    password = _default.vault()["vault_redis_acl_passwords"]["admin"]
    key = "shard:lab-agents:0"

    def cli(*args: str) -> str:
        cmd = redis_node.run(
            "redis-cli --no-auth-warning --user admin -a %s -n 12 " + " ".join(["%s"] * len(args)),
            password,
            *args,
        )
        assert cmd.rc == 0 and not cmd.stdout.startswith(("ERR", "NOAUTH", "WRONGPASS")), (
            cmd.stdout + cmd.stderr
        )
        return str(cmd.stdout)

    def health() -> httpx.Response:
        return httpx.get(url("local-persona", "/health"), headers=bearer("monitoring"), timeout=10)

    def wait(ok: bool) -> httpx.Response:
        deadline = time.monotonic() + 20
        while (r := health()).status_code != (200 if ok else 503):
            assert time.monotonic() < deadline, r.text
            time.sleep(0.5)
        return r

    shard = private_ip("local-persona")
    persona: Host = lab_host("local-persona")
    since = str(persona.run("date +%s").stdout).strip()
    try:
        # a poisoned entry (the shard's host, another port, an unknown member): refused and logged,
        # no connection is made to it, the agent stays on its last target
        cli(
            "HSET",
            key,
            "host",
            shard,
            "port",
            "1",
            "pgbouncer_port",
            "0",
            "member",
            "nowhere",
            "timeline",
            "9",
        )
        deadline = time.monotonic() + 20
        while True:
            health()  # a request makes the agent read its routing entry
            journal = persona.run(
                "journalctl -u unde-persona-agent.service --since @%s --no-pager -o cat", since
            )
            if "not a member of the shard; refused" in journal.stdout:
                break
            assert time.monotonic() < deadline, journal.stdout[-2000:]
            time.sleep(0.5)
        assert health().status_code == 200
        # the entry names the lab shard's own member: followed, the endpoints work
        cli("HSET", key, "port", "5432", "member", "local-persona", "timeline", "10")
        wait(ok=True)
        out = post("local-persona", "/persona", {"user_id": str(uuid.uuid4())}).json()
        assert out["debug"]["state_source"] == "shard"
    finally:
        cli("DEL", key)
    wait(ok=True)  # no entry: the configured DSN
