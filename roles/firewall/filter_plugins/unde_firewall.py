"""Filters ``unde_firewall_rules`` and ``unde_firewall_egress_rules``, from ``unde_services``.

Inbound: for every service whose ``groups`` contain a group of the host (or ``all``), the host
accepts ``proto dport port`` only from the client hosts' addresses (``clients`` groups; ``all`` =
every inventory host; ``public`` = any source), plus the admin CIDRs for the admin services.

Outbound (the allow-list of ``firewall_egress_policy: allowlist``): for every service whose
``clients`` contain a group of the host (``all``, ``public`` count for every host), the host may
open ``proto dport port`` to the addresses of the hosts that run it (each server's own
``unde_port_overrides`` win), plus the setting's entries to ``any`` destination, to ``public``
ones (outside the private networks) or to listed networks. ``unde_firewall_external`` turns
the external services a host group calls (``unde_egress_external``: a base URL or a port each)
into such entries, to public destinations, for the hosts of the groups that call them.

Results are fully sorted so the rendered ruleset is byte-for-byte stable between runs.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypedDict
from urllib.parse import urlsplit

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
PROTOCOLS = ("tcp", "udp")
# IANA names an egress allow-list entry may give as its port (external services' standard ports).
SERVICE_NAMES = frozenset({"domain", "bootps", "http", "ntp", "https", "ssh"})


class FirewallRule(TypedDict):
    name: str
    proto: str
    port: int
    public: bool
    ipv4: list[str]
    ipv6: list[str]
    description: str


class FirewallRulesError(ValueError):
    """Raised on a malformed service registry or inventory (Ansible reports the message)."""


def _network(value: str, what: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(str(value).strip(), strict=False)
    except ValueError as exc:
        raise FirewallRulesError(f"{what}: {value!r} is not an IP address or network") from exc


def _render(net: IPNetwork) -> str:
    """An address as nft writes it: a host without its /32 or /128."""
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return str(net)


def _port(name: str, value: Any) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError) as exc:
        raise FirewallRulesError(f"service {name}: port {value!r} is not a number") from exc
    if not 1 <= port <= 65535:
        raise FirewallRulesError(f"service {name}: port {port} is out of range")
    return port


def _proto(name: str, value: Any) -> str:
    proto = str(value).lower()
    if proto not in PROTOCOLS:
        raise FirewallRulesError(f"service {name}: proto {proto!r} is not one of {PROTOCOLS}")
    return proto


def _rule(
    name: str, proto: str, port: int, public: bool, sources: set[IPNetwork], description: Any
) -> FirewallRule:
    ipv4, ipv6 = _by_family(sources)
    return FirewallRule(
        name=name,
        proto=proto,
        port=port,
        public=public,
        ipv4=ipv4,
        ipv6=ipv6,
        description=_comment(description),
    )


def _by_family(nets: set[IPNetwork]) -> tuple[list[str], list[str]]:
    """The networks sorted and rendered as nft writes them, IPv4 and IPv6 apart."""
    ordered = sorted(nets, key=lambda n: (n.version, n.network_address, n.prefixlen))
    return [_render(n) for n in ordered if n.version == 4], [_render(n) for n in ordered if n.version == 6]


def _comment(description: Any) -> str:
    """A description as one line without double quotes (it goes into a comment line of the ruleset)."""
    return " ".join(str(description or "").replace('"', "'").split())


def _extra_rule(extra: Mapping[str, Any]) -> FirewallRule:
    name = str(extra.get("name") or "")
    if not name:
        raise FirewallRulesError(f"firewall_extra_rules: {dict(extra)!r} has no name")
    sources = extra.get("sources")
    if sources == "any":
        nets: set[IPNetwork] = set()
    elif isinstance(sources, Sequence) and not isinstance(sources, str) and sources:
        nets = {_network(str(s), f"firewall_extra_rules {name}") for s in sources}
    else:
        raise FirewallRulesError(f"firewall_extra_rules {name}: sources must be a non-empty list or 'any'")
    proto = _proto(name, extra.get("proto", "tcp"))
    port = _port(name, extra.get("port"))
    return _rule(name, proto, port, sources == "any", nets, extra.get("description", "firewall_extra_rules"))


def _host_addresses(
    hosts: Iterable[str], hostvars: Mapping[str, Any], address_vars: Sequence[str]
) -> set[IPNetwork]:
    out: set[IPNetwork] = set()
    for host in hosts:
        hv = hostvars[host]
        found = False
        for var in address_vars:
            value = hv.get(var)
            if value:
                out.add(_network(str(value), f"{host}.{var}"))
                found = True
        if not found:
            raise FirewallRulesError(f"host {host} has none of {list(address_vars)}")
    return out


def unde_firewall_rules(
    services: Mapping[str, Mapping[str, Any]],
    host: str,
    groups: Mapping[str, Sequence[str]],
    hostvars: Mapping[str, Any],
    port_overrides: Mapping[str, Any] | None = None,
    admin_cidrs: Sequence[str] = (),
    admin_services: Sequence[str] = (),
    address_vars: Sequence[str] = ("private_ip",),
    extra_rules: Sequence[Mapping[str, Any]] = (),
) -> list[FirewallRule]:
    """Return the accept rules for ``host``, sorted by (port, proto, name).

    Args:
        services: ``unde_services`` (name -> {port, proto, groups, clients, description}).
        host: the inventory name of the host the ruleset is for.
        groups: Ansible's ``groups`` (group -> member hosts, children flattened).
        hostvars: Ansible's ``hostvars``.
        port_overrides: this host's ``unde_port_overrides`` (service -> port).
        admin_cidrs: networks that may also reach the admin services.
        admin_services: service names that admins reach directly (ssh, UIs).
        address_vars: host variables whose values identify a client host (private_ip, tunnel IP).
        extra_rules: host-specific accepts, {name, proto, port, sources: [CIDRs] | "any"}.

    Returns:
        One rule per service the host runs; ``public`` rules carry no source lists.
    """
    overrides = dict(port_overrides or {})
    unknown = sorted(set(overrides) - set(services))
    if unknown:
        raise FirewallRulesError(f"unde_port_overrides of {host} names unknown services: {unknown}")
    host_groups = {g for g, members in groups.items() if host in members} | {"all"}
    admin_nets = {_network(c, "unde_admin_cidrs") for c in admin_cidrs}
    rules: list[FirewallRule] = [_extra_rule(extra) for extra in extra_rules]
    for name in sorted(services):
        svc = services[name]
        if not host_groups.intersection(svc.get("groups") or []):
            continue
        proto = _proto(name, svc.get("proto", "tcp"))
        port = _port(name, overrides.get(name, svc.get("port")))
        clients = [str(c) for c in svc.get("clients") or []]
        public = "public" in clients
        sources: set[IPNetwork] = set()
        if not public:
            for group in clients:
                if group not in groups:
                    raise FirewallRulesError(
                        f"service {name}: client group {group!r} is not in the inventory"
                    )
                sources |= _host_addresses(groups[group], hostvars, address_vars)
            if name in admin_services:
                sources |= admin_nets
        rules.append(_rule(name, proto, port, public, sources, svc.get("description", "")))
    rules.sort(key=lambda r: (r["port"], r["proto"], r["name"]))
    return rules


class EgressRule(TypedDict):
    name: str
    proto: str
    port: int
    # "hosts" (ipv4/ipv6 lists), "any" (every destination) or "public" (not in private4/private6).
    scope: str
    ipv4: list[str]
    ipv6: list[str]
    description: str


def _egress_rule(
    name: str, proto: str, port: int, scope: str, nets: set[IPNetwork], description: Any
) -> EgressRule:
    ipv4, ipv6 = _by_family(nets)
    return EgressRule(
        name=name,
        proto=proto,
        port=port,
        scope=scope,
        ipv4=ipv4,
        ipv6=ipv6,
        description=_comment(description),
    )


def _service_port(name: str, value: Any, proto: str) -> Any:
    """One of :data:`SERVICE_NAMES` as its number from the controller's services database
    (/etc/services): the external services' standard ports are not the registry's facts, and are
    not typed here either. Anything else is returned for :func:`_port` to check."""
    if str(value) in SERVICE_NAMES:
        try:
            return socket.getservbyname(str(value), proto)
        except OSError as exc:
            raise FirewallRulesError(f"service {name}: {value!r} is no {proto} service") from exc
    return value


def _egress_allow(entry: Mapping[str, Any]) -> EgressRule:
    name = str(entry.get("name") or "")
    if not name:
        raise FirewallRulesError(f"firewall egress allow-list: {dict(entry)!r} has no name")
    proto = _proto(name, entry.get("proto", "tcp"))
    port = _port(name, _service_port(name, entry.get("port"), proto))
    dest = entry.get("destinations")
    if dest in ("any", "public"):
        return _egress_rule(name, proto, port, str(dest), set(), entry.get("description", ""))
    if isinstance(dest, Sequence) and not isinstance(dest, str) and dest:
        nets = {_network(str(d), f"firewall egress allow-list {name}") for d in dest}
        return _egress_rule(name, proto, port, "hosts", nets, entry.get("description", ""))
    raise FirewallRulesError(
        f"firewall egress allow-list {name}: destinations must be 'any', 'public' or a non-empty list"
    )


def unde_firewall_egress_rules(
    services: Mapping[str, Mapping[str, Any]],
    host: str,
    groups: Mapping[str, Sequence[str]],
    hostvars: Mapping[str, Any],
    address_vars: Sequence[str] = ("private_ip",),
    allow: Sequence[Mapping[str, Any]] = (),
) -> list[EgressRule]:
    """Return the outbound accept rules for ``host``, sorted by (port, proto, name).

    Args:
        services: ``unde_services`` (name -> {port, proto, groups, clients, description}).
        host: the inventory name of the host the ruleset is for.
        groups: Ansible's ``groups`` (group -> member hosts, children flattened).
        hostvars: Ansible's ``hostvars`` (a server's ``unde_port_overrides`` move its port).
        address_vars: host variables whose values are a server's addresses.
        allow: the setting's entries, {name, proto, port, destinations: any | public | [CIDRs]}.

    Returns:
        One rule per (service, port) the host calls, one per allow-list entry.
    """
    host_groups = {g for g, members in groups.items() if host in members} | {"all", "public"}
    rules: list[EgressRule] = [_egress_allow(entry) for entry in allow]
    for name in sorted(services):
        svc = services[name]
        if not host_groups.intersection(str(c) for c in svc.get("clients") or []):
            continue
        proto = _proto(name, svc.get("proto", "tcp"))
        by_port: dict[int, set[IPNetwork]] = {}
        for group in svc.get("groups") or []:
            if group not in groups:
                raise FirewallRulesError(f"service {name}: server group {group!r} is not in the inventory")
            for server in groups[group]:
                if server == host:
                    continue  # its own address leaves through lo, which is accepted
                overrides = hostvars[server].get("unde_port_overrides") or {}
                port = _port(name, overrides.get(name, svc.get("port")))
                by_port.setdefault(port, set()).update(_host_addresses([server], hostvars, address_vars))
        for port, nets in sorted(by_port.items()):
            rules.append(_egress_rule(name, proto, port, "hosts", nets, svc.get("description", "")))
    rules.sort(key=lambda r: (r["port"], r["proto"], r["name"]))
    return rules


def _external_port(name: str, entry: Mapping[str, Any], proto: str) -> int:
    """The entry's ``port``, else its ``url``'s port, else the standard port of the URL's scheme."""
    if entry.get("port") not in (None, ""):
        return _port(name, _service_port(name, entry["port"], proto))
    url = str(entry.get("url") or "")
    try:
        parts = urlsplit(url)
        explicit = parts.port
    except ValueError as exc:
        raise FirewallRulesError(f"external service {name}: url {url!r} is not a URL") from exc
    if not parts.scheme or not parts.hostname:
        raise FirewallRulesError(f"external service {name}: needs a port or an absolute url, got {url!r}")
    if explicit is not None:
        return _port(name, explicit)
    if parts.scheme not in SERVICE_NAMES:
        raise FirewallRulesError(f"external service {name}: url {url!r} names no port")
    return _port(name, _service_port(name, parts.scheme, proto))


def unde_firewall_external(
    external: Mapping[str, Mapping[str, Any]], host: str, groups: Mapping[str, Sequence[str]]
) -> list[dict[str, Any]]:
    """Egress allow-list entries (``destinations: public``) for the external services ``host``
    calls: those whose ``groups`` contain a group of the host.

    Args:
        external: name -> {url (its port, else its scheme's) or port, proto (tcp), groups,
            description}; groups an inventory does not have are skipped (the other site's).
        host: the inventory name of the host the ruleset is for.
        groups: Ansible's ``groups``.

    Returns:
        One entry per external service, sorted by name, for ``unde_firewall_egress_rules``.
    """
    host_groups = {g for g, members in groups.items() if host in members}
    out: list[dict[str, Any]] = []
    for name in sorted(external):
        entry = external[name]
        callers = entry.get("groups")
        if not isinstance(callers, Sequence) or isinstance(callers, str) or not callers:
            raise FirewallRulesError(f"external service {name}: groups must be a non-empty list")
        proto = _proto(name, entry.get("proto", "tcp"))
        port = _external_port(name, entry, proto)
        if host_groups.intersection(str(g) for g in callers):
            description = entry.get("description") or entry.get("url") or name
            out.append({"name": name, "proto": proto, "port": port, "destinations": "public"})
            out[-1]["description"] = description
    return out


def unde_firewall_networks(networks: Sequence[str], version: int) -> list[str]:
    """The networks of one IP version, checked and sorted, as nft writes them."""
    nets = {_network(str(n), "firewall_egress_private_cidrs") for n in networks}
    same = [n for n in nets if n.version == version]
    return [_render(n) for n in sorted(same, key=lambda n: (n.network_address, n.prefixlen))]


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Any]:
        return {
            "unde_firewall_rules": unde_firewall_rules,
            "unde_firewall_egress_rules": unde_firewall_egress_rules,
            "unde_firewall_external": unde_firewall_external,
            "unde_firewall_networks": unde_firewall_networks,
        }
