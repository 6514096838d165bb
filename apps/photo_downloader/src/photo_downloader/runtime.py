"""What a photo_downloader task needs, built once per worker process: settings, metrics, the
Object Storage client, the HTTP client for brand image hosts and staging DB connections."""

from __future__ import annotations

import ipaddress
from functools import cached_property

import httpx

from photo_downloader.settings import PhotoDownloaderSettings
from unde_common.catalog import StageMetrics
from unde_common.images import FetchPolicy
from unde_common.metrics import AppMetrics
from unde_common.s3 import ObjectStore, public_url
from unde_common.worker import RuntimeRegistry, WorkerRuntime


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

    @property
    def stage(self) -> StageMetrics:
        """The metrics :func:`unde_common.catalog.work_through` keeps."""
        return StageMetrics(self.products, self.pending, self.error_ratio)


class Runtime(WorkerRuntime[PhotoDownloaderSettings]):
    def __init__(self, settings: PhotoDownloaderSettings, metrics: AppMetrics | None = None) -> None:
        super().__init__(settings)
        self.metrics = PhotoMetrics(self.app_metrics(metrics))

    @cached_property
    def store(self) -> ObjectStore:
        return ObjectStore.from_settings(self.settings)

    @cached_property
    def http(self) -> httpx.Client:
        s = self.settings
        proxy = s.download_proxy_url.get_secret_value() if s.download_proxy_url else None
        # redirects are followed by the downloader, each hop checked; no proxy or .netrc from the
        # environment (it would bypass the address check)
        return httpx.Client(
            timeout=httpx.Timeout(s.download_timeout),
            follow_redirects=False,
            trust_env=False,
            headers={"User-Agent": s.download_user_agent, "Accept": "image/*"},
            limits=httpx.Limits(max_connections=s.concurrent_downloads * 2),
            proxy=proxy,
        )

    @cached_property
    def fetch_policy(self) -> FetchPolicy:
        """Where photos may be downloaded from (checked at every hop, see downloader)."""
        s = self.settings
        return FetchPolicy(
            hosts=tuple(s.download_hosts),
            schemes=frozenset({"http", "https"}),
            allow_networks=tuple(ipaddress.ip_network(n, strict=False) for n in s.download_allow_networks),
            max_redirects=s.download_max_redirects,
            max_bytes=s.photo_max_bytes,
            max_pixels=s.photo_max_pixels,
        )

    def public_url(self, key: str) -> str:
        return public_url(self.settings, key, self.settings.s3_public_base_url)


_REGISTRY = RuntimeRegistry(Runtime, PhotoDownloaderSettings.load)
bind = _REGISTRY.bind
bind_new = _REGISTRY.bind_new
for_app = _REGISTRY.for_app
