"""The outbound allow-list per host group (roles/firewall, group_vars/all/egress.yml), rendered by
Ansible's templar from the role's template for every host of the lab inventory (which has every
production group), as production renders it (``unde_lab`` false) and as the lab does:

* the hosts of ``unde_egress_allowlist_groups`` get ``policy drop`` on the output hook, the others
  and every lab host keep ``accept``; each host's allow-list ruleset passes ``nft -c``;
* each allowlisted host may reach what it needs and nothing it does not: shards their partner,
  etcd, local-redis and Object Storage; the database servers the Storage Box; the reranker Gemini;
  the local site's hosts helsinki-gw's WireGuard port; never a private address on a public rule;
* in the production inventories no allowlisted host also runs a workload that was left on
  ``accept``, every group named exists, and the external services' URLs are the apps' settings
  defaults (the port the firewall opens is the one the app calls).
"""

from __future__ import annotations

import functools
import importlib
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from ansible.inventory.manager import InventoryManager  # type: ignore[import-untyped]
from ansible.parsing.dataloader import DataLoader  # type: ignore[import-untyped]
from ansible.plugins.loader import add_all_plugin_dirs, init_plugin_loader  # type: ignore[import-untyped]
from ansible.template import Templar, trust_as_template  # type: ignore[import-untyped]
from ansible.vars.hostvars import HostVars  # type: ignore[import-untyped]
from ansible.vars.manager import VariableManager  # type: ignore[import-untyped]
from support import REPO, nft_check

FIREWALL = REPO / "roles" / "firewall"
LAB = REPO / "inventories" / "lab" / "hosts.yml"
PRODUCTION = [REPO / "inventories" / site / "hosts.yml" for site in ("helsinki", "local")]
EGRESS = yaml.safe_load((REPO / "group_vars" / "all" / "egress.yml").read_text())
ALLOWLIST_GROUPS = set(EGRESS["unde_egress_allowlist_groups"])
EXTERNAL: dict[str, dict[str, Any]] = EGRESS["unde_egress_external"]
#: groups that say where a host is or what kind it is, not what it runs
STRUCTURAL = {"all", "ungrouped", "helsinki", "local", "wireguard_local", "postgres", "pgbouncer", "redis"}
#: the lab's simulators on the controller, as molecule/recognition adds them for an allowlist run
LAB_EXTRA = [{"name": "lab_simulators", "proto": "tcp", "port": 18080, "destinations": ["198.18.0.1"]}]


@functools.cache
def _inventory(*sources: Path) -> tuple[Any, Any, Any]:
    init_plugin_loader()
    add_all_plugin_dirs(str(FIREWALL))
    loader = DataLoader()
    inventory = InventoryManager(loader=loader, sources=[str(s) for s in sources])
    return loader, inventory, VariableManager(loader=loader, inventory=inventory)


def _lab_hosts() -> list[str]:
    _loader, inventory, _vars = _inventory(LAB)
    return sorted(h.name for h in inventory.get_hosts())


def _templar(host: str, sources: tuple[Path, ...], overrides: dict[str, Any]) -> Templar:
    loader, inventory, variables = _inventory(*sources)
    host_vars = variables.get_vars(host=inventory.get_host(host), include_hostvars=True)
    host_vars["hostvars"] = HostVars(inventory=inventory, variable_manager=variables, loader=loader)
    data = {
        **loader.load_from_file(str(FIREWALL / "defaults" / "main.yml"), trusted_as_template=True),
        **host_vars,
        **loader.load_from_file(str(FIREWALL / "vars" / "main.yml"), trusted_as_template=True),
        **loader.load_from_file(str(FIREWALL / "vars" / "Debian.yml"), trusted_as_template=True),
        "ansible_managed": "Ansible managed",
        **overrides,
    }
    return Templar(loader=loader, variables=data)


def _render(host: str, *, sources: tuple[Path, ...] = (LAB,), **overrides: Any) -> tuple[str, str]:
    """(the host's egress policy, its rendered /etc/nftables.conf)."""
    templar = _templar(host, sources, overrides)
    policy = str(templar.template(trust_as_template("{{ firewall_egress_policy }}")))
    text = str(templar.template(trust_as_template((FIREWALL / "templates" / "nftables.conf.j2").read_text())))
    return policy, text


def _production(host: str, **overrides: Any) -> tuple[str, str]:
    """As production renders a lab host: not the lab (its Storage Box port, its policy)."""
    return _render(host, unde_lab=False, **overrides)


def _output(text: str) -> str:
    return text[text.index("chain output {") :]


def _rules(host: str) -> dict[str, list[str]]:
    """name → the accept lines of the host's production allow-list."""
    policy, text = _production(host)
    assert policy == "allowlist", host
    out: dict[str, list[str]] = {}
    rule = re.compile(r"\t\t(?:tcp|udp) dport [^\n]*?(?:\{[^}]*\}[^\n]*)?comment \"\w+\"")
    for line in rule.findall(_output(text)):
        name = re.findall(r'comment "(\w+)"', line)[0]
        out.setdefault(name, []).append(" ".join(line.split()))
    return out


# ------------------------------------------------------------------------------- policy per host


def test_lab_hosts_are_found() -> None:
    hosts = _lab_hosts()
    assert {"local-shard-0", "shard-replica-0", "production-db", "etcd-3", "llm-reranker"} <= set(hosts)


@pytest.mark.parametrize("host", _lab_hosts())
def test_each_host_gets_its_groups_policy_and_a_valid_ruleset(host: str, tmp_path: Path) -> None:
    _loader, inventory, _vars = _inventory(LAB)
    groups = {g.name for g in inventory.get_host(host).get_groups()}
    lab_policy, lab_text = _render(host)
    assert lab_policy == "accept", "the lab keeps accept: its hosts reach the controller and simulators"
    assert "policy accept;" in _output(lab_text)
    policy, text = _production(host, firewall_egress_extra=LAB_EXTRA)
    expected = "allowlist" if groups & ALLOWLIST_GROUPS else "accept"
    assert policy == expected, (host, sorted(groups))
    out = _output(text)
    if expected == "accept":
        assert "policy accept;" in out and " drop" not in out
        _, text = _production(host, firewall_egress_policy="allowlist", firewall_egress_extra=LAB_EXTRA)
    else:
        assert "type filter hook output priority filter; policy drop;" in out
        assert "ct state established,related accept" in out and 'oif "lo" accept' in out
        assert 'udp dport 53 accept comment "dns"' in out and 'udp dport 123 accept comment "ntp"' in out
    # a rule to public destinations never reaches the private networks or the metadata service
    for line in re.findall(r"[^\n]* ip daddr != \{[^}]*\}[^\n]*", _output(text)):
        assert "169.254.0.0/16" in line and "10.0.0.0/8" in line and "198.18.0.0/15" in line, line
    for line in re.findall(r"[^\n]* ip6 daddr != \{[^}]*\}[^\n]*", _output(text)):
        assert "fc00::/7" in line and "fe80::/10" in line, line
    nft_check(text, tmp_path)


def _targets(rules: dict[str, list[str]], name: str) -> str:
    assert name in rules, f"no rule {name}: {sorted(rules)}"
    return " ".join(rules[name])


def test_shards_reach_their_partner_etcd_local_redis_and_object_storage() -> None:
    hostvars = {h: _host_ip(h) for h in ("local-shard-0", "shard-replica-0", "local-redis", "etcd-3")}
    primary = _rules("local-shard-0")
    assert hostvars["shard-replica-0"] in _targets(primary, "shard_postgres")
    assert hostvars["shard-replica-0"] in _targets(primary, "patroni_api")
    assert hostvars["etcd-3"] in _targets(primary, "etcd_client")
    assert hostvars["local-redis"] in _targets(primary, "redis_hot")
    assert "tcp dport 443 ip daddr != {" in _targets(primary, "object_storage")
    assert "udp dport 51820 ip daddr != {" in _targets(primary, "wireguard_handshake")
    # not a client of the catalog's databases, the batch Redis or the apps
    others = {"production_postgres", "staging_postgres", "redis_batch", "storage_box", "gemini"}
    assert not others & set(primary)
    replica = _rules("shard-replica-0")
    assert hostvars["local-shard-0"] in _targets(replica, "shard_postgres")
    assert "etcd_peer" in replica  # it is an etcd member too
    assert "wireguard_handshake" not in replica  # Helsinki: no tunnel of its own


def test_database_servers_reach_the_storage_box() -> None:
    for host in ("production-db", "staging-db"):
        rules = _rules(host)
        assert "tcp dport 23 ip daddr != {" in _targets(rules, "storage_box"), host
        assert not {"shard_postgres", "etcd_client", "redis_hot", "gemini"} & set(rules), host


def test_etcd_and_redis_hosts_have_nothing_external_but_the_basics() -> None:
    etcd = _rules("etcd-3")
    assert {"etcd_peer", "etcd_client"} <= set(etcd)
    # the allow-list's defaults, and the services every host may call (clients all / public)
    basics = {"dns", "dns_tcp", "ntp", "dhcp", "http_public", "https_public", "ssh"}
    basics |= {"api_gateway_http", "api_gateway_https", "gateway_https"}
    assert set(etcd) - basics == {"etcd_peer", "etcd_client"}
    redis = _rules("local-redis")
    assert set(redis) - basics == {"wireguard_handshake", "wireguard"}, sorted(redis)


def test_provider_callers_reach_their_providers() -> None:
    reranker = _rules("llm-reranker")
    assert {"gemini", "object_storage", "redis_batch"} <= set(reranker)
    assert not {"ximilar", "weatherapi", "anthropic"} & set(reranker)
    context = _rules("local-context")
    assert {"weatherapi", "production_pgbouncer", "redis_hot", "wireguard_handshake"} <= set(context)
    assert _rules("ximilar-gw").keys() >= {"ximilar", "embedder", "object_storage"}
    assert _rules("local-mood").keys() >= {"gemini", "deepseek"}


def _host_ip(host: str) -> str:
    _loader, inventory, variables = _inventory(LAB)
    return str(variables.get_vars(host=inventory.get_host(host))["private_ip"])


# ------------------------------------------------------------------------- production inventories


def _production_groups() -> dict[str, set[str]]:
    """host → its groups (parents included) over both production inventories."""
    _loader, inventory, _vars = _inventory(*PRODUCTION)
    return {h.name: {g.name for g in h.get_groups()} for h in inventory.get_hosts()}


def test_no_allowlisted_host_runs_a_workload_left_on_accept() -> None:
    """A host in an allow-list group and in another workload group would lose that workload's
    destinations: every group of an allowlisted host must be allowlisted or structural."""
    hosts = _production_groups()
    allowlisted = {h: g for h, g in hosts.items() if g & ALLOWLIST_GROUPS}
    assert {"production-db", "staging-db", "shard-replica-0", "local-shard-0", "etcd-3"} <= set(allowlisted)
    for host, groups in allowlisted.items():
        assert groups <= ALLOWLIST_GROUPS | STRUCTURAL, (host, sorted(groups - ALLOWLIST_GROUPS - STRUCTURAL))


def test_every_group_named_exists() -> None:
    known = {g for groups in _production_groups().values() for g in groups}
    named = ALLOWLIST_GROUPS | {g for entry in EXTERNAL.values() for g in entry["groups"]}
    assert named <= known, sorted(named - known)


#: external service → the settings fields (module.Class.field) whose default is its base URL
SETTINGS_URLS = {
    "gemini": [
        "llm_reranker.settings.LlmRerankerSettings.gemini_base_url",
        "mood_agent.settings.MoodAgentSettings.gemini_base_url",
        "llm_orchestrator.settings.LlmOrchestratorSettings.gemini_base_url",
    ],
    "deepseek": [
        "mood_agent.settings.MoodAgentSettings.deepseek_base_url",
        "llm_orchestrator.settings.LlmOrchestratorSettings.deepseek_base_url",
    ],
    "anthropic": ["llm_orchestrator.settings.LlmOrchestratorSettings.claude_base_url"],
    "qwen": ["llm_orchestrator.settings.LlmOrchestratorSettings.qwen_base_url"],
    "cohere": ["llm_orchestrator.settings.LlmOrchestratorSettings.embedding_base_url"],
    "intelistyle": ["llm_orchestrator.settings.LlmOrchestratorSettings.intelistyle_api_url"],
    "ximilar": [
        "ximilar_gw.settings.XimilarGwSettings.ximilar_base_url",
        "ximilar_sync.settings.XimilarSyncSettings.ximilar_base_url",
    ],
    "weatherapi": ["context_agent.settings.ContextAgentSettings.weather_api_url"],
    "apify": ["apify.settings.ApifySettings.apify_base_url"],
    "zara_api": ["scraper.settings.ScraperSettings.zara_api_base_url"],
    "elevenlabs": ["voice.settings.VoiceSettings.elevenlabs_base_url"],
}


def _endpoint(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname, url
    return parts.hostname, parts.port or {"https": 443, "http": 80}[parts.scheme]


@pytest.mark.parametrize("name", sorted(SETTINGS_URLS))
def test_external_urls_are_the_apps_settings_defaults(name: str) -> None:
    for where in SETTINGS_URLS[name]:
        module, cls, field = where.rsplit(".", 2)
        default = getattr(importlib.import_module(module), cls).model_fields[field].default
        assert _endpoint(str(default)) == _endpoint(EXTERNAL[name]["url"]), where


def test_every_provider_url_is_checked() -> None:
    with_url = {n for n, e in EXTERNAL.items() if "url" in e and not str(e["url"]).startswith("{{")}
    assert with_url == set(SETTINGS_URLS)
