"""What a scraper task needs, built once per worker process."""

from __future__ import annotations

from functools import cached_property

from psycopg import Connection
from psycopg.rows import DictRow

from scraper.settings import ScraperSettings
from unde_common.db import connect
from unde_common.http import ProviderClient, provider_config
from unde_common.metrics import AppMetrics
from unde_common.worker import RuntimeRegistry, WorkerRuntime


class ScraperMetrics:
    """Spec 01 §19 metrics of the scraper (names fixed by the alert table)."""

    def __init__(self, metrics: AppMetrics) -> None:
        self.app = metrics
        self.poll_success = metrics.gauge(
            "availability_poll_success",
            "1 when the last availability poll succeeded, 0 when it failed (alert == 0).",
            prefixed=False,
        )
        self.sync_success = metrics.gauge(
            "sync_job_success",
            "1 when the last sync to production succeeded, 0 when it failed (alert == 0).",
            prefixed=False,
        )
        self.poll_products = metrics.counter(
            "availability_poll_products",
            "Products polled, by brand and result.",
            ["brand", "result"],
            prefixed=False,
        )
        self.synced = metrics.counter(
            "sync_job_products", "Products handled by the sync job, by result.", ["result"], prefixed=False
        )
        self.cleanup_rows = metrics.counter(
            "cleanup_old_data_rows",
            "Staging rows deleted by cleanup_old_data, by table.",
            ["table"],
            prefixed=False,
        )


class Runtime(WorkerRuntime[ScraperSettings]):
    def __init__(self, settings: ScraperSettings, metrics: AppMetrics | None = None) -> None:
        super().__init__(settings)
        self.metrics = ScraperMetrics(self.app_metrics(metrics))

    @cached_property
    def zara(self) -> ProviderClient:
        s = self.settings
        cfg = provider_config(
            s,
            "zara-mobile-api",
            str(s.zara_api_base_url).rstrip("/"),
            headers={"User-Agent": s.zara_user_agent, "Accept": "application/json"},
            max_connections=s.poll_concurrency * 2,
        )
        return ProviderClient(cfg)

    def connect_production(self) -> Connection[DictRow]:
        """A production DB connection (autocommit, like :meth:`connect` for staging)."""
        s = self.settings
        return connect(s.production_db_url, app_name=s.app_name, connect_timeout_s=s.db_connect_timeout_s)


_REGISTRY = RuntimeRegistry(Runtime, ScraperSettings.load)
bind = _REGISTRY.bind
bind_new = _REGISTRY.bind_new
for_app = _REGISTRY.for_app
