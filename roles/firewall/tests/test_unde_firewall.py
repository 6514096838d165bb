"""Unit tests of the unde_firewall_rules filter (no Ansible, no lab): ``pytest roles/firewall/tests``."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from unde_testkit.loaders import load_module


def _load() -> ModuleType:
    return load_module(
        "unde_firewall", Path(__file__).resolve().parents[1] / "filter_plugins" / "unde_firewall.py"
    )


fw = _load()

SERVICES: dict[str, dict[str, Any]] = {
    "ssh": {"port": 22, "proto": "tcp", "groups": ["all"], "clients": ["all"]},
    "node_exporter": {"port": 9100, "proto": "tcp", "groups": ["all"], "clients": ["monitoring_server"]},
    "https": {"port": 443, "proto": "tcp", "groups": ["web"], "clients": ["public"]},
    "wg": {"port": 51820, "proto": "udp", "groups": ["web", "db"], "clients": ["web", "db"]},
    "grafana": {
        "port": 3000,
        "proto": "tcp",
        "groups": ["monitoring_server"],
        "clients": ["monitoring_server"],
    },
}
GROUPS = {
    "all": ["web1", "db1", "mon"],
    "web": ["web1"],
    "db": ["db1"],
    "monitoring_server": ["mon"],
    "ungrouped": [],
}
HOSTVARS: dict[str, dict[str, Any]] = {
    "web1": {"private_ip": "10.2.0.2", "wg_tunnel_local": "10.3.0.1"},
    "db1": {"private_ip": "10.1.0.10"},
    "mon": {"private_ip": "10.1.0.7"},
}
ADDRESS_VARS = ("private_ip", "wg_tunnel_local")


def rules(host: str, **kwargs: Any) -> dict[str, Any]:
    out = fw.unde_firewall_rules(SERVICES, host, GROUPS, HOSTVARS, address_vars=ADDRESS_VARS, **kwargs)
    return {r["name"]: r for r in out}


def test_only_services_of_the_hosts_groups() -> None:
    assert sorted(rules("db1")) == ["node_exporter", "ssh", "wg"]
    assert sorted(rules("web1")) == ["https", "node_exporter", "ssh", "wg"]
    assert sorted(rules("mon")) == ["grafana", "node_exporter", "ssh"]


def test_sources_are_the_client_hosts_addresses_sorted_numerically() -> None:
    r = rules("db1")
    assert r["node_exporter"]["ipv4"] == ["10.1.0.7"]
    assert r["ssh"]["ipv4"] == ["10.1.0.7", "10.1.0.10", "10.2.0.2", "10.3.0.1"]
    assert r["wg"]["proto"] == "udp"
    assert r["wg"]["ipv4"] == ["10.1.0.10", "10.2.0.2", "10.3.0.1"]


def test_public_has_no_source_list() -> None:
    https = rules("web1")["https"]
    assert https["public"] is True
    assert https["ipv4"] == [] and https["ipv6"] == []


def test_admin_cidrs_only_for_admin_services() -> None:
    r = rules("mon", admin_cidrs=["192.0.2.0/24", "2001:db8::/32"], admin_services=["ssh", "grafana"])
    assert r["ssh"]["ipv4"] == ["10.1.0.7", "10.1.0.10", "10.2.0.2", "10.3.0.1", "192.0.2.0/24"]
    assert r["ssh"]["ipv6"] == ["2001:db8::/32"]
    assert r["grafana"]["ipv6"] == ["2001:db8::/32"]
    assert r["node_exporter"]["ipv6"] == []
    assert "192.0.2.0/24" not in r["node_exporter"]["ipv4"]


def test_port_override_and_order() -> None:
    out = fw.unde_firewall_rules(SERVICES, "db1", GROUPS, HOSTVARS, port_overrides={"node_exporter": 9200})
    assert [(r["port"], r["name"]) for r in out] == [(22, "ssh"), (9200, "node_exporter"), (51820, "wg")]


def test_deterministic() -> None:
    shuffled_groups = {k: list(reversed(v)) for k, v in reversed(list(GROUPS.items()))}
    a = fw.unde_firewall_rules(SERVICES, "db1", GROUPS, HOSTVARS, address_vars=ADDRESS_VARS)
    b = fw.unde_firewall_rules(SERVICES, "db1", shuffled_groups, HOSTVARS, address_vars=ADDRESS_VARS)
    assert a == b


def test_extra_rules() -> None:
    extra = [{"name": "dns", "proto": "udp", "port": 53, "sources": ["10.0.0.0/8"]}]
    r = rules("db1", extra_rules=extra)
    assert r["dns"]["ipv4"] == ["10.0.0.0/8"]
    assert rules("db1", extra_rules=[{"name": "any", "proto": "tcp", "port": 8443, "sources": "any"}])["any"][
        "public"
    ]


@pytest.mark.parametrize(
    ("services", "overrides", "message"),
    [
        ({"x": {"port": 1, "groups": ["all"], "clients": ["nope"]}}, {}, "not in the inventory"),
        ({"x": {"port": 70000, "groups": ["all"], "clients": ["all"]}}, {}, "out of range"),
        ({"x": {"port": 1, "proto": "sctp", "groups": ["all"], "clients": ["all"]}}, {}, "proto"),
        (SERVICES, {"unknown": 1}, "unknown services"),
    ],
)
def test_errors(services: dict[str, Any], overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(fw.FirewallRulesError, match=message):
        fw.unde_firewall_rules(services, "db1", GROUPS, HOSTVARS, port_overrides=overrides)
