"""celery_app_factory, RuntimeRegistry and empty_dir: what every worker app's celery_app.py and
runtime.py are made of."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from celery import Celery
from pydantic import HttpUrl, SecretStr

from unde_common.metrics import AppMetrics
from unde_common.s3 import S3Settings, public_url
from unde_common.settings import CeleryWorkerSettings
from unde_common.worker import RuntimeRegistry, ScheduledTask, celery_app_factory, empty_dir

pytestmark = pytest.mark.usefixtures("restore_root_logging")

SCHEDULE = SimpleNamespace(
    QUEUES=("demo", "slow"),
    ROUTES={"demo.slow_*": "slow"},
    SCHEDULE=(ScheduledTask("nightly", "demo.nightly", minute="0", hour="3"),),
)


class DemoSettings(CeleryWorkerSettings):
    app_name: str = "demo"
    metrics_enabled: bool = False
    redis_url: SecretStr = SecretStr("memory://")


def test_factory_builds_the_app_of_the_package_from_its_schedule(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    mp_dir = tmp_path / "metrics"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(mp_dir))
    created: list[tuple[Celery, DemoSettings, AppMetrics]] = []
    make_celery = celery_app_factory(
        "demo", DemoSettings, "1.2.3", SCHEDULE, on_create=lambda *args: created.append(args)
    )
    settings = DemoSettings()
    app = make_celery(settings)
    assert mp_dir.is_dir()  # created before any metric exists
    assert app.main == "demo" and app.conf.broker_url == "memory://"  # default broker: REDIS_URL
    assert [q.name for q in app.conf.task_queues] == ["demo", "slow"]
    assert app.conf.task_default_queue == "demo"
    assert app.conf.task_routes == {"demo.slow_*": {"queue": "slow"}}
    assert app.conf.beat_schedule["nightly"]["task"] == "demo.nightly"
    assert app.conf.include == ["demo.tasks"]
    [(got_app, got_settings, metrics)] = created
    assert got_app is app and got_settings is settings and metrics.prefix == "demo"
    assert metrics.registry.get_sample_value("demo_app_info", {"app": "demo", "version": "1.2.3"}) == 1


def test_factory_options_and_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.setenv("APP_NAME", "from_env")
    make_celery = celery_app_factory(
        "demo",
        DemoSettings.load,
        "0",
        SCHEDULE,
        options=lambda s: {"broker_url": "memory://other", "visibility_timeout_s": 7200},
    )
    app = make_celery()
    assert app.main == "from_env"
    assert app.conf.broker_url == "memory://other"
    assert app.conf.broker_transport_options == {"visibility_timeout": 7200}


class DemoRuntime:
    def __init__(self, settings: DemoSettings, metrics: AppMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics


def test_registry_binds_per_app_and_builds_unbound_ones_once() -> None:
    loaded: list[DemoSettings] = []

    def load() -> DemoSettings:
        loaded.append(DemoSettings(app_name="loaded"))
        return loaded[-1]

    registry: RuntimeRegistry[DemoSettings, DemoRuntime] = RuntimeRegistry(DemoRuntime, load)
    one, two = Celery("one"), Celery("two")
    metrics = AppMetrics("one", process_collectors=False)
    settings = DemoSettings(app_name="one")
    registry.bind_new(one, settings, metrics)
    bound = registry.for_app(one)
    assert bound.settings is settings and bound.metrics is metrics
    assert not loaded
    built = registry.for_app(two)
    assert built.settings is loaded[0] and built.metrics is None
    assert registry.for_app(two) is built and len(loaded) == 1


def test_empty_dir_removes_entries_not_symlink_targets(tmp_path: Path) -> None:
    root = tmp_path / "data"
    keep = tmp_path / "elsewhere"
    keep.mkdir()
    (keep / "precious").write_text("x")
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "sub" / "deeper" / "f").write_text("x")
    (root / "file").write_text("x")
    (root / "link").symlink_to(keep, target_is_directory=True)
    assert empty_dir(root) == 3
    assert root.is_dir() and not list(root.iterdir())
    assert (keep / "precious").exists()
    assert empty_dir(tmp_path / "missing") == 0


def test_public_url_prefers_the_public_base() -> None:
    s3 = S3Settings(
        app_name="demo",
        s3_endpoint=HttpUrl("http://127.0.0.1:9000/"),
        s3_access_key=SecretStr("a"),
        s3_secret_key=SecretStr("b"),
        s3_bucket="imgs",
    )
    assert public_url(s3, "collages/zara/1.jpg") == "http://127.0.0.1:9000/imgs/collages/zara/1.jpg"
    assert public_url(s3, "k.jpg", "https://cdn.example/") == "https://cdn.example/k.jpg"
