from __future__ import annotations

import io
import json
import logging
import time
from pathlib import Path

import httpx
import pytest
from celery.contrib.testing.worker import start_worker
from prometheus_client.parser import text_string_to_metric_families

from unde_common.metrics import AppMetrics
from unde_common.settings import CeleryWorkerSettings
from unde_common.worker import ScheduledTask, beat_schedule, create_celery_app
from unde_testkit.service_auth import ServiceTokenAuth
from unde_testkit.testing import free_port

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("restore_root_logging")]

SCHEDULE = (
    ScheduledTask("every_quarter", "demo.tasks.quarter", minute="*/15"),
    ScheduledTask("sunday_two", "demo.tasks.weekly", minute="0", hour="2", day_of_week="sun"),
    ScheduledTask("six_hourly", "demo.tasks.recover", minute="0", hour="*/6", queue="slow"),
)


def settings() -> CeleryWorkerSettings:
    return CeleryWorkerSettings(app_name="demo", metrics_enabled=False)


def test_beat_schedule_crontab_fields_and_queues() -> None:
    app = create_celery_app(
        "demo", settings(), broker_url="memory://", queues=["demo", "slow"], schedule=SCHEDULE
    )
    sched = app.conf.beat_schedule
    assert sched["every_quarter"]["schedule"].minute == {0, 15, 30, 45}
    assert sched["every_quarter"]["schedule"].hour == set(range(24))
    weekly = sched["sunday_two"]["schedule"]
    assert (weekly.minute, weekly.hour, weekly.day_of_week) == ({0}, {2}, {0})
    assert sched["six_hourly"]["schedule"].hour == {0, 6, 12, 18}
    assert sched["every_quarter"]["options"] == {"queue": "demo"}
    assert sched["six_hourly"]["options"] == {"queue": "slow"}
    assert app.conf.task_default_queue == "demo"
    assert [q.name for q in app.conf.task_queues] == ["demo", "slow"]
    assert (
        str(app.conf.timezone) == "UTC"
        and app.conf.task_acks_late
        and app.conf.worker_prefetch_multiplier == 1
    )


def test_routing_uses_celery_router() -> None:
    app = create_celery_app(
        "demo",
        settings(),
        broker_url="memory://",
        queues=["dialogue_queue", "enrichment"],
        routes={"demo.tasks.enrich_*": "enrichment"},
    )
    router = app.amqp.router
    assert router.route({}, "demo.tasks.enrich_message")["queue"].name == "enrichment"
    assert router.route({}, "demo.tasks.generate_response")["queue"].name == "dialogue_queue"


def test_bad_tables_are_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate schedule entry 'x'"):
        beat_schedule([ScheduledTask("x", "a"), ScheduledTask("x", "b")], "q")
    with pytest.raises(ValueError, match=r"does not declare: \['nope'\]"):
        create_celery_app("demo", settings(), broker_url="memory://", queues=["q"], routes={"t": "nope"})
    with pytest.raises(ValueError, match="at least one queue"):
        create_celery_app("demo", settings(), broker_url="memory://", queues=[])


def test_real_worker_consumes_its_queue_and_records_metrics(redis_url: str) -> None:
    metrics = AppMetrics("demo", process_collectors=False)
    broker = redis_url.replace("/0", "/3")
    app = create_celery_app(
        "demo", settings(), broker_url=broker, result_backend=broker, queues=["demo"], metrics=metrics
    )

    @app.task(name="demo.tasks.add")
    def add(a: int, b: int) -> int:
        return a + b

    @app.task(name="demo.tasks.fail")
    def fail() -> None:
        raise NotImplementedError("fail: not implemented here")

    with start_worker(app, pool="solo", perform_ping_check=False, loglevel="WARNING"):
        assert add.delay(2, 3).get(timeout=20) == 5
        with pytest.raises(NotImplementedError, match="not implemented here"):
            fail.delay().get(timeout=20)

    got = {
        (s.labels.get("task"), s.labels.get("state")): s.value
        for f in text_string_to_metric_families(metrics.render().decode())
        for s in f.samples
        if s.name == "demo_celery_tasks_total"
    }
    assert got[("demo.tasks.add", "SUCCESS")] == 1
    assert got[("demo.tasks.fail", "FAILURE")] == 1


@pytest.mark.parametrize("mode", ["http", "textfile"])
def test_worker_exposes_metrics(redis_url: str, tmp_path: Path, mode: str) -> None:
    """With metrics on, the worker's main process serves /metrics or keeps a textfile fresh."""
    from celery import signals

    port = free_port()
    textfile = tmp_path / "textfile" / "demo.prom"
    worker_settings = CeleryWorkerSettings(
        app_name="demo",
        metrics_enabled=True,
        metrics_port=port,
        metrics_textfile=textfile if mode == "textfile" else None,
        metrics_textfile_interval_s=0.2,
    )
    metrics = AppMetrics("demo", process_collectors=False)
    broker = redis_url.replace("/0", "/4")
    app = create_celery_app("demo", worker_settings, broker_url=broker, queues=["demo"], metrics=metrics)

    @app.task(name=f"demo.tasks.noop_{mode}")
    def noop() -> None:
        return None

    with start_worker(app, pool="solo", perform_ping_check=False, loglevel="WARNING") as worker:
        # the test controller does not send worker_ready as `celery worker` does: send it the same way
        signals.worker_ready.send(sender=worker.consumer)  # type: ignore[attr-defined]  # not in the stubs
        noop.delay()
        deadline = time.monotonic() + 15
        text = ""
        while f'demo_celery_tasks_total{{state="SUCCESS",task="demo.tasks.noop_{mode}"}} 1.0' not in text:
            assert time.monotonic() < deadline, text
            time.sleep(0.1)
            if mode == "http":
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", auth=ServiceTokenAuth(), timeout=2).text
            elif textfile.exists():
                text = textfile.read_text()


def test_real_redis_broker_routes_to_the_declared_queues(redis_url: str) -> None:
    """Over a real Redis: a worker consuming only ``dialogue_queue`` runs what is routed there;
    the task routed to ``enrichment`` waits in that queue's Redis list."""
    import redis

    broker = redis_url.replace("/0", "/11")
    app = create_celery_app(
        "orch",
        settings(),
        broker_url=broker,
        result_backend=broker,
        queues=["dialogue_queue", "enrichment"],
        routes={"orch.enrich": "enrichment"},
    )

    @app.task(name="orch.respond")
    def respond(text: str) -> str:
        return text.upper()

    @app.task(name="orch.enrich")
    def enrich(message_id: str) -> str:
        return message_id

    r = redis.Redis.from_url(broker)
    r.delete("enrichment")
    with start_worker(
        app, pool="solo", perform_ping_check=False, loglevel="WARNING", queues=["dialogue_queue"]
    ):
        assert respond.delay("hi").get(timeout=20) == "HI"
        enrich.delay("m1")
        assert r.llen("enrichment") == 1
    r.delete("enrichment")
    r.close()


def test_celery_logging_signal_configures_json() -> None:
    from celery import signals

    buf = io.StringIO()
    root = logging.getLogger()
    create_celery_app("demo", settings(), broker_url="memory://", queues=["demo"])
    signals.setup_logging.send(sender=None)
    # configure_logging wrote to stdout; point its handler at a buffer to read it
    (handler,) = [h for h in root.handlers if h.get_name() == "unde-json"]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buf)
    logging.getLogger("celery.worker").warning("hello")
    assert json.loads(buf.getvalue())["app"] == "demo"
