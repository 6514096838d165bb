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


# ------------------------------------------------------------------------------------- egress


def egress(host: str, **kwargs: Any) -> dict[str, Any]:
    out = fw.unde_firewall_egress_rules(SERVICES, host, GROUPS, HOSTVARS, address_vars=ADDRESS_VARS, **kwargs)
    return {r["name"]: r for r in out}


def test_egress_only_to_the_servers_of_services_the_host_is_a_client_of() -> None:
    mon = egress("mon")
    # the monitoring server scrapes node_exporter on every other host, may ssh (clients: all),
    # reach the public https service; grafana runs on itself (lo), so no rule
    assert sorted(mon) == ["https", "node_exporter", "ssh"]
    assert mon["node_exporter"]["ipv4"] == ["10.1.0.10", "10.2.0.2", "10.3.0.1"]
    assert mon["https"]["ipv4"] == ["10.2.0.2", "10.3.0.1"]
    assert mon["https"]["scope"] == "hosts"
    db = egress("db1")
    # db1 is no monitoring server: it may not open node_exporter anywhere
    assert sorted(db) == ["https", "ssh", "wg"]
    assert db["wg"]["ipv4"] == ["10.2.0.2", "10.3.0.1"]
    assert "10.1.0.10" not in db["ssh"]["ipv4"]


def test_egress_uses_each_servers_port_override() -> None:
    hostvars = {**HOSTVARS, "db1": {**HOSTVARS["db1"], "unde_port_overrides": {"node_exporter": 9200}}}
    out = fw.unde_firewall_egress_rules(SERVICES, "mon", GROUPS, hostvars)
    ports = {(r["name"], r["port"]): r["ipv4"] for r in out}
    assert ports[("node_exporter", 9200)] == ["10.1.0.10"]
    assert ports[("node_exporter", 9100)] == ["10.2.0.2"]


def test_egress_allow_entries() -> None:
    allow = [
        {"name": "dns", "proto": "udp", "port": 53, "destinations": "any"},
        {"name": "https_public", "proto": "tcp", "port": 443, "destinations": "public"},
        {"name": "sim", "proto": "tcp", "port": 18080, "destinations": ["198.18.0.1", "2001:db8::1/128"]},
    ]
    r = egress("db1", allow=allow)
    assert (r["dns"]["scope"], r["dns"]["proto"]) == ("any", "udp")
    assert r["https_public"]["scope"] == "public"
    assert (r["sim"]["ipv4"], r["sim"]["ipv6"]) == (["198.18.0.1"], ["2001:db8::1"])
    with pytest.raises(fw.FirewallRulesError, match="destinations"):
        egress("db1", allow=[{"name": "x", "port": 1, "destinations": "everywhere"}])
    with pytest.raises(fw.FirewallRulesError, match="not an IP"):
        egress("db1", allow=[{"name": "x", "port": 1, "destinations": ["api.example.com"]}])


def test_egress_networks_by_version() -> None:
    nets = ["192.168.0.0/16", "10.0.0.0/8", "fc00::/7", "127.0.0.1/32"]
    assert fw.unde_firewall_networks(nets, 4) == ["10.0.0.0/8", "127.0.0.1", "192.168.0.0/16"]
    assert fw.unde_firewall_networks(nets, 6) == ["fc00::/7"]


def test_egress_allow_port_by_iana_name() -> None:
    r = egress("db1", allow=[{"name": "https", "proto": "tcp", "port": "https", "destinations": "public"}])
    assert r["https"]["port"] == 443
    with pytest.raises(fw.FirewallRulesError, match="not a number"):
        egress("db1", allow=[{"name": "x", "port": "gopher", "destinations": "any"}])


EXTERNAL: dict[str, dict[str, Any]] = {
    "gemini": {"url": "https://generativelanguage.googleapis.com", "groups": ["web"]},
    "box": {"port": 23, "groups": ["db"], "description": "Storage Box"},
    "odd": {"url": "https://api.example.com:8443/v1", "groups": ["web", "db"]},
    "plain": {"url": "http://mirror.example.com/debian", "groups": ["db"]},
    "wg": {"proto": "udp", "port": 51820, "groups": ["elsewhere"]},
}


def test_external_services_of_the_hosts_groups_to_public_destinations() -> None:
    web = {e["name"]: e for e in fw.unde_firewall_external(EXTERNAL, "web1", GROUPS)}
    assert sorted(web) == ["gemini", "odd"]  # only its groups'; a group this inventory lacks is skipped
    assert web["gemini"] == {
        "name": "gemini",
        "proto": "tcp",
        "port": 443,  # the scheme's port
        "destinations": "public",
        "description": "https://generativelanguage.googleapis.com",
    }
    assert web["odd"]["port"] == 8443  # the URL's own port
    db = {e["name"]: (e["proto"], e["port"]) for e in fw.unde_firewall_external(EXTERNAL, "db1", GROUPS)}
    assert db == {"box": ("tcp", 23), "odd": ("tcp", 8443), "plain": ("tcp", 80)}
    rules = egress("db1", allow=fw.unde_firewall_external(EXTERNAL, "db1", GROUPS))
    assert (rules["box"]["scope"], rules["box"]["description"]) == ("public", "Storage Box")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"url": "https://x.example.com"}, "groups must be a non-empty list"),
        ({"url": "https://x.example.com", "groups": "web"}, "groups must be a non-empty list"),
        ({"groups": ["web"]}, "needs a port or an absolute url"),
        ({"url": "api.example.com", "groups": ["web"]}, "needs a port or an absolute url"),
        ({"url": "sftp://box.example.com", "groups": ["web"]}, "names no port"),
        ({"url": "https://x.example.com:99999", "groups": ["web"]}, "is not a URL"),
        ({"port": 0, "groups": ["web"]}, "out of range"),
        ({"port": 1, "proto": "sctp", "groups": ["web"]}, "proto"),
    ],
)
def test_external_errors_name_the_service(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(fw.FirewallRulesError, match=message) as info:
        fw.unde_firewall_external({"bad": entry}, "web1", GROUPS)
    assert "bad" in str(info.value)
