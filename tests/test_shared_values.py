"""Shared values live once in group_vars/all; the apps' built-in defaults must agree with them.

The roles render group_vars into each app's .env, so production follows group_vars. These
tests keep the packages' defaults (what a developer or a test gets without an .env) from
drifting away from that single source.
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
    {e["app"] for e in SCHEDULE.values() if (REPO / f"apps/{e['app']}/src/{e['app']}/schedule.py").is_file()}
)


@pytest.mark.parametrize("app", CELERY_APPS)
def test_app_schedule_matches_group_vars(app: str) -> None:
    module = importlib.import_module(f"{app}.schedule")
    in_app = {t.name: (t.minute, t.hour, t.day_of_week) for t in module.SCHEDULE}
    in_vars = {
        e.get("task", key): (e["minute"], e["hour"], e["day_of_week"])
        for key, e in SCHEDULE.items()
        if e["app"] == app
    }
    assert in_app == in_vars


@pytest.mark.parametrize("app", sorted(set(QUEUES) & {p.name for p in (REPO / "apps").iterdir()}))
def test_app_queues_match_group_vars(app: str) -> None:
    module = importlib.import_module(f"{app}.schedule")
    assert QUEUES[app] in module.QUEUES
    if app == "llm_orchestrator":
        assert QUEUES["enrichment"] in module.QUEUES


def _redis_defaults(app: str) -> dict[str, int]:
    text = (REPO / f"apps/{app}/src/{app}/settings.py").read_text()
    return {
        field: int(db) for field, db in re.findall(r"^\s+(\w*(?:redis|broker)\w*): .*6379/(\d+)", text, re.M)
    }


@pytest.mark.parametrize("app", sorted(set(REDIS_DB) & {p.name for p in (REPO / "apps").iterdir()}))
def test_app_redis_db_matches_group_vars(app: str) -> None:
    found = _redis_defaults(app)
    own = {f: db for f, db in found.items() if f in ("redis_url", "celery_broker_url")}
    assert own, f"{app}: no redis_url / celery_broker_url default found"
    assert set(own.values()) == {REDIS_DB[app]}
    if "shard_routing_redis_url" in found:
        assert found["shard_routing_redis_url"] == REDIS_DB["shard_routing"]
