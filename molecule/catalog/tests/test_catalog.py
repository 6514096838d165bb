"""The catalog pipeline in the lab: the five apps deployed by their roles (Celery worker + beat each)
with the batch Redis on push. Checks the units, the broker round trip, /metrics on the private
address, the beat schedule of the deployed code against spec 01 §18 and the .env permissions."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.lab

REPO = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY") or Path(__file__).resolve().parents[3])
APPS = {
    "scraper": "scraper",
    "apify": "apify",
    "photo-downloader": "photo_downloader",
    "ximilar-sync": "ximilar_sync",
    "collage": "collage",
}
ALL_UNITS = [f"unde-{h}-{kind}" for h in APPS for kind in ("worker", "beat")]
#: a spec 01 §19 metric each worker exposes from its start (unlabelled gauges)
METRICS = {
    "scraper": ["availability_poll_success", "sync_job_success"],
    "apify": [],  # per-brand gauges appear with the first collection
    "photo_downloader": [
        "photo_download_errors",
        "photo_download_pending_count",
        "photo_download_speed_mbps",
    ],
    "ximilar_sync": ["ximilar_sync_errors", "ximilar_sync_pending_count"],
    "collage": ["collage_queue_size", "collage_processing_errors"],
}

SCHEDULE = """
import json, os
os.environ["UNDE_ENV_FILE"] = "/opt/unde/{app}/.env"
from {app}.celery_app import make_celery
from unde_common.worker import crontab_fields
app = make_celery()
out = {{}}
for name, entry in app.conf.beat_schedule.items():
    fields = {{k: sorted(v) for k, v in crontab_fields(entry["schedule"]).items()}}
    out[name] = {{"task": entry["task"], "queue": entry["options"]["queue"], **fields}}
print(json.dumps(out))
"""

PING = """
import json, os
os.environ["UNDE_ENV_FILE"] = "/opt/unde/{app}/.env"
from {app}.celery_app import make_celery
app = make_celery()
print(json.dumps(app.control.ping(timeout=5.0)))
"""


def _expand(field: str, values: range) -> list[int]:
    from celery.schedules import crontab_parser

    return sorted(crontab_parser(max(values) + 1, min(values)).parse(field))


def spec_schedule(app: str) -> dict[str, dict[str, Any]]:
    """Spec 01 §18 for one app, from its schedule.py (the schedule's one owner, apps/README.md)."""
    import importlib

    dow = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
    out = {}
    for row in importlib.import_module(f"{app}.schedule").SCHEDULE:
        day = row.day_of_week
        out[row.name] = {
            "task": row.task,
            "queue": row.queue or app,
            "minute": _expand(row.minute, range(60)),
            "hour": _expand(row.hour, range(24)),
            "day_of_week": [dow[day]] if day in dow else _expand(day, range(7)),
            "day_of_month": list(range(1, 32)),
            "month_of_year": list(range(1, 13)),
        }
    return out


@pytest.mark.parametrize("name", list(APPS))
@pytest.mark.journal(*ALL_UNITS)
def test_worker_and_beat_are_active_and_enabled(lab: Any, name: str) -> None:
    node = lab.host(name)
    for kind in ("worker", "beat"):
        unit = node.service(f"unde-{name}-{kind}")
        assert unit.is_running, f"unde-{name}-{kind} is not running"
        assert unit.is_enabled, f"unde-{name}-{kind} is not enabled"
    show = node.run("systemctl show unde-%s-worker -p MemoryMax -p ProtectSystem -p User", name).stdout
    assert "ProtectSystem=strict" in show and f"User=unde-{name}" in show
    assert "MemoryMax=infinity" not in show


@pytest.mark.parametrize("name", list(APPS))
def test_env_file_is_private_to_the_app(lab: Any, name: str) -> None:
    env = lab.host(name).file(f"/opt/unde/{APPS[name]}/.env")
    assert env.exists and env.mode == 0o600 and env.user == f"unde-{name}"


@pytest.mark.parametrize("name", list(APPS))
@pytest.mark.journal(*ALL_UNITS)
def test_worker_answers_through_the_broker_on_push(lab: Any, name: str) -> None:
    app = APPS[name]
    res = lab.host(name).run(f"/opt/unde/{app}/venv/bin/python -c %s", PING.format(app=app))
    assert res.rc == 0, res.stderr
    replies = json.loads(res.stdout.strip().splitlines()[-1])
    assert any(next(iter(r.values())) == {"ok": "pong"} for r in replies), replies


@pytest.mark.parametrize("name", list(APPS))
@pytest.mark.journal(*ALL_UNITS)
def test_metrics_answer_on_the_private_address(lab: Any, secrets: dict[str, Any], name: str) -> None:
    app = APPS[name]
    ip = lab.private_ip(name)
    port = yaml.safe_load((REPO / "group_vars" / "all" / "services.yml").read_text())["unde_services"][
        "catalog_worker_metrics"
    ]["port"]
    url = f"http://{ip}:{port}/metrics"
    fetch = (
        "import os, urllib.request as u; auth = {'Authorization': 'Bearer ' + os.environ['UNDE_TEST_TOKEN']};"
        f" print(u.urlopen(u.Request('{url}', headers=auth), timeout=5).read().decode())"
    )
    token = secrets["vault_service_tokens"]["monitoring"]  # the workers' /metrics answer monitoring only
    res = lab.host(name).run(f"UNDE_TEST_TOKEN=%s /opt/unde/{app}/venv/bin/python -c %s", token, fetch)
    assert res.rc == 0, res.stderr
    text = res.stdout
    assert f'{app}_app_info{{app="{app}",version="0.1.0"}} 1.0' in text
    for metric in METRICS[app]:
        assert f"\n{metric} " in text, f"{metric} missing from /metrics of {name}"


@pytest.mark.parametrize("name", list(APPS))
def test_beat_schedule_of_the_deployed_code_is_spec_01(lab: Any, name: str) -> None:
    app = APPS[name]
    res = lab.host(name).run(f"/opt/unde/{app}/venv/bin/python -c %s", SCHEDULE.format(app=app))
    assert res.rc == 0, res.stderr
    deployed = json.loads(res.stdout.strip().splitlines()[-1])
    expected = spec_schedule(app)
    assert deployed == expected


def test_playbooks_deploy_the_converged_roles() -> None:
    for app in APPS.values():
        plays = yaml.safe_load((REPO / "playbooks" / f"{app}.yml").read_text())
        assert [p["hosts"] for p in plays] == [f"{app}_app"]
        assert [r["role"] for r in plays[0]["roles"]] == [app]
