"""What an apify task needs, built once per worker process."""

from __future__ import annotations

from functools import cached_property

from apify.client import ApifyClient
from apify.settings import ApifySettings
from unde_common.metrics import AppMetrics
from unde_common.worker import RuntimeRegistry, WorkerRuntime


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


class Runtime(WorkerRuntime[ApifySettings]):
    def __init__(self, settings: ApifySettings, metrics: AppMetrics | None = None) -> None:
        super().__init__(settings)
        self.metrics = ApifyMetrics(self.app_metrics(metrics))

    @cached_property
    def apify(self) -> ApifyClient:
        return ApifyClient(self.settings)


_REGISTRY = RuntimeRegistry(Runtime, ApifySettings.load)
bind = _REGISTRY.bind
bind_new = _REGISTRY.bind_new
for_app = _REGISTRY.for_app
