"""Shared values live once; where a copy must exist, it must agree with the owner.

* Redis DBs and queues live in group_vars/all; the roles render them into each app's .env, so
  production follows group_vars. The packages' defaults (what a developer or a test gets without an
  .env) must not drift away from them.
* The beat schedule has one owner per entry: the app's ``schedule.py`` for Celery beat entries
  (asserted against spec 01 §18 in its tests/test_<app>_celery.py), group_vars/all/schedule.yml for
  what no app owns (systemd timers a role renders, database jobs). Nothing is written in both.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

import pytest
import yaml
from support import REPO

GROUP_VARS = REPO / "group_vars/all"


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((GROUP_VARS / name).read_text())
    return data


SCHEDULE = _load("schedule.yml")["unde_schedule"]
QUEUES = _load("queues.yml")["unde_celery_queues"]
REDIS_DB = _load("redis.yml")["unde_redis_db"]
CELERY_APPS = sorted(
    p.parent.name for p in (REPO / "apps").glob("*/src/*/schedule.py") if p.parent.name != "unde_common"
)
ROLES_TEXT = "\n".join(p.read_text() for p in sorted((REPO / "roles").glob("*/*/*.yml")))


def test_celery_apps_are_found() -> None:
    assert len(CELERY_APPS) >= 8


@pytest.mark.parametrize("app", CELERY_APPS)
def test_beat_entries_have_one_owner(app: str) -> None:
    """An app with a schedule.py owns its beat entries: group_vars must not repeat them."""
    module = importlib.import_module(f"{app}.schedule")
    repeated = {key for key, e in SCHEDULE.items() if e["app"] == app}
    assert not repeated, f"group_vars/all/schedule.yml repeats {app}'s beat entries {sorted(repeated)}"
    for entry in module.SCHEDULE:
        assert entry.task == f"{app}.{entry.name}", entry


@pytest.mark.parametrize("key", sorted(SCHEDULE))
def test_group_vars_schedule_is_what_no_app_owns(key: str) -> None:
    """Each entry left in group_vars is read by a role (a systemd timer) or belongs to no app package."""
    app = SCHEDULE[key]["app"]
    used = f"unde_schedule.{key}" in ROLES_TEXT
    assert used or not (REPO / "apps" / app).is_dir(), f"unde_schedule.{key} ({app}) is read by no role"


def test_persona_cleanup_is_spec_01_section_18() -> None:
    """The persona agent's daily cleanup (a systemd timer of roles/persona_agent) at 04:00."""
    entry = SCHEDULE["persona_cleanup"]
    assert (entry["minute"], entry["hour"], entry["day_of_week"]) == ("0", "4", "*")
    assert "unde_schedule.persona_cleanup" in (REPO / "roles/persona_agent/defaults/main.yml").read_text()


@pytest.mark.parametrize("app", sorted(set(QUEUES) & {p.name for p in (REPO / "apps").iterdir()}))
def test_app_queues_match_group_vars(app: str) -> None:
    module = importlib.import_module(f"{app}.schedule")
    assert QUEUES[app] in module.QUEUES
    if app == "llm_orchestrator":
        assert QUEUES["enrichment"] in module.QUEUES


def _redis_defaults(app: str) -> dict[str, int]:
    text = (REPO / f"apps/{app}/src/{app}/settings.py").read_text()
    return {
        field: int(db)
        for field, db in re.findall(r"^\s+(\w*(?:redis|broker)\w*): .*\"redis://[^\"]*/(\d+)\"", text, re.M)
    }


@pytest.mark.parametrize("app", sorted(set(REDIS_DB) & {p.name for p in (REPO / "apps").iterdir()}))
def test_app_redis_db_matches_group_vars(app: str) -> None:
    found = _redis_defaults(app)
    own = {f: db for f, db in found.items() if f in ("redis_url", "celery_broker_url")}
    assert own, f"{app}: no redis_url / celery_broker_url default found"
    assert set(own.values()) == {REDIS_DB[app]}
    if "shard_routing_redis_url" in found:
        assert found["shard_routing_redis_url"] == REDIS_DB["shard_routing"]
