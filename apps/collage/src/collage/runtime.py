"""What a collage task needs, built once per worker process: settings, metrics, the Object
Storage client and staging DB connections."""

from __future__ import annotations

from functools import cached_property

from collage.settings import CollageSettings
from unde_common.catalog import StageMetrics
from unde_common.metrics import AppMetrics
from unde_common.s3 import ObjectStore, public_url
from unde_common.worker import RuntimeRegistry, WorkerRuntime


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

    @property
    def stage(self) -> StageMetrics:
        """The metrics :func:`unde_common.catalog.work_through` keeps."""
        return StageMetrics(self.products, self.queue_size, self.error_ratio)


class Runtime(WorkerRuntime[CollageSettings]):
    def __init__(self, settings: CollageSettings, metrics: AppMetrics | None = None) -> None:
        super().__init__(settings)
        self.metrics = CollageMetrics(self.app_metrics(metrics))

    @cached_property
    def store(self) -> ObjectStore:
        return ObjectStore.from_settings(self.settings)

    def public_url(self, key: str) -> str:
        return public_url(self.settings, key, self.settings.s3_public_base_url)


_REGISTRY = RuntimeRegistry(Runtime, CollageSettings.load)
bind = _REGISTRY.bind
bind_new = _REGISTRY.bind_new
for_app = _REGISTRY.for_app
