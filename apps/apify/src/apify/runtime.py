"""What an apify task needs, built once per worker process."""

from __future__ import annotations

from functools import cached_property
from typing import Any

import psycopg
from celery import Celery
from psycopg.rows import DictRow, dict_row

from apify.client import ApifyClient
from apify.settings import ApifySettings
from unde_common.metrics import AppMetrics


class ApifyMetrics:
    """Spec 01 §19 metrics of the Apify collector (names fixed by the alert table)."""

    def __init__(self, metrics: AppMetrics) -> None:
        self.app = metrics
        self.duration = metrics.gauge(
            "apify_scraper_duration",
            "Seconds the last collection of a brand took (alert > 7200).",
            ["brand"],
            prefixed=False,
        )
        self.error_ratio = metrics.gauge(
            "apify_scraper_errors",
            "Share of the items of the last collection of a brand that failed (0..1; 1 = run failed; "
            "alert > 0.1).",
            ["brand"],
            prefixed=False,
        )
        self.items = metrics.counter(
            "apify_scraper_items",
            "Dataset items processed, by brand and result (new, updated, unchanged, error).",
            ["brand", "result"],
            prefixed=False,
        )
        self.runs = metrics.counter(
            "apify_scraper_runs",
            "Collections finished, by brand and status.",
            ["brand", "status"],
            prefixed=False,
        )


class Runtime:
    def __init__(self, settings: ApifySettings, metrics: AppMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = ApifyMetrics(metrics or AppMetrics(settings.app_name, process_collectors=False))

    @cached_property
    def apify(self) -> ApifyClient:
        return ApifyClient(self.settings)

    def connect(self) -> psycopg.Connection[DictRow]:
        s = self.settings
        return psycopg.connect(
            s.staging_db_url.get_secret_value(),
            autocommit=True,
            row_factory=dict_row,
            prepare_threshold=None,
            connect_timeout=s.db_connect_timeout_s,
            application_name=s.app_name,
        )


_RUNTIMES: dict[str, Runtime] = {}


def bind(app: Celery, runtime: Runtime) -> None:
    _RUNTIMES[app.main or ""] = runtime


def for_app(app: Any) -> Runtime:
    key = getattr(app, "main", "") or ""
    if key not in _RUNTIMES:
        _RUNTIMES[key] = Runtime(ApifySettings.load())
    return _RUNTIMES[key]
