"""Prometheus metrics per app.

``AppMetrics("ximilar_gw")`` owns a registry of its own (no global state, so tests and several
apps in one process never collide) holding the process/platform/GC collectors, an
``<prefix>_app_info`` gauge and whatever the app creates with :meth:`AppMetrics.counter`,
:meth:`~AppMetrics.histogram` and :meth:`~AppMetrics.gauge`. Names get the app prefix
(``detect_latency_ms`` → ``ximilar_gw_detect_latency_ms``) unless ``prefixed=False`` is given
for a name the alert rules of spec 01 §19 fix otherwise (``photo_download_errors``).

Exposition:

- HTTP services mount :meth:`AppMetrics.asgi_app` at ``/metrics`` (``unde_common.health`` does).
- Celery workers call :meth:`AppMetrics.start_http_server` in the worker's main process. With
  prefork children, set ``PROMETHEUS_MULTIPROC_DIR`` (an empty directory, before the worker
  starts) and the server aggregates every child's samples.
- Short-lived processes (beat, one-shot jobs) call :meth:`AppMetrics.write_textfile` for
  node_exporter's textfile collector.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    make_asgi_app,
    start_http_server,
    write_to_textfile,
)
from prometheus_client import multiprocess as prom_multiprocess
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

__all__ = [
    "CONTENT_TYPE_LATEST",
    "LATENCY_MS_BUCKETS",
    "AppMetrics",
    "metric_prefix",
    "multiprocess_dir",
]

#: buckets for the ``*_latency_ms`` histograms the alert table uses (p95 thresholds 15 ms … 10 s)
LATENCY_MS_BUCKETS: Final = (5, 10, 15, 25, 50, 100, 200, 300, 500, 1000, 2000, 3000, 5000, 10000, 30000)
MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
_NAME_RE: Final = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def metric_prefix(app: str) -> str:
    """``photo-downloader`` → ``photo_downloader``: a valid metric name prefix."""
    prefix = re.sub(r"[^a-zA-Z0-9_]", "_", app).strip("_").lower()
    if not prefix or not _NAME_RE.match(prefix):
        raise ValueError(f"cannot make a metric prefix from app name {app!r}")
    return prefix


def multiprocess_dir() -> Path | None:
    """The prometheus multiprocess directory when multiprocess mode is on."""
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


class AppMetrics:
    """The metrics of one app: a registry and helpers that name metrics with the app prefix."""

    def __init__(
        self,
        app: str,
        *,
        prefix: str | None = None,
        version: str = "0",
        process_collectors: bool = True,
    ) -> None:
        self.app = app
        self.prefix = metric_prefix(prefix if prefix is not None else app)
        self.registry = CollectorRegistry(auto_describe=True)
        self._lock = threading.Lock()
        self._metrics: dict[str, Counter | Gauge | Histogram] = {}
        if process_collectors:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)
        info = self.gauge("app_info", "Static information about the running app.", ["app", "version"])
        info.labels(app=app, version=version).set(1)

    # ------------------------------------------------------------------ metric factories

    def name(self, name: str, *, prefixed: bool = True) -> str:
        """The full metric name for ``name``."""
        full = f"{self.prefix}_{name}" if prefixed else name
        if not _NAME_RE.match(full):
            raise ValueError(f"invalid metric name {full!r}")
        return full

    def _get_or_create(self, kind: type[Any], name: str, doc: str, labels: Sequence[str], **kw: Any) -> Any:
        with self._lock:
            existing = self._metrics.get(name)
            if existing is not None:
                if not isinstance(existing, kind):
                    raise ValueError(f"metric {name} already exists as a {type(existing).__name__}")
                return existing
            metric = kind(name, doc, labelnames=tuple(labels), registry=self.registry, **kw)
            self._metrics[name] = metric
            return metric

    def counter(self, name: str, doc: str, labels: Sequence[str] = (), *, prefixed: bool = True) -> Counter:
        """A counter (exposed with the ``_total`` suffix). Asking twice returns the same one."""
        metric: Counter = self._get_or_create(Counter, self.name(name, prefixed=prefixed), doc, labels)
        return metric

    def gauge(
        self,
        name: str,
        doc: str,
        labels: Sequence[str] = (),
        *,
        prefixed: bool = True,
        multiprocess_mode: str = "livesum",
    ) -> Gauge:
        """A gauge. In multiprocess mode the children's values are summed (``livesum``)."""
        metric: Gauge = self._get_or_create(
            Gauge,
            self.name(name, prefixed=prefixed),
            doc,
            labels,
            multiprocess_mode=multiprocess_mode,
        )
        return metric

    def histogram(
        self,
        name: str,
        doc: str,
        labels: Sequence[str] = (),
        *,
        buckets: Iterable[float] | None = None,
        prefixed: bool = True,
    ) -> Histogram:
        """A histogram; names ending in ``_ms`` get :data:`LATENCY_MS_BUCKETS` by default."""
        full = self.name(name, prefixed=prefixed)
        if buckets is None:
            buckets = LATENCY_MS_BUCKETS if full.endswith("_ms") else Histogram.DEFAULT_BUCKETS
        metric: Histogram = self._get_or_create(Histogram, full, doc, labels, buckets=tuple(buckets))
        return metric

    # ------------------------------------------------------------------ exposition

    def exposition_registry(self) -> CollectorRegistry:
        """The registry to expose: the app's own, or every process's samples in multiprocess mode."""
        mp_dir = multiprocess_dir()
        if mp_dir is None:
            return self.registry
        registry = CollectorRegistry()
        prom_multiprocess.MultiProcessCollector(registry, path=str(mp_dir))  # type: ignore[no-untyped-call]
        return registry

    def render(self) -> bytes:
        """The text exposition format (what GET /metrics returns)."""
        return generate_latest(self.exposition_registry())

    def asgi_app(self) -> Any:
        """An ASGI app serving the exposition, to mount at ``/metrics``."""
        return make_asgi_app(self.exposition_registry())

    def start_http_server(self, port: int, addr: str = "127.0.0.1") -> tuple[Any, threading.Thread]:
        """Serve /metrics from a daemon thread (Celery worker main process). Returns (server, thread)."""
        server, thread = start_http_server(port, addr=addr, registry=self.exposition_registry())
        return server, thread

    def write_textfile(self, path: str | os.PathLike[str]) -> None:
        """Write the exposition atomically to ``path`` (node_exporter textfile collector, ``*.prom``)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_to_textfile(str(target), self.exposition_registry())

    def start_textfile_writer(
        self, path: str | os.PathLike[str], interval_s: float = 15.0
    ) -> threading.Event:
        """Rewrite the textfile every ``interval_s`` from a daemon thread; set the returned event to stop
        (a last write happens on the way out)."""
        stop = threading.Event()

        def loop() -> None:
            while True:
                self.write_textfile(path)
                if stop.wait(interval_s):
                    self.write_textfile(path)
                    return

        threading.Thread(target=loop, name=f"metrics-textfile:{self.app}", daemon=True).start()
        return stop

    @staticmethod
    def mark_process_dead(pid: int) -> None:
        """Multiprocess mode: forget a dead worker child's live gauges (Celery worker_process_shutdown)."""
        mp_dir = multiprocess_dir()
        if mp_dir is not None:
            prom_multiprocess.mark_process_dead(pid, str(mp_dir))  # type: ignore[no-untyped-call]
