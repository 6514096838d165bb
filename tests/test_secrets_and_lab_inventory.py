"""Secrets stay in vault; the lab inventory mirrors both sites with lab addresses only."""

from __future__ import annotations

import base64
import ipaddress
import re
import subprocess

import pytest
import yaml
from support import REPO
from unde_tools import lab_inventory, lab_vault
from unde_tools.inventory import load


def test_every_credential_points_at_a_vault_variable() -> None:
    example = lab_vault.example_keys()
    creds = yaml.safe_load((REPO / "group_vars/all/credentials.yml").read_text())
    assert len(creds) == len(example)
    for name, value in creds.items():
        vault_name = "vault_" + name.removeprefix("unde_")
        assert vault_name in example, f"{name} has no entry in vault.example.yml"
        assert value == "{{ " + vault_name + " }}", f"{name} must be exactly a reference to {vault_name}"


def test_vault_example_lists_each_credential_with_a_comment_and_no_value() -> None:
    text = (REPO / "vault.example.yml").read_text()
    for name, value in lab_vault.example_keys().items():
        empty = value in ("", {}) or (isinstance(value, dict) and set(value.values()) == {""})
        assert empty, f"{name}: vault.example.yml must not carry a value"
        line = next(ln for ln in text.splitlines() if ln.strip().startswith(name + ":"))
        assert re.search(r"#\s*\S", line), f"{name}: needs a one-line comment saying who uses it"
    # spec 01 §21 and 03 credentials that must be there
    for must in (
        "vault_apify_token",
        "vault_ximilar_api_token",
        "vault_elevenlabs_api_key",
        "vault_weather_api_key",
        "vault_master_encryption_keys",
        "vault_replication_password",
        "vault_patroni_rest_api_password",
        "vault_wireguard_private_keys",
        "vault_grafana_admin_password",
        "vault_alertmanager_slack_webhook_url",
        "vault_production_db_embed_writer_password",
        "vault_production_db_pgvector_reader_password",
        "vault_s3_originals_read_access_key",
    ):
        assert must in lab_vault.example_keys()


def test_lab_vault_is_encrypted_and_complete() -> None:
    assert (
        (REPO / "inventories/lab/secrets.vault.yml").read_text().startswith("$ANSIBLE_VAULT;1.2;AES256;lab")
    )
    values = lab_vault.decrypt()
    assert set(values) == set(lab_vault.example_keys())
    inv = load([REPO / "inventories/lab"])
    wg = inv.hosts_of("wireguard_local") | inv.hosts_of("wireguard_gateway")
    assert set(values["vault_wireguard_private_keys"]) == wg
    # the master keys by version: the example's and the lab's rotation target, 32 random bytes each
    keys = values["vault_master_encryption_keys"]
    assert set(keys) == {*lab_vault.example_keys()["vault_master_encryption_keys"], "2"}
    assert all(len(base64.b64decode(k, validate=True)) == 32 for k in keys.values())
    assert len(set(keys.values())) == len(keys)


def test_no_clear_text_private_key_or_password_is_tracked() -> None:
    files = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    offenders = []
    for f in files:
        path = REPO / f
        if not path.is_file() or f.endswith(".vault.yml"):
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        if re.search(r"-----BEGIN (RSA |EC |OPENSSH )?PRIVATE KEY-----", text):
            offenders.append(f)
        if f.startswith(("group_vars/", "inventories/")) and re.search(
            r"(password|token|secret|api_key)\w*:\s*['\"]?(?!\{\{)[A-Za-z0-9+/=_-]{6,}", text
        ):
            offenders.append(f)
    assert offenders == []


@pytest.mark.parametrize(
    ("plan", "lab"),
    [
        ("10.1.0.2", "198.18.0.2"),
        ("10.1.1.20", "198.18.1.20"),
        ("10.2.0.50", "198.19.0.50"),
        ("10.2.1.3", "198.19.1.3"),
        ("10.3.10.100", "198.19.74.100"),
    ],
)
def test_lab_address_mapping(plan: str, lab: str) -> None:
    assert lab_inventory.lab_address(plan) == lab


@pytest.mark.parametrize("bad", ["192.168.1.1", "10.4.0.1", "10.2.64.1"])
def test_lab_address_refuses_addresses_outside_the_plan(bad: str) -> None:
    with pytest.raises(ValueError, match=bad):
        lab_inventory.lab_address(bad)


def test_lab_inventory_mirrors_both_sites() -> None:
    sites = load([REPO / "inventories/helsinki", REPO / "inventories/local"])
    lab = load([REPO / "inventories/lab"])
    standins = lab.hosts_of("lab_standins")
    assert set(lab.hostvars) - standins == set(sites.hostvars)
    assert lab.all_groups() - {"lab_standins", *lab_inventory.LAB_STANDINS} == sites.all_groups()
    for g in sites.all_groups():
        assert lab.hosts_of(g) == sites.hosts_of(g), g
    lab_range = ipaddress.ip_network("198.18.0.0/15")
    for h, hv in lab.hostvars.items():
        for var in lab_inventory.ADDRESS_VARS:
            if var in hv:
                assert ipaddress.ip_address(hv[var]) in lab_range, (h, var)
        if h not in standins:
            assert hv["private_ip"] == lab_inventory.lab_address(sites.hostvars[h]["private_ip"])
    assert lab_inventory.render() == (REPO / "inventories/lab/hosts.yml").read_text()


def test_lab_standins_are_lab_only_hosts_on_the_helsinki_bridge() -> None:
    lab = load([REPO / "inventories/lab"])
    sites = load([REPO / "inventories/helsinki", REPO / "inventories/local"])
    standins = lab.hosts_of("lab_standins")
    assert standins == {"lab-objstore", "lab-storagebox"}
    assert lab.hosts_of("lab_objstore") == {"lab-objstore"}
    assert lab.hosts_of("lab_storagebox") == {"lab-storagebox"}
    # never in a site inventory, never in a site group: only playbooks/lab_standins.yml deploys them
    assert not standins & set(sites.hostvars)
    for h in standins:
        assert lab.groups_of(h) <= {"lab_standins", "lab_objstore", "lab_storagebox"}, h
        assert lab.var(h, "unde_site") == "helsinki"
        assert ipaddress.ip_address(lab.hostvars[h]["ansible_host"]) in lab_inventory.LAB_STANDIN_NET
        assert lab.hostvars[h]["private_ip"] == lab.hostvars[h]["ansible_host"]
    # no plan address maps into the stand-in range
    for hv in sites.hostvars.values():
        mapped = ipaddress.ip_address(lab_inventory.lab_address(hv["private_ip"]))
        assert mapped not in lab_inventory.LAB_STANDIN_NET
