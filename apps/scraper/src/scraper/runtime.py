"""What a scraper task needs, built once per worker process."""

from __future__ import annotations

from functools import cached_property
from typing import Any

import psycopg
from celery import Celery
from psycopg.rows import DictRow, dict_row

from scraper.settings import ScraperSettings
from unde_common.http import ProviderClient, provider_config
from unde_common.metrics import AppMetrics


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


class Runtime:
    def __init__(self, settings: ScraperSettings, metrics: AppMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = ScraperMetrics(metrics or AppMetrics(settings.app_name, process_collectors=False))

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

    def _connect(self, dsn: str) -> psycopg.Connection[DictRow]:
        s = self.settings
        return psycopg.connect(
            dsn,
            autocommit=True,
            row_factory=dict_row,
            prepare_threshold=None,
            connect_timeout=s.db_connect_timeout_s,
            application_name=s.app_name,
        )

    def connect(self) -> psycopg.Connection[DictRow]:
        """Staging DB."""
        return self._connect(self.settings.staging_db_url.get_secret_value())

    def connect_production(self) -> psycopg.Connection[DictRow]:
        return self._connect(self.settings.production_db_url.get_secret_value())


_RUNTIMES: dict[str, Runtime] = {}


def bind(app: Celery, runtime: Runtime) -> None:
    _RUNTIMES[app.main or ""] = runtime


def for_app(app: Any) -> Runtime:
    key = getattr(app, "main", "") or ""
    if key not in _RUNTIMES:
        _RUNTIMES[key] = Runtime(ScraperSettings.load())
    return _RUNTIMES[key]
