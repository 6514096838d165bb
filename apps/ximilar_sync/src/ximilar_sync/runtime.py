"""What a ximilar_sync task needs, built once per worker process."""

from __future__ import annotations

from functools import cached_property
from typing import Any

import psycopg
from celery import Celery
from psycopg.rows import DictRow, dict_row

from unde_common.http import ProviderClient, provider_config
from unde_common.metrics import AppMetrics
from ximilar_sync.settings import XimilarSyncSettings


class XimilarMetrics:
    """Spec 01 §19 metrics of ximilar-sync (names fixed by the alert table)."""

    def __init__(self, metrics: AppMetrics) -> None:
        self.app = metrics
        self.error_ratio = metrics.gauge(
            "ximilar_sync_errors",
            "Share of the products of the last sync run that ended in error (0..1; alert > 0.05).",
            prefixed=False,
        )
        self.pending = metrics.gauge(
            "ximilar_sync_pending_count",
            "Products with images whose ximilar_status is 'pending' after the last run (alert > 5000).",
            prefixed=False,
        )
        self.products = metrics.counter(
            "ximilar_sync_products",
            "Products sent, by brand and result.",
            ["brand", "result"],
            prefixed=False,
        )


class Runtime:
    def __init__(self, settings: XimilarSyncSettings, metrics: AppMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = XimilarMetrics(metrics or AppMetrics(settings.app_name, process_collectors=False))

    @cached_property
    def ximilar(self) -> ProviderClient:
        s = self.settings
        headers = {
            "Authorization": f"Token {s.ximilar_api_token.get_secret_value()}",
            "collection-id": s.ximilar_collection_id,
            "Content-Type": "application/json",
        }
        cfg = provider_config(
            s,
            "ximilar",
            str(s.ximilar_base_url).rstrip("/"),
            headers=headers,
            max_connections=s.ximilar_concurrency * 2,
        )
        return ProviderClient(cfg)

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
        _RUNTIMES[key] = Runtime(XimilarSyncSettings.load())
    return _RUNTIMES[key]
