"""What a collage task needs, built once per worker process: settings, metrics, the Object
Storage client and staging DB connections."""

from __future__ import annotations

from functools import cached_property
from typing import Any

import psycopg
from celery import Celery
from psycopg.rows import DictRow, dict_row

from collage.settings import CollageSettings
from unde_common.metrics import AppMetrics
from unde_common.s3 import ObjectStore


class CollageMetrics:
    """Spec 01 §19 metrics of the collage server (names fixed by the alert table)."""

    def __init__(self, metrics: AppMetrics) -> None:
        self.app = metrics
        self.queue_size = metrics.gauge(
            "collage_queue_size",
            "Products with image_status = 'uploaded' waiting for a collage (alert > 1000).",
            prefixed=False,
        )
        self.error_ratio = metrics.gauge(
            "collage_processing_errors",
            "Share of the products of the last collage run that ended in error (0..1; alert > 0.05).",
            prefixed=False,
        )
        self.products = metrics.counter(
            "collage_products", "Collages finished, by brand and result.", ["brand", "result"], prefixed=False
        )
        self.seconds = metrics.histogram(
            "collage_build_seconds",
            "Time to fetch the originals, build and upload one collage.",
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
            prefixed=False,
        )


class Runtime:
    def __init__(self, settings: CollageSettings, metrics: AppMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = CollageMetrics(metrics or AppMetrics(settings.app_name, process_collectors=False))

    @cached_property
    def store(self) -> ObjectStore:
        return ObjectStore.from_settings(self.settings)

    def public_url(self, key: str) -> str:
        base = self.settings.s3_public_base_url.rstrip("/")
        if not base:
            base = f"{str(self.settings.s3_endpoint).rstrip('/')}/{self.settings.s3_bucket}"
        return f"{base}/{key}"

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
        _RUNTIMES[key] = Runtime(CollageSettings.load())
    return _RUNTIMES[key]
