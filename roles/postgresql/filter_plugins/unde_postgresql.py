"""Filters of the postgresql role: who may connect from where, and sizes for the kernel settings.

* ``unde_pg_access``: the login users of this host's databases with the source addresses of the
  hosts that use them (the pg_hba / PgBouncer hba rules), from the users -> client groups matrix.
* ``unde_pg_setting``: a value as postgresql.conf writes it.
* ``unde_pg_size_bytes``: a PostgreSQL memory setting (``'8GB'``, ``'512MB'``, ``1024`` in 8 kB
  pages) in bytes.
* ``unde_pg_hugepages``: ``vm.nr_hugepages`` for a ``shared_buffers`` value.

Pure functions: ``pytest roles/postgresql/tests`` runs them without Ansible.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

# PostgreSQL memory units (guc.c): a bare number of a memory setting is in blocks of 8 kB.
UNITS = {"B": 1, "kB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
SIZE_RE = re.compile(r"^\s*(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>B|kB|MB|GB|TB)?\s*$")
PG_BLOCK = 8192


class AccessRule(TypedDict):
    database: str
    user: str
    group_role: str
    credential: str
    clients: list[str]
    hosts: list[str]
    addresses: list[str]


class PostgresqlFilterError(ValueError):
    """Raised on a malformed users matrix or inventory (Ansible reports the message)."""


def _cidr(value: Any, what: str) -> str:
    try:
        net = ipaddress.ip_network(str(value).strip(), strict=False)
    except ValueError as exc:
        raise PostgresqlFilterError(f"{what}: {value!r} is not an IP address or network") from exc
    return f"{net.network_address}/{net.prefixlen}"


def _sort_key(cidr: str) -> tuple[int, int, int]:
    net = ipaddress.ip_network(cidr)
    return (net.version, int(net.network_address), net.prefixlen)


def unde_pg_addresses(
    hosts: Sequence[str], hostvars: Mapping[str, Any], address_vars: Sequence[str]
) -> list[str]:
    """The source addresses of ``hosts`` as sorted CIDRs (``/32``, ``/128`` for single addresses).

    A host's addresses are the values of ``address_vars`` it defines (its private address and,
    on local servers, the WireGuard tunnel address its traffic to Helsinki leaves from).
    """
    out: set[str] = set()
    for host in hosts:
        hv = hostvars[host]
        found = [hv.get(var) for var in address_vars if hv.get(var)]
        if not found:
            raise PostgresqlFilterError(f"host {host} has none of {list(address_vars)}")
        out.update(_cidr(value, f"{host}") for value in found)
    return sorted(out, key=_sort_key)


def unde_pg_access(
    databases: Sequence[Mapping[str, Any]],
    groups: Mapping[str, Sequence[str]],
    hostvars: Mapping[str, Any],
    address_vars: Sequence[str] = ("private_ip",),
    local_addresses: Sequence[str] = (),
) -> list[AccessRule]:
    """One rule per login user of ``databases``: who connects, from which addresses.

    Args:
        databases: entries of ``postgresql_databases`` served by this host
            (``{name, users: [{name, credential, clients: [groups]}]}``).
        groups: Ansible's ``groups``.
        hostvars: Ansible's ``hostvars``.
        address_vars: host variables holding a client's source addresses.
        local_addresses: addresses added to every user (PgBouncer on this host connects from
            127.0.0.1 as the client's user).

    Returns:
        Rules sorted by database and user; ``group_role`` is ``<database>_<user>``, the NOLOGIN
        role the migrations grant to (files/sql/README.md).
    """
    local = [_cidr(a, "local address") for a in local_addresses]
    rules: list[AccessRule] = []
    seen: set[tuple[str, str]] = set()
    for db in databases:
        dbname = str(db["name"])
        for user in db.get("users") or []:
            name = str(user["name"])
            if (dbname, name) in seen:
                raise PostgresqlFilterError(f"database {dbname}: user {name} is listed twice")
            seen.add((dbname, name))
            if not user.get("credential"):
                raise PostgresqlFilterError(f"database {dbname}: user {name} has no credential")
            clients = [str(c) for c in user.get("clients") or []]
            hosts: set[str] = set()
            for group in clients:
                if group not in groups:
                    raise PostgresqlFilterError(
                        f"database {dbname}: client group {group!r} of user {name} is not in the inventory"
                    )
                hosts.update(groups[group])
            addresses = set(unde_pg_addresses(sorted(hosts), hostvars, address_vars)) | set(local)
            rules.append(
                AccessRule(
                    database=dbname,
                    user=name,
                    group_role=f"{dbname}_{name}",
                    credential=str(user["credential"]),
                    clients=clients,
                    hosts=sorted(hosts),
                    addresses=sorted(addresses, key=_sort_key),
                )
            )
    rules.sort(key=lambda r: (r["database"], r["user"]))
    return rules


def unde_pg_setting(value: Any) -> str:
    """A value as postgresql.conf writes it: booleans on/off, numbers bare, strings single-quoted."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int | float):
        return str(value)
    text = str(value)
    if "\n" in text or "\r" in text:
        raise PostgresqlFilterError(f"setting value {text!r} spans lines")
    return "'" + text.replace("'", "''") + "'"


def unde_pg_size_bytes(value: Any) -> int:
    """A PostgreSQL memory size in bytes: ``'8GB'`` -> 8589934592; a bare number is 8 kB blocks."""
    if isinstance(value, bool):
        raise PostgresqlFilterError(f"{value!r} is not a memory size")
    if isinstance(value, int):
        return value * PG_BLOCK
    match = SIZE_RE.match(str(value))
    if not match:
        raise PostgresqlFilterError(f"{value!r} is not a memory size (number + B, kB, MB, GB or TB)")
    unit = match.group("unit")
    number = float(match.group("num"))
    return int(number * (UNITS[unit] if unit else PG_BLOCK))


def unde_pg_hugepages(
    shared_buffers: Any, hugepage_kb: int = 2048, overhead: float = 0.03, round_to: int = 1000
) -> int:
    """``vm.nr_hugepages`` for ``shared_buffers``: the buffers in huge pages plus ``overhead`` (the
    rest of PostgreSQL's shared memory: WAL buffers, locks, connection slots), rounded up to a
    multiple of ``round_to``. 32GB with the defaults gives 17000 (spec 02 §14).
    """
    if hugepage_kb <= 0 or round_to <= 0 or overhead < 0:
        raise PostgresqlFilterError("hugepage_kb and round_to must be positive, overhead not negative")
    pages = unde_pg_size_bytes(shared_buffers) / (hugepage_kb * 1024) * (1 + overhead)
    return int(math.ceil(pages / round_to) * round_to)


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Any]:
        return {
            "unde_pg_access": unde_pg_access,
            "unde_pg_addresses": unde_pg_addresses,
            "unde_pg_setting": unde_pg_setting,
            "unde_pg_size_bytes": unde_pg_size_bytes,
            "unde_pg_hugepages": unde_pg_hugepages,
        }
