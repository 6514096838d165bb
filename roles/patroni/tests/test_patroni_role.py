"""roles/etcd and roles/patroni: argument specs against defaults, and the pieces that need no lab.

* ``meta/argument_specs.yml`` (entry point ``main``) names exactly the variables of
  ``defaults/main.yml`` with the same defaults and a description each;
* the routing callback's compare-and-set (Lua) runs on a real Redis (``redis_url`` fixture): a newer
  timeline replaces the entry, an older one of the same cluster never does, the same entry is left
  alone, a re-initialised cluster (other system identifier) replaces it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
CALLBACK = REPO / "roles" / "patroni" / "templates" / "patroni-routing.j2"


@pytest.mark.parametrize("role", ["etcd", "patroni"])
def test_argument_specs_match_defaults(role: str) -> None:
    base = REPO / "roles" / role
    defaults = yaml.safe_load((base / "defaults" / "main.yml").read_text())
    specs = yaml.safe_load((base / "meta" / "argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]
    assert sorted(options) == sorted(defaults)
    assert {k: v.get("default") for k, v in options.items()} == defaults
    assert all(v.get("description") for v in options.values())


def _cas_script() -> str:
    text = CALLBACK.read_text()
    start = text.index('CAS = """') + len('CAS = """')
    return text[start : text.index('"""', start)]


def test_routing_cas_never_goes_back_in_timeline(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    cas = client.register_script(_cas_script())
    key = "shard:0"
    client.delete(key)

    def write(timeline: int, host: str, member: str, sysid: str = "7710915998469784345") -> int:
        return int(cas(keys=[key], args=[timeline, host, 5432, member, 1700000000 + timeline, 6432, sysid]))

    assert write(1, "198.19.0.10", "local-shard-0") == 1
    assert write(1, "198.19.0.10", "local-shard-0") == 0  # unchanged: no write
    assert write(2, "198.18.1.10", "shard-replica-0") == 1  # promotion
    assert write(1, "198.19.0.10", "local-shard-0") == -1  # a demoted primary is refused
    entry = client.hgetall(key)
    assert entry["host"] == "198.18.1.10"
    assert entry["member"] == "shard-replica-0"
    assert entry["timeline"] == "2"
    assert write(3, "198.19.0.10", "local-shard-0") == 1  # failback by switchover
    assert client.hget(key, "member") == "local-shard-0"
    # a re-initialised cluster (new system identifier) starts again at timeline 1 and replaces it
    assert write(1, "198.18.1.10", "shard-replica-0", sysid="7999999999999999999") == 1
    assert client.hget(key, "timeline") == "1"
