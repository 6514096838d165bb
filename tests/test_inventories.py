"""Every host of both tables in shared/spec/README.md, with its plan address and tunnel."""

from __future__ import annotations

import pytest
from support import REPO
from unde_tools.inventory import load

HELSINKI = {
    "helsinki-gw": "10.1.0.2", "scraper": "10.1.0.3", "push": "10.1.0.4", "model-generator": "10.1.0.5",
    "tryon-service": "10.1.0.6", "monitoring": "10.1.0.7", "staging-db": "10.1.0.8", "apify": "10.1.0.9",
    "photo-downloader": "10.1.0.10", "ximilar-sync": "10.1.0.11", "ximilar-gw": "10.1.0.12",
    "llm-reranker": "10.1.0.13", "recognition": "10.1.0.14", "embedder": "10.1.0.15", "collage": "10.1.0.16",
    "embed-batch": "10.1.0.17", "posthog": "10.1.0.30", "production-db": "10.1.1.2",
    "shard-replica-0": "10.1.1.10", "etcd-3": "10.1.1.20",
}  # fmt: skip
LOCAL = {
    "local-app": ("10.2.0.2", "wg-app", "10.3.0.1", "10.3.0.100"),
    "local-redis": ("10.2.0.4", "wg-redis", "10.3.2.1", "10.3.2.100"),
    "local-shard-0": ("10.2.0.10", "wg-shard0", "10.3.10.1", "10.3.10.100"),
    "local-mood": ("10.2.0.11", "wg-mood", "10.3.3.1", "10.3.3.100"),
    "local-voice": ("10.2.0.12", "wg-voice", "10.3.6.1", "10.3.6.100"),
    "local-orchestrator": ("10.2.0.17", "wg-orch", "10.3.1.1", "10.3.1.100"),
    "local-context": ("10.2.0.19", "wg-context", "10.3.5.1", "10.3.5.100"),
    "local-persona": ("10.2.0.21", "wg-persona", "10.3.4.1", "10.3.4.100"),
    "local-etcd-1": ("10.2.0.50", "wg-etcd", "10.3.50.1", "10.3.50.100"),
}


def test_helsinki_hosts_and_addresses() -> None:
    inv = load([REPO / "inventories/helsinki"])
    assert {h: hv["private_ip"] for h, hv in inv.hostvars.items()} == HELSINKI
    assert inv.hosts_of("helsinki") == set(HELSINKI)


def test_local_hosts_addresses_and_tunnels() -> None:
    inv = load([REPO / "inventories/local"])
    got = {
        h: (hv["private_ip"], hv["wg_interface"], hv["wg_tunnel_local"], hv["wg_tunnel_remote"])
        for h, hv in inv.hostvars.items()
    }
    assert got == LOCAL
    assert inv.hosts_of("wireguard_local") == set(LOCAL)


@pytest.mark.parametrize(
    ("group", "hosts"),
    [
        ("etcd", {"local-etcd-1", "shard-replica-0", "etcd-3"}),
        ("shard_primary", {"local-shard-0"}),
        ("shard_replica", {"shard-replica-0"}),
        ("postgres", {"staging-db", "production-db", "local-shard-0", "shard-replica-0"}),
        ("redis", {"local-redis", "push"}),
        ("monitoring_server", {"monitoring"}),
        ("gateway", {"helsinki-gw"}),
        ("recognition_app", {"recognition"}),
        ("persona_agent_app", {"local-persona"}),
    ],
)
def test_groups(group: str, hosts: set[str]) -> None:
    inv = load([REPO / "inventories/helsinki", REPO / "inventories/local"])
    assert inv.hosts_of(group) == hosts


def test_shared_values_are_not_copied_into_inventories() -> None:
    """Ports, Redis DBs, queues, schedule, thresholds and flags live once, in group_vars/all."""
    for site in ("helsinki", "local"):
        text = (REPO / f"inventories/{site}/hosts.yml").read_text()
        for shared in (
            "unde_services",
            "unde_redis_db",
            "unde_celery_queues",
            "unde_schedule",
            "unde_search_backend",
        ):
            assert shared not in text
        assert (REPO / f"inventories/{site}/group_vars").resolve() == (REPO / "group_vars").resolve()
