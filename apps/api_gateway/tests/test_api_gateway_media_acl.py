"""The gateway's recognition relay as its Redis ACL user on the batch (push) server, with the ACL
file roles/redis renders for the lab (tests/test_redis_acl.py renders and serves it): the queue
bound (LLEN), the task sent through kombu, the detection key and channel, the Celery result key and
channel, all read as ``api_gateway`` while the worker side writes as ``recognition``; the server's
ACL LOG stays empty."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from celery import Celery

from api_gateway.media_recognition import Event, Recognition, Ticket
from api_gateway.media_settings import MediaSettings

REPO = Path(__file__).resolve().parents[3]
pytest.importorskip("ansible")
sys.path.insert(0, str(REPO / "tests"))
import test_redis_acl as acl  # noqa: E402  (the rendered ACL and its server)


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from acl._serve("batch", tmp_path_factory.mktemp("redis-batch-acl"))


def test_recognition_relay_runs_as_the_gateways_user(batch: Any, redis_url: str) -> None:
    db = acl.DB["recognition"]
    batch.reset_log()
    settings = MediaSettings.load(
        s3_user_media_access_key="k",
        s3_user_media_secret_key="s",
        recognition_broker_url=batch.url("api_gateway", db),
        recognition_queue=acl.QUEUES["recognition"],
    )
    ticket = Ticket(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), time.time())
    rid = str(ticket.request_id)
    worker = batch.client("recognition", db)
    admin = batch.client("admin", db)

    async def scenario() -> tuple[list[Event], Any]:
        gw = aioredis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/14")
        recognition = Recognition(settings, gw)
        try:
            assert await recognition.submit(ticket, "https://s3.example/photo")
            events: list[Event] = []

            async def follow() -> None:
                async for event in recognition.follow(ticket):
                    events.append(event)

            following = asyncio.create_task(follow())
            # let it subscribe, so that what follows arrives on the channels (the keys would answer too)
            await asyncio.sleep(0.3)
            message = json.dumps({"request_id": rid, "step": "detect", "items": [{"category": "tops"}]})
            worker.set(f"recognition:detection:{rid}", message, ex=60)
            worker.publish(f"recognition:progress:{rid}", message)
            backend = Celery("recognition", backend=batch.url("recognition", db)).backend
            backend.store_result(rid, {"request_id": rid, "status": "completed", "items": []}, "SUCCESS")
            await asyncio.wait_for(following, timeout=20)
            return events, await recognition.snapshot(ticket.request_id)
        finally:
            await recognition.close()
            await gw.aclose()

    events, (detection, final) = asyncio.run(scenario())
    assert [name for name, _ in events] == ["chips", "cards"]
    assert detection is not None and final is not None and final["status"] == "SUCCESS"
    assert admin.llen(acl.QUEUES["recognition"]) == 1
    admin.delete(acl.QUEUES["recognition"])
    acl._no_denials(batch)
