"""The gateway's recognition producer and relay on a real Redis: the task it enqueues on
recognition_queue, and the progress (detection on ``recognition:progress:<id>``, the Celery result)
followed as chips then cards."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
import redis
import redis.asyncio as aioredis
from celery import Celery

from api_gateway.media_recognition import (
    TASK_NAME,
    Event,
    Recognition,
    RecognitionBusyError,
    RecognitionTimeoutError,
    RecognitionUnavailableError,
    Ticket,
)
from api_gateway.media_settings import MediaSettings
from unde_testkit.testing import free_port

T = TypeVar("T")

DETECTION = {
    "step": "detect",
    "items": [
        {"crop_url": "https://s3.example/p?X-Amz-Signature=x", "bbox": [1, 2, 3, 4], "category": "Jackets",
         "confidence": 0.95, "whole": False},
    ],
}  # fmt: skip
RESULT = {
    "status": "completed",
    "photo_url": "https://s3.example/p?X-Amz-Signature=x",
    "items": [
        {"category": "Jackets", "crop_url": "https://s3.example/p?X-Amz-Signature=x", "bbox": [1, 2, 3, 4],
         "tags": {"color": "red"}, "band": "exact", "top_score": 0.93,
         "matches": [{"match_type": "exact", "sku_id": "EXACT-1", "brand": "zara", "score": 0.93}]},
    ],
    "total_ms": 1234,
    "steps": {"detect": {"status": "ok"}},
    "recorded": True,
}  # fmt: skip


@pytest.fixture
def broker_url(redis_url: str) -> Iterator[str]:
    url = redis_url.rsplit("/", 1)[0] + "/6"
    client = redis.Redis.from_url(url)
    client.delete("recognition_queue")
    yield url
    client.delete("recognition_queue")
    client.close()


@pytest.fixture
def gateway_url(redis_url: str) -> str:
    return redis_url.rsplit("/", 1)[0] + "/14"


def settings(broker_url: str, **overrides: Any) -> MediaSettings:
    values: dict[str, Any] = {
        "s3_user_media_access_key": "k",
        "s3_user_media_secret_key": "s",
        "recognition_broker_url": broker_url,
        **overrides,
    }
    return MediaSettings.load(**values)


def run(s: MediaSettings, gateway_url: str, body: Callable[[Recognition], Awaitable[T]]) -> T:
    async def main() -> T:
        gw = aioredis.Redis.from_url(gateway_url)
        recognition = Recognition(s, gw)
        try:
            return await body(recognition)
        finally:
            await recognition.close()
            await gw.aclose()

    return asyncio.run(main())


def ticket() -> Ticket:
    return Ticket(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), time.time())


def queued(broker_url: str) -> list[dict[str, Any]]:
    """The kombu messages waiting in recognition_queue (oldest first), their bodies decoded."""
    client = redis.Redis.from_url(broker_url)
    out = []
    for raw in reversed(client.lrange("recognition_queue", 0, -1)):
        message = json.loads(raw)
        args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        out.append({"headers": message["headers"], "args": args, "kwargs": kwargs})
    return out


def worker_side(
    broker_url: str, request_id: uuid.UUID, *, result: dict[str, Any] | None, delay_s: float
) -> None:
    """What the recognition worker writes, in its order: the detection (kept + published, as
    Pipeline._publish does), then the task's result through Celery's own Redis result backend."""
    time.sleep(delay_s)
    client = redis.Redis.from_url(broker_url)
    message = json.dumps({"request_id": str(request_id), **DETECTION})
    client.set(f"recognition:detection:{request_id}", message, ex=600)
    client.publish(f"recognition:progress:{request_id}", message)
    client.publish(
        f"recognition:progress:{request_id}", json.dumps({"request_id": str(request_id), "step": "done"})
    )
    backend = Celery("recognition", broker=broker_url, backend=broker_url).backend
    if result is None:
        backend.mark_as_failure(str(request_id), RuntimeError("pipeline crashed"))
    else:
        backend.store_result(str(request_id), {"request_id": str(request_id), **result}, "SUCCESS")
    client.close()


async def collect(events: AsyncIterator[Event]) -> list[Event]:
    return [event async for event in events]


def test_submit_enqueues_recognize_photo_with_the_request_id_as_task_id(
    broker_url: str, gateway_url: str
) -> None:
    t = ticket()

    async def body(r: Recognition) -> tuple[bool, bool, Ticket | None]:
        first = await r.submit(t, "https://s3.example/photo?sig")
        again = await r.submit(t, "https://s3.example/photo?sig")
        return first, again, await r.ticket(t.request_id)

    first, again, known = run(settings(broker_url), gateway_url, body)
    assert (first, again) == (True, False)  # a retry with the same id is not enqueued twice
    assert known == t
    [message] = queued(broker_url)
    assert message["headers"]["task"] == TASK_NAME
    assert message["headers"]["id"] == str(t.request_id)
    assert message["headers"]["expires"] is not None
    assert message["kwargs"] == {
        "photo_url": "https://s3.example/photo?sig",
        "user_id": str(t.user_id),
        "request_id": str(t.request_id),
    }


def test_a_full_queue_is_refused(broker_url: str, gateway_url: str) -> None:
    async def body(r: Recognition) -> None:
        await r.submit(ticket(), "u")
        await r.submit(ticket(), "u")
        with pytest.raises(RecognitionBusyError):
            await r.submit(ticket(), "u")

    run(settings(broker_url, recognition_max_queued=2), gateway_url, body)
    assert len(queued(broker_url)) == 2


def test_a_broker_that_is_down_is_unavailable(gateway_url: str) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/6"
    t = ticket()

    async def body(r: Recognition) -> Ticket | None:
        with pytest.raises(RecognitionUnavailableError):
            await r.submit(t, "u")
        return await r.ticket(t.request_id)

    assert run(settings(dead), gateway_url, body) is None


@pytest.mark.parametrize("late", [False, True], ids=["published-before", "published-while-following"])
def test_follow_relays_chips_then_cards(broker_url: str, gateway_url: str, late: bool) -> None:
    """Before: the worker finished before anyone listened (the stored copies are read). While: the
    messages arrive on the channels while the gateway waits."""
    t = ticket()
    worker = threading.Thread(
        target=worker_side, args=(broker_url, t.request_id), kwargs={"result": RESULT, "delay_s": 0.3}
    )
    if not late:
        worker_side(broker_url, t.request_id, result=RESULT, delay_s=0)

    async def body(r: Recognition) -> list[Event]:
        if late:
            worker.start()
        return await collect(r.follow(t))

    events = run(settings(broker_url), gateway_url, body)
    if late:
        worker.join()
    assert [name for name, _ in events] == ["chips", "cards"]
    chips, cards = events[0][1], events[1][1]
    assert chips == {
        "request_id": str(t.request_id),
        "items": [{"bbox": [1, 2, 3, 4], "category": "Jackets", "confidence": 0.95, "whole": False}],
    }
    assert cards["status"] == "completed"
    assert cards["items"][0]["matches"][0]["sku_id"] == "EXACT-1"
    # the presigned photo URL (crops carry it) and the pipeline's diagnostics stay inside
    assert "X-Amz-Signature" not in json.dumps(events)
    assert "steps" not in cards and "photo_url" not in cards


def test_a_task_that_raised_gives_failed_cards(broker_url: str, gateway_url: str) -> None:
    t = ticket()
    worker_side(broker_url, t.request_id, result=None, delay_s=0)

    async def body(r: Recognition) -> list[Event]:
        return await collect(r.follow(t))

    events = run(settings(broker_url), gateway_url, body)
    assert [name for name, _ in events] == ["chips", "cards"]
    assert events[1][1]["status"] == "failed" and events[1][1]["items"] == []


def test_no_result_by_the_deadline_times_out_after_the_chips(broker_url: str, gateway_url: str) -> None:
    t = ticket()
    message = json.dumps({"request_id": str(t.request_id), **DETECTION})
    redis.Redis.from_url(broker_url).set(f"recognition:detection:{t.request_id}", message)
    seen: list[Event] = []

    async def body(r: Recognition) -> None:
        with pytest.raises(RecognitionTimeoutError):
            async for event in r.follow(t):
                seen.append(event)

    run(settings(broker_url, recognition_deadline_s=1.0), gateway_url, body)
    assert [name for name, _ in seen] == ["chips"]
