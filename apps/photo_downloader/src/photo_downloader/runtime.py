"""What a photo_downloader task needs, built once per worker process: settings, metrics, the
Object Storage client, the HTTP client for brand image hosts and staging DB connections."""

from __future__ import annotations

from functools import cached_property
from typing import Any

import httpx
import psycopg
from celery import Celery
from psycopg.rows import DictRow, dict_row

from photo_downloader.settings import PhotoDownloaderSettings
from unde_common.metrics import AppMetrics
from unde_common.s3 import ObjectStore


class PhotoMetrics:
    """Spec 01 §19 metrics of the photo downloader (names fixed by the alert table)."""

    def __init__(self, metrics: AppMetrics) -> None:
        self.app = metrics
        self.error_ratio = metrics.gauge(
            "photo_download_errors",
            "Share of the products of the last download run that ended in error (0..1; alert > 0.1).",
            prefixed=False,
        )
        self.pending = metrics.gauge(
            "photo_download_pending_count",
            "Products with image_status = 'pending' after the last run (alert > 5000).",
            prefixed=False,
        )
        self.speed_mbps = metrics.gauge(
            "photo_download_speed_mbps",
            "Average download throughput of the last run, megabits per second (alert < 1).",
            prefixed=False,
        )
        self.products = metrics.counter(
            "photo_download_products",
            "Products finished, by brand and result.",
            ["brand", "result"],
            prefixed=False,
        )
        self.photos = metrics.counter(
            "photo_download_photos",
            "Photos stored or failed, by brand and result.",
            ["brand", "result"],
            prefixed=False,
        )
        self.bytes_downloaded = metrics.counter(
            "photo_download_bytes", "Bytes downloaded from brand image hosts.", prefixed=False
        )


class Runtime:
    def __init__(self, settings: PhotoDownloaderSettings, metrics: AppMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = PhotoMetrics(metrics or AppMetrics(settings.app_name, process_collectors=False))

    @cached_property
    def store(self) -> ObjectStore:
        return ObjectStore.from_settings(self.settings)

    @cached_property
    def http(self) -> httpx.Client:
        s = self.settings
        proxy = s.download_proxy_url.get_secret_value() if s.download_proxy_url else None
        return httpx.Client(
            timeout=httpx.Timeout(s.download_timeout),
            follow_redirects=True,
            headers={"User-Agent": s.download_user_agent, "Accept": "image/*"},
            limits=httpx.Limits(max_connections=s.concurrent_downloads * 2),
            proxy=proxy,
        )

    def public_url(self, key: str) -> str:
        base = self.settings.s3_public_base_url.rstrip("/")
        if not base:
            base = f"{str(self.settings.s3_endpoint).rstrip('/')}/{self.settings.s3_bucket}"
        return f"{base}/{key}"

    def connect(self) -> psycopg.Connection[DictRow]:
        """A staging DB connection (autocommit; work happens in explicit transactions)."""
        s = self.settings
        return psycopg.connect(
            s.staging_db_url.get_secret_value(),
            autocommit=True,
            row_factory=dict_row,
            prepare_threshold=None,  # PgBouncer transaction pooling
            connect_timeout=s.db_connect_timeout_s,
            application_name=s.app_name,
        )


_RUNTIMES: dict[str, Runtime] = {}


def bind(app: Celery, runtime: Runtime) -> None:
    """Make ``runtime`` the one the tasks of ``app`` use."""
    _RUNTIMES[app.main or ""] = runtime


def for_app(app: Any) -> Runtime:
    """The runtime of the Celery app running a task (built from the environment if none was bound)."""
    key = getattr(app, "main", "") or ""
    if key not in _RUNTIMES:
        _RUNTIMES[key] = Runtime(PhotoDownloaderSettings.load())
    return _RUNTIMES[key]
