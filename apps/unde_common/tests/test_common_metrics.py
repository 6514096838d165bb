from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from unde_common.metrics import AppMetrics, metric_prefix
from unde_testkit.testing import free_port


def samples(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}"] = s.value
    return out


def test_prefix_and_helpers() -> None:
    assert metric_prefix("photo-downloader") == "photo_downloader"
    m = AppMetrics("ximilar_gw", version="1.2.3")
    m.histogram("detect_latency_ms", "Detect latency.").observe(120)
    m.counter("errors", "Errors.", ["endpoint"]).labels("detect").inc(2)
    m.counter("ximilar_gw_rate_limit_hits", "429s from Ximilar.", prefixed=False).inc()
    assert m.counter("errors", "Errors.", ["endpoint"]) is m.counter("errors", "Errors.", ["endpoint"])
    got = samples(m.render().decode())
    assert got["ximilar_gw_errors_total{endpoint=detect}"] == 2
    assert got["ximilar_gw_rate_limit_hits_total{}"] == 1
    assert got["ximilar_gw_detect_latency_ms_bucket{le=200.0}"] == 1
    assert got["ximilar_gw_detect_latency_ms_bucket{le=100.0}"] == 0
    assert got["ximilar_gw_app_info{app=ximilar_gw,version=1.2.3}"] == 1
    assert any(k.startswith("process_cpu_seconds_total") for k in got)
    with pytest.raises(ValueError, match="already exists as a Counter"):
        m.gauge("errors", "x")
    with pytest.raises(ValueError, match="invalid metric name"):
        m.counter("bad-name", "x")


def test_registries_are_per_app() -> None:
    a, b = AppMetrics("mood_agent"), AppMetrics("mood_agent")
    a.counter("errors", "e").inc()
    b.counter("errors", "e")
    assert "mood_agent_errors_total 1.0" in a.render().decode()
    assert "mood_agent_errors_total 0.0" in b.render().decode()


def test_http_server_for_workers() -> None:
    m = AppMetrics("collage")
    m.gauge("collage_queue_size", "Products waiting.", prefixed=False).set(17)
    port = free_port()
    server, thread = m.start_http_server(port)
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        server.shutdown()
        thread.join(timeout=5)
    assert samples(text)["collage_queue_size{}"] == 17


def test_textfile(tmp_path: Path) -> None:
    m = AppMetrics("scraper", process_collectors=False)
    m.gauge("availability_poll_success", "Last poll ok.", prefixed=False).set(1)
    target = tmp_path / "textfile" / "scraper.prom"
    m.write_textfile(target)
    assert samples(target.read_text())["availability_poll_success{}"] == 1


def test_multiprocess_mode_aggregates_children(tmp_path: Path) -> None:
    """Two processes increment; the exposition registry sums them (Celery prefork children)."""
    mp_dir = tmp_path / "mp"
    mp_dir.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(mp_dir)}
    child = textwrap.dedent(
        """
        from unde_common.metrics import AppMetrics
        m = AppMetrics("recognition", process_collectors=False)
        m.counter("tasks", "t").inc(3)
        """
    )
    for _ in range(2):
        subprocess.run([sys.executable, "-c", child], env=env, check=True, timeout=60)
    parent = textwrap.dedent(
        """
        from unde_common.metrics import AppMetrics
        print(AppMetrics("recognition", process_collectors=False).render().decode())
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", parent], env=env, check=True, timeout=60, capture_output=True, text=True
    ).stdout
    assert samples(out)["recognition_tasks_total{}"] == 6
