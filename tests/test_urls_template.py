"""The connection URLs the roles write (templates/urls.j2, through templates/app.env.j2) survive any
vault password: user, password and database are percent-encoded — `/` included, which Jinja's (and
so Ansible's) `urlencode` leaves alone — and the apps' own parsers (libpq's via psycopg, redis-py,
the settings classes reading the .env) give the original values back. And the shard routing
allow-list the persona role renders (SHARD_MEMBERS) is every shard member of the inventories."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from psycopg.conninfo import conninfo_to_dict
from redis.connection import parse_url
from support import REPO
from unde_tools.inventory import load

#: every character that means something in a URL, and an already-encoded-looking sequence
NASTY = "a/b@c:d%2Fe#f?g&h=i+j k[l]"
SERVICES = yaml.safe_load((REPO / "group_vars/all/services.yml").read_text())["unde_services"]


def _env() -> jinja2.Environment:
    env = jinja2.Environment(  # noqa: S701  (renders .env/URL text, not HTML)
        loader=jinja2.FileSystemLoader(REPO / "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,  # Ansible's template module default
        keep_trailing_newline=True,
    )
    env.filters["to_json"] = json.dumps  # Ansible's to_json
    env.filters["combine"] = lambda base, *more: {
        k: v for d in (base, *more) for k, v in d.items()
    }  # shallow
    return env


def _url(kind: str, target: dict[str, Any]) -> str:
    tmpl = _env().from_string("{% import 'urls.j2' as urls with context %}{{ urls[kind](target) }}")
    return tmpl.render(kind=kind, target=target, unde_services=SERVICES)


def test_urlencode_alone_keeps_the_slash() -> None:
    """Why urls.j2 encodes `/` itself: the filter Ansible uses leaves it in."""
    out = _env().from_string("{{ v | urlencode }}").render(v=NASTY)
    assert "/" in out


@pytest.mark.parametrize("password", [NASTY, "plain", "%", "/", "@@", "::", "##"])
def test_postgresql_url_round_trips(password: str) -> None:
    target = {
        "service": "shard_pgbouncer",
        "host": "10.2.0.10",
        "user": "persona_rw",
        "password": password,
        "database": "unde_shard",
    }
    url = _url("postgresql", target)
    assert url.startswith("postgresql://persona_rw:") and url.endswith("@10.2.0.10:6432/unde_shard")
    assert conninfo_to_dict(url) == {
        "user": "persona_rw",
        "password": password,
        "host": "10.2.0.10",
        "port": "6432",
        "dbname": "unde_shard",
    }


def test_postgresql_user_and_database_are_encoded_too() -> None:
    target = {"service": "shard_postgres", "host": "h", "user": "u/@:", "password": NASTY, "database": "d/b#"}
    got = conninfo_to_dict(_url("postgresql", target))
    assert (got["user"], got["password"], got["dbname"], got["port"]) == ("u/@:", NASTY, "d/b#", "5432")


@pytest.mark.parametrize("password", [NASTY, "plain", "/"])
def test_redis_url_round_trips(password: str) -> None:
    target = {
        "service": "redis_hot",
        "host": "10.2.0.4",
        "user": "persona_agent",
        "password": password,
        "db": 12,
    }
    url = _url("redis", target)
    assert url.startswith("redis://persona_agent:")
    got = parse_url(url)  # type: ignore[no-untyped-call]
    assert (got["username"], got["password"], got["host"], got["port"], got["db"]) == (
        "persona_agent",
        password,
        "10.2.0.4",
        6379,
        12,
    )


def test_redis_user_is_encoded_and_required() -> None:
    """Every Redis URL names its ACL user (the default user is off): a target without one is an
    error, not a URL for the default user."""
    target = {"service": "redis_batch", "host": "h", "user": "u/@:", "password": "p", "db": 6}
    assert parse_url(_url("redis", target))["username"] == "u/@:"  # type: ignore[no-untyped-call]
    with pytest.raises(jinja2.UndefinedError, match="user"):
        _url("redis", {"service": "redis_batch", "host": "h", "password": "p", "db": 6})


def test_app_env_gives_the_app_its_password_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """app.env.j2 as roles/unde_app renders it, read by the persona agent's settings class."""
    from persona_agent.settings import PersonaAgentSettings

    env_vars = {
        "SHARD_0_DB_URL": {
            "postgresql": {
                "service": "shard_pgbouncer",
                "host": "10.2.0.10",
                "user": "persona_rw",
                "password": NASTY,
                "database": "unde_shard",
            }
        },
        "REDIS_URL": {
            "redis": {
                "service": "redis_hot",
                "host": "10.2.0.4",
                "user": "persona_agent",
                "password": NASTY,
                "db": 13,
            }
        },
        "SHARD_MEMBERS": "0@10.2.0.10:5432,0@10.2.0.10:6432,",
    }
    text = (
        _env()
        .get_template("app.env.j2")
        .render(
            ansible_managed="managed",
            unde_app_name="persona_agent",
            __unde_app_user="unde-persona-agent",
            unde_app_env=env_vars,
            unde_services=SERVICES,
        )
    )
    (tmp_path / ".env").write_text(text)
    monkeypatch.setenv("UNDE_ENV_FILE", str(tmp_path / ".env"))
    settings = PersonaAgentSettings.load()
    assert conninfo_to_dict(settings.shard_0_db_url.get_secret_value())["password"] == NASTY
    assert parse_url(settings.redis_url.get_secret_value())["password"] == NASTY  # type: ignore[no-untyped-call]
    assert settings.shard_members == ["0@10.2.0.10:5432", "0@10.2.0.10:6432"]


def _persona_default(name: str) -> str:
    value = str(yaml.safe_load((REPO / "roles/persona_agent/defaults/main.yml").read_text())[name])
    if value == "{{ unde_shard_members }}":  # the one derivation of every shard-routing app
        return str(yaml.safe_load((REPO / "group_vars/all/shards.yml").read_text())["unde_shard_members"])
    return value


@pytest.mark.parametrize(
    ("inventories", "expected"),
    [
        (
            ["helsinki", "local"],
            {"0@10.2.0.10:5432", "0@10.2.0.10:6432", "0@10.1.1.10:5432", "0@10.1.1.10:6432"},
        ),
        (["local"], {"0@10.2.0.10:5432", "0@10.2.0.10:6432"}),
    ],
)
def test_persona_shard_members_come_from_the_inventory(inventories: list[str], expected: set[str]) -> None:
    from unde_common.shard_router import parse_members

    inv = load([REPO / "inventories" / site for site in inventories])
    groups = {g: sorted(inv.hosts_of(g)) for g in inv.all_groups()}
    rendered = (
        _env()
        .from_string(_persona_default("persona_agent_shard_members"))
        .render(groups=groups, hostvars=inv.hostvars, unde_services=SERVICES)
    )
    items = [i for i in rendered.split(",") if i]
    assert set(items) == expected
    assert set(parse_members(items)) == {0}
