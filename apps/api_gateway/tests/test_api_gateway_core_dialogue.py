"""The dialogue producer writes what Celery's own ``send_task`` writes (the real worker then runs
it: test_api_gateway_chat.py), and a broker that is down is a 503 reason, not an exception."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from typing import Any

import redis
import redis.asyncio as aioredis
from celery import Celery
from kombu import Queue

from api_gateway.dialogue import DialogueClient, DialogueUnavailableError
from unde_common.metrics import AppMetrics
from unde_testkit.gateway_testbed import gateway_settings
from unde_testkit.testing import free_port

TASK = "llm_orchestrator.generate_response"
#: headers and properties that differ from one message to the next
_VARIABLE = {"origin", "expires", "delivery_tag", "reply_to", "expiration", "kwargsrepr"}


def _strip(message: dict[str, Any]) -> dict[str, Any]:
    return {
        **{k: v for k, v in message.items() if k not in ("headers", "properties", "body")},
        "headers": {k: v for k, v in message["headers"].items() if k not in _VARIABLE},
        "properties": {k: v for k, v in message["properties"].items() if k not in _VARIABLE},
        "body": json.loads(base64.b64decode(message["body"])),
    }


def test_the_task_message_is_celerys(redis_url: str) -> None:
    base = redis_url.rsplit("/", 1)[0]
    settings = gateway_settings("postgresql://u@127.0.0.1/x", "postgresql://u@127.0.0.1/y", redis_url)
    kwargs = {"user_id": str(uuid.uuid4()), "message": "a private sentence", "user_message_id": "u"}
    celery = Celery("reference", set_as_current=False)
    celery.conf.update(
        broker_url=f"{base}/11",
        task_serializer="json",
        task_queues=[Queue("gwtest_reference", routing_key="gwtest_reference")],
    )
    celery.send_task(TASK, kwargs=kwargs, task_id="t1", queue="gwtest_reference", expires=30.0)
    sync = redis.Redis.from_url(f"{base}/11")
    raw = sync.rpop("gwtest_reference")
    assert isinstance(raw, bytes)
    reference = json.loads(raw)

    async def ours() -> dict[str, Any]:
        client = DialogueClient(settings, aioredis.Redis.from_url(f"{base}/14"), AppMetrics("t"))
        try:
            return dict(json.loads(client.task_message(TASK, kwargs, "t1", 30.0)))
        finally:
            await client.close()

    mine = asyncio.run(ours())
    expected = _strip(reference)
    expected["properties"]["delivery_info"]["routing_key"] = settings.dialogue_queue
    # send_task leaves ignore_result unset (None: results are kept); ours says so explicitly
    assert expected["headers"]["ignore_result"] is None
    expected["headers"]["ignore_result"] = False
    assert _strip(mine) == expected
    assert mine["headers"]["expires"]  # a task nobody took in time is never run
    assert "a private sentence" not in mine["headers"]["kwargsrepr"]
    assert "a private sentence" in reference["headers"]["kwargsrepr"]  # what send_task would have logged


def test_a_broker_that_is_down_is_unavailable(redis_url: str) -> None:
    settings = gateway_settings(
        "postgresql://u@127.0.0.1/x",
        "postgresql://u@127.0.0.1/y",
        redis_url,
        DIALOGUE_BROKER_URL=f"redis://127.0.0.1:{free_port()}/11",
    )

    async def run() -> DialogueUnavailableError:
        gw = aioredis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/14")
        client = DialogueClient(settings, gw, AppMetrics("t"))
        try:
            await client.call(TASK, {"user_id": "x"}, idempotency_key=str(uuid.uuid4()))
        except DialogueUnavailableError as exc:
            return exc
        finally:
            await client.close()
            await gw.aclose()
        raise AssertionError("a call on a broker that is down succeeded")

    exc = asyncio.run(run())
    assert (
        "dialogue broker unavailable" in exc.reason and exc.retry_after_s == settings.dialogue_retry_after_s
    )
