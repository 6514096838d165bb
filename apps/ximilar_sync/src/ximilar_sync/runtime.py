"""What a ximilar_sync task needs, built once per worker process."""

from __future__ import annotations

from functools import cached_property

from unde_common.catalog import StageMetrics
from unde_common.http import ProviderClient, provider_config
from unde_common.metrics import AppMetrics
from unde_common.worker import RuntimeRegistry, WorkerRuntime
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

    @property
    def stage(self) -> StageMetrics:
        """The metrics :func:`unde_common.catalog.work_through` keeps."""
        return StageMetrics(self.products, self.pending, self.error_ratio)


class Runtime(WorkerRuntime[XimilarSyncSettings]):
    def __init__(self, settings: XimilarSyncSettings, metrics: AppMetrics | None = None) -> None:
        super().__init__(settings)
        self.metrics = XimilarMetrics(self.app_metrics(metrics))

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


_REGISTRY = RuntimeRegistry(Runtime, XimilarSyncSettings.load)
bind = _REGISTRY.bind
bind_new = _REGISTRY.bind_new
for_app = _REGISTRY.for_app
