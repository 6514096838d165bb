"""The .env that roles/api_gateway and roles/voice render for the lab's local-app and local-voice,
read back by the apps' own settings classes.

Each role's whole ``unde_app_env`` is templated by Ansible's engine (group_vars/all, the lab
inventory's host variables, the role's defaults and vars, the lab vault's values), written with the
shared ``templates/app.env.j2`` and loaded with ``ApiGatewaySettings`` / ``VoiceSettings``:

* the settings load (every required field is rendered, every value passes its validator);
* every name the role renders is a field of the settings class (the classes ignore unknown names,
  so a misspelt name would silently leave the default in place);
* the values that must agree with another place do: the upload limits nginx enforces, the rate
  limits of group_vars, the token keys (the voice server's public keys are those of the gateway's
  signing keys), the Redis DBs and users of the registry.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from ansible.inventory.manager import InventoryManager  # type: ignore[import-untyped]
from ansible.parsing.dataloader import DataLoader  # type: ignore[import-untyped]
from ansible.plugins.loader import init_plugin_loader  # type: ignore[import-untyped]
from ansible.template import Templar, trust_as_template  # type: ignore[import-untyped]
from ansible.vars.hostvars import HostVars  # type: ignore[import-untyped]
from ansible.vars.manager import VariableManager  # type: ignore[import-untyped]
from api_gateway.settings import ApiGatewaySettings
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from redis.connection import parse_url
from support import REPO
from unde_common.settings import UndeSettings
from unde_tools.lab_vault import decrypt
from voice.settings import VoiceSettings

LAB_INVENTORY = REPO / "inventories" / "lab" / "hosts.yml"
GROUP_VARS = REPO / "group_vars" / "all"
ROLES: dict[str, tuple[str, type[UndeSettings]]] = {
    "api_gateway": ("local-app", ApiGatewaySettings),
    "voice": ("local-voice", VoiceSettings),
}


@functools.cache
def _vault() -> dict[str, Any]:
    return decrypt()


def _jinja() -> jinja2.Environment:
    env = jinja2.Environment(  # noqa: S701  (renders .env text, not HTML)
        loader=jinja2.FileSystemLoader(REPO / "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["to_json"] = json.dumps
    env.filters["combine"] = lambda base, *more: {k: v for d in (base, *more) for k, v in d.items()}
    return env


@functools.cache
def _rendered(role: str) -> dict[str, Any]:
    """The role's ``unde_app_env`` for its lab host, every template resolved."""
    host, _ = ROLES[role]
    init_plugin_loader()
    loader = DataLoader()
    inventory = InventoryManager(loader=loader, sources=[str(LAB_INVENTORY)])
    variables = VariableManager(loader=loader, inventory=inventory)
    host_vars = variables.get_vars(host=inventory.get_host(host), include_hostvars=True)
    host_vars["hostvars"] = HostVars(inventory=inventory, variable_manager=variables, loader=loader)
    base = REPO / "roles" / role
    data = {
        **loader.load_from_file(str(base / "defaults" / "main.yml"), trusted_as_template=True),
        **host_vars,
        **loader.load_from_file(str(base / "vars" / "main.yml"), trusted_as_template=True),
        **_vault(),
        # the avatar's voice is the inventory's (no default; the lab's scenario sets its simulator's)
        "voice_elevenlabs_voice_id": "lab-voice",
    }
    templar = Templar(loader=loader, variables=data)
    env = templar.template(trust_as_template("{{ unde_app_env }}"))
    assert isinstance(env, dict)
    return env


def _dotenv(role: str, tmp_path: Path) -> Path:
    text = (
        _jinja()
        .get_template("app.env.j2")
        .render(
            ansible_managed="managed",
            unde_app_name=role,
            __unde_app_user=f"unde-{role}",
            unde_app_env=_rendered(role),
            unde_services=yaml.safe_load((GROUP_VARS / "services.yml").read_text())["unde_services"],
        )
    )
    path = tmp_path / ".env"
    path.write_text(text)
    return path


def _load(role: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("UNDE_ENV_FILE", str(_dotenv(role, tmp_path)))
    return ROLES[role][1].load()


def _names(cls: type[UndeSettings]) -> set[str]:
    names: set[str] = set()
    for field, info in cls.model_fields.items():
        names.add(field)
        alias = info.validation_alias
        choices = getattr(alias, "choices", None)
        if isinstance(alias, str):
            names.add(alias)
        elif choices:
            names.update(str(c) for c in choices)
    return {n.lower() for n in names}


def _group_vars(name: str) -> Any:
    for path in sorted(GROUP_VARS.glob("*.yml")):
        data = yaml.safe_load(path.read_text()) or {}
        if name in data:
            return data[name]
    raise KeyError(name)


@pytest.mark.parametrize("role", sorted(ROLES))
def test_every_rendered_name_is_a_setting(role: str) -> None:
    known = _names(ROLES[role][1])
    unknown = sorted(n for n in _rendered(role) if n.lower() not in known)
    assert not unknown, f"roles/{role} renders names its settings class ignores: {unknown}"


@pytest.mark.parametrize("role", sorted(ROLES))
def test_the_rendered_env_loads(role: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _load(role, tmp_path, monkeypatch)
    assert settings.host == _rendered(role)["HOST"]


def test_gateway_values_agree_with_their_one_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = _load("api_gateway", tmp_path, monkeypatch)
    assert s.media_max_photo_bytes == _group_vars("unde_upload_max_photo_bytes")
    assert s.media_max_thumb_bytes == _group_vars("unde_upload_max_thumb_bytes")
    rates = _group_vars("unde_rate_limits")
    assert {k: {"rate": v.rate, "burst": v.burst} for k, v in s.rate_limits.items()} == rates
    db = _group_vars("unde_redis_db")
    for url, name in [
        (s.redis_url, "api_gateway"),
        (s.shard_routing_redis_url, "shard_routing"),
        (s.dialogue_broker_url, "llm_orchestrator"),
        (s.recognition_broker_url, "recognition"),
    ]:
        parsed = parse_url(url.get_secret_value())  # type: ignore[no-untyped-call]
        assert parsed["db"] == db[name] and parsed["username"] == "api_gateway", name
    assert s.recognition_queue == _group_vars("unde_celery_queues")["recognition"]
    assert s.jwt_current_kid == _group_vars("unde_jwt_current_kid")
    assert set(json.loads(s.jwt_signing_keys.get_secret_value())) == set(_vault()["vault_jwt_signing_keys"])


def test_voice_verifies_with_the_gateway_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gateway = _load("api_gateway", tmp_path, monkeypatch)
    (tmp_path / "voice").mkdir()
    voice = _load("voice", tmp_path / "voice", monkeypatch)
    signing = json.loads(gateway.jwt_signing_keys.get_secret_value())
    assert set(voice.jwt_public_keys) == set(signing)
    for kid, pem in signing.items():
        private = serialization.load_pem_private_key(pem.encode(), password=None)
        public = serialization.load_pem_public_key(voice.jwt_public_keys[kid].encode())
        assert isinstance(private, Ed25519PrivateKey) and isinstance(public, Ed25519PublicKey)
        message = b"the voice server accepts what the gateway signs"
        public.verify(private.sign(message), message)  # raises InvalidSignature otherwise
    parsed = parse_url(voice.redis_url.get_secret_value())  # type: ignore[no-untyped-call]
    assert parsed["db"] == _group_vars("unde_redis_db")["voice"] and parsed["username"] == "voice"
