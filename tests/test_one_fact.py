"""Ports come from one place: the registry ``group_vars/all/services.yml``.

* Roles, playbooks, the shared templates and group_vars never type a registry port: they derive it
  (``unde_services.<name>.port``, ``unde_port_overrides``, ``postgresql_server.port``). A literal in a
  port-bearing place (``port: N``, ``port=N``, ``default(N)``, ``host:N``, ``--port N``) fails here.
* The apps' settings (``apps/*/src/*/settings.py``): connection URLs (Redis, PostgreSQL, any
  ``scheme://``) have no port in their defaults: the role renders the real URL, port from the
  registry, into the app's .env; a development default without a port means the client library's
  standard port. A listen port's default (``port``, ``*_port``) must be the registry's port of that
  service (``LISTEN`` below); the role renders the registry's value into the .env, so the default
  only serves development and tests.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml
from support import REPO

REGISTRY: dict[str, dict[str, object]] = yaml.safe_load((REPO / "group_vars/all/services.yml").read_text())[
    "unde_services"
]
PORTS = sorted({str(entry["port"]) for entry in REGISTRY.values()}, key=int, reverse=True)
_N = "|".join(PORTS)
PORT_LITERAL = re.compile(
    rf"(?i)(?:(?:\b|_)port\w*['\"]?\s*[:=]\s*['\"]?(?:{_N})\b"  # port: 6432, listen_port = 6432
    rf"|default\(\s*['\"]?(?:{_N})['\"]?\s*\)"  # default(5432)
    rf"|(?:[\w\]}}]):(?:{_N})\b(?!:)"  # host:6379, }}:6432 (not a clock time hh:mm:ss)
    rf"|--?p(?:ort)?[= ]\s*(?:{_N})\b)"  # --port 5432, -p 6379
)
#: (app, settings field) → the registry entry whose port its default must be
LISTEN: dict[tuple[str, str], str] = {
    ("api_gateway", "port"): "api_gateway_app",
    ("context_agent", "port"): "context_agent",
    ("embed_batch", "port"): "embed_batch",
    ("embedder", "port"): "embedder",
    ("llm_reranker", "port"): "llm_reranker",
    ("mood_agent", "port"): "mood_agent",
    ("persona_agent", "port"): "persona_agent",
    ("unde_common", "metrics_port"): "catalog_worker_metrics",
    ("voice", "port"): "voice_http",
    ("voice", "ws_port"): "voice_ws",
    ("ximilar_gw", "port"): "ximilar_gw",
}


def _ansible_files() -> list[Path]:
    found = [
        *(REPO / "roles").glob("**/*.yml"),
        *(REPO / "roles").glob("**/*.j2"),
        *(REPO / "templates").glob("**/*.j2"),
        *(REPO / "playbooks").glob("**/*.yml"),
        REPO / "site.yml",
        *(p for p in (REPO / "group_vars").glob("**/*.yml") if p.name != "services.yml"),
    ]
    return sorted(p for p in found if p.is_file())


def _code_lines(path: Path) -> list[tuple[int, str]]:
    """Lines without their comments (YAML ``#`` comments; Jinja ``{# #}`` stays, it renders nothing)."""
    out = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if path.suffix == ".yml":
            line = re.sub(r"(^|\s)#.*$", "", line)
        out.append((number, line))
    return out


def test_the_pattern_catches_port_literals() -> None:
    for bad in (
        "port: 6432",
        "listen_port = 6379",
        "default(5432)",
        "redis://h:6379/7",
        "{{ h }}:6432/db",
        "--port 9808",
    ):
        assert PORT_LITERAL.search(bad), bad
    for good in (
        "port: '{{ unde_services.redis_hot.port }}'",
        "OnCalendar=*-*-* 04:22:00",
        "mode: '0644'",
        "ttl: 6432",
    ):
        assert not PORT_LITERAL.search(good), good


def test_no_role_or_playbook_types_a_registry_port() -> None:
    hits = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in _ansible_files()
        for number, line in _code_lines(path)
        if PORT_LITERAL.search(line)
    ]
    assert not hits, "ports typed instead of derived from group_vars/all/services.yml:\n" + "\n".join(hits)


def _defaults(path: Path) -> list[tuple[str, ast.expr]]:
    """(field, default expression) of every annotated class attribute with a value."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if (
                    isinstance(item, ast.AnnAssign)
                    and isinstance(item.target, ast.Name)
                    and item.value is not None
                ):
                    found.append((item.target.id, item.value))
    return found


def _int_default(value: ast.expr) -> int | None:
    if isinstance(value, ast.Constant) and isinstance(value.value, int):
        return value.value
    if isinstance(value, ast.Call):
        for keyword in value.keywords:
            if keyword.arg == "default" and isinstance(keyword.value, ast.Constant):
                return keyword.value.value if isinstance(keyword.value.value, int) else None
    return None


SETTINGS = sorted(REPO.glob("apps/*/src/*/settings.py"))


@pytest.mark.parametrize("path", SETTINGS, ids=lambda p: p.parent.name)
def test_settings_defaults_carry_no_connection_port(path: Path) -> None:
    hits = []
    for field, value in _defaults(path):
        for node in ast.walk(value):
            text = node.value if isinstance(node, ast.Constant) else None
            if isinstance(text, str) and re.search(r"://[^/\s?#]*:\d+", text):
                hits.append(f"{field} = {text!r}")
    assert not hits, f"{path.relative_to(REPO)}: URL defaults with a port (the role renders them): {hits}"


@pytest.mark.parametrize("path", SETTINGS, ids=lambda p: p.parent.name)
def test_settings_listen_ports_are_the_registry(path: Path) -> None:
    app = path.parent.name
    for field, value in _defaults(path):
        if field != "port" and not field.endswith("_port"):
            continue
        default = _int_default(value)
        if default is None:
            continue
        assert (app, field) in LISTEN, f"{app}.{field} defaults to port {default}: give it a registry entry"
        service = LISTEN[(app, field)]
        assert default == REGISTRY[service]["port"], (
            f"{app}.{field} = {default}, the registry's {service} says otherwise"
        )


def test_every_listen_port_is_still_there() -> None:
    seen = {
        (p.parent.name, field)
        for p in SETTINGS
        for field, value in _defaults(p)
        if _int_default(value) is not None
    }
    assert set(LISTEN) <= seen, f"LISTEN names fields that no longer exist: {sorted(set(LISTEN) - seen)}"
