"""The gateway's side of recognition: enqueue ``recognition.recognize_photo`` on the push Redis and
follow the request until its result.

The recognition worker (apps/recognition) publishes its progress in its broker Redis (DB 6):
``{"request_id", "step": "detect", "items": [...]}`` on channel ``recognition:progress:<id>``, the
same JSON kept at ``recognition:detection:<id>``, then ``{"step": "done"}``; the final result is the
Celery result (``celery-task-meta-<task id>``, written with SET and PUBLISHed on the same name by
Celery's Redis backend). The task id *is* the request id, so a request can be followed from its id
alone: by the stream that sent it, by the poll route, or by a retry of the same request.

Following one request (:meth:`Recognition.follow`): subscribe to both channels first, then read the
two keys (a step finished before the subscription is not missed), then wait for messages until
the deadline. Events: ``("chips", detection)`` once, then ``("cards", result)``.

Whose request an id is lives in the gateway Redis (``gw:recognition:<id>`` → user id, photo id,
start time): the poll route answers only its owner, and a retry with the same id is not enqueued
twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final, Literal

import redis.asyncio as aioredis
from celery import Celery
from kombu import Queue

from api_gateway.media_settings import MediaSettings

__all__ = [
    "TASK_NAME",
    "Event",
    "Recognition",
    "RecognitionBusyError",
    "RecognitionTimeoutError",
    "RecognitionUnavailableError",
    "Ticket",
    "cards",
]

log = logging.getLogger("api_gateway.recognition")

TASK_NAME: Final = "recognition.recognize_photo"
#: Celery's Redis result backend key (and pub/sub channel) of a task's result
RESULT_KEY: Final = "celery-task-meta-{}"
PROGRESS_CHANNEL: Final = "recognition:progress:{}"
DETECTION_KEY: Final = "recognition:detection:{}"
OWNER_KEY: Final = "gw:recognition:{}"
_FINAL_STATES: Final = frozenset({"SUCCESS", "FAILURE", "REVOKED"})

Event = tuple[Literal["chips", "cards"], dict[str, Any]]


class RecognitionBusyError(Exception):
    """recognition_queue holds more than ``RECOGNITION_MAX_QUEUED`` tasks: retry later."""


class RecognitionUnavailableError(Exception):
    """The push Redis (broker) cannot be reached: recognition is unavailable for now."""


class RecognitionTimeoutError(Exception):
    """No result within ``RECOGNITION_DEADLINE_S``."""


@dataclass(frozen=True, slots=True)
class Ticket:
    """One recognition request: its id, whose it is, and when it started (epoch seconds)."""

    request_id: uuid.UUID
    user_id: uuid.UUID
    photo_id: uuid.UUID
    started_at: float

    def dumps(self) -> str:
        return json.dumps(
            {"user_id": str(self.user_id), "photo_id": str(self.photo_id), "started_at": self.started_at}
        )

    @classmethod
    def loads(cls, request_id: uuid.UUID, raw: bytes | str) -> Ticket:
        data = json.loads(raw)
        return cls(
            request_id, uuid.UUID(data["user_id"]), uuid.UUID(data["photo_id"]), float(data["started_at"])
        )


def cards(result: dict[str, Any]) -> dict[str, Any]:
    """The task's result as the app sees it: status, items (category, box, tags, band, matches), the
    error if any. Crop URLs (they carry the presigned photo URL), per-step diagnostics and timings
    stay inside."""
    out = {
        "request_id": result.get("request_id"),
        "status": result.get("status"),
        "items": [{k: v for k, v in item.items() if k != "crop_url"} for item in result.get("items", [])],
    }
    if result.get("error"):
        out["error"] = result["error"]
    return out


def chips(detection: dict[str, Any]) -> dict[str, Any]:
    """The detection as chips: each item's category, box and confidence (no crop URLs: they carry
    the presigned photo URL)."""
    items = [
        {k: v for k, v in item.items() if k in ("category", "bbox", "confidence", "tags", "whole")}
        for item in detection.get("items", [])
    ]
    return {"request_id": detection.get("request_id"), "items": items}


class Recognition:
    """Producer of recognize_photo tasks and reader of their progress and results."""

    def __init__(self, settings: MediaSettings, gateway_redis: aioredis.Redis) -> None:
        self.settings = settings
        self.gateway_redis = gateway_redis
        url = settings.recognition_broker_url.get_secret_value()
        self.broker = aioredis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
        self.celery = Celery("api_gateway_recognition")
        queue = settings.recognition_queue
        self.celery.conf.update(
            broker_url=url,
            task_serializer="json",
            accept_content=["json"],
            task_queues=[Queue(queue, routing_key=queue)],
            task_default_queue=queue,
            task_default_routing_key=queue,
            task_create_missing_queues=False,
            # a broker that is down fails the request at once (503), it does not hold the client
            broker_connection_timeout=2,
            broker_connection_retry=False,
            task_publish_retry=True,
            task_publish_retry_policy={"max_retries": 1, "interval_start": 0.1, "interval_step": 0.2},
        )

    async def close(self) -> None:
        await self.broker.aclose()
        await asyncio.to_thread(self.celery.close)

    # ------------------------------------------------------------------ requests

    async def ticket(self, request_id: uuid.UUID) -> Ticket | None:
        raw = await self.gateway_redis.get(OWNER_KEY.format(request_id))
        return None if raw is None else Ticket.loads(request_id, raw)

    async def submit(self, ticket: Ticket, photo_url: str) -> bool:
        """Enqueue the task unless this request id was submitted already (then False). Raises
        :class:`RecognitionBusyError` when the queue is full, :class:`RecognitionUnavailableError`
        when the broker cannot be reached."""
        s = self.settings
        try:
            queued = await self.broker.llen(s.recognition_queue)
        except aioredis.RedisError as exc:
            raise RecognitionUnavailableError(type(exc).__name__) from None
        if queued >= s.recognition_max_queued:
            raise RecognitionBusyError(f"{queued} recognitions queued")
        claimed = await self.gateway_redis.set(
            OWNER_KEY.format(ticket.request_id), ticket.dumps(), nx=True, ex=s.recognition_request_ttl_s
        )
        if not claimed:
            return False
        kwargs = {
            "photo_url": photo_url,
            "user_id": str(ticket.user_id),
            "request_id": str(ticket.request_id),
        }
        try:
            await asyncio.to_thread(
                self.celery.send_task,
                TASK_NAME,
                kwargs=kwargs,
                task_id=str(ticket.request_id),
                queue=s.recognition_queue,
                # a task nobody took before the deadline is of no use to the client any more
                expires=s.recognition_deadline_s,
            )
        except Exception as exc:  # kombu's connection errors vary by transport
            await self.gateway_redis.delete(OWNER_KEY.format(ticket.request_id))
            log.warning(
                "recognition task not sent", extra={"request_id": str(ticket.request_id), "error": str(exc)}
            )
            raise RecognitionUnavailableError(type(exc).__name__) from None
        return True

    async def snapshot(self, request_id: uuid.UUID) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """(detection, final task meta) as stored now; None where there is none yet."""
        try:
            detection, meta = await self.broker.mget(
                DETECTION_KEY.format(request_id), RESULT_KEY.format(request_id)
            )
        except aioredis.RedisError as exc:
            raise RecognitionUnavailableError(type(exc).__name__) from None
        final = json.loads(meta) if meta else None
        if final is not None and final.get("status") not in _FINAL_STATES:
            final = None  # STARTED (task_track_started) or RETRY
        return (json.loads(detection) if detection else None), final

    def deadline(self, ticket: Ticket) -> float:
        """Seconds left for this request (monotonic-free: the ticket's epoch start)."""
        return ticket.started_at + self.settings.recognition_deadline_s - time.time()

    async def follow(self, ticket: Ticket) -> AsyncIterator[Event]:
        """``("chips", …)`` then ``("cards", …)`` as they happen; :class:`RecognitionTimeoutError`
        past the deadline. A failed task (an exception in the worker) gives cards with status failed."""
        rid = ticket.request_id
        pubsub = self.broker.pubsub()
        try:
            try:
                await pubsub.subscribe(PROGRESS_CHANNEL.format(rid), RESULT_KEY.format(rid))
            except aioredis.RedisError as exc:
                raise RecognitionUnavailableError(type(exc).__name__) from None
            detection, final = await self.snapshot(rid)
            sent_chips = False
            if detection is not None:
                sent_chips = True
                yield "chips", chips(detection)
            while final is None:
                left = self.deadline(ticket)
                if left <= 0:
                    raise RecognitionTimeoutError(str(rid))
                try:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=min(left, 1.0))
                except aioredis.RedisError as exc:
                    raise RecognitionUnavailableError(type(exc).__name__) from None
                if message is None:
                    continue
                channel = (
                    message["channel"].decode()
                    if isinstance(message["channel"], bytes)
                    else message["channel"]
                )
                data = json.loads(message["data"])
                if channel.startswith("recognition:progress:"):
                    if data.get("step") == "detect" and not sent_chips:
                        sent_chips = True
                        yield "chips", chips(data)
                elif data.get("status") in _FINAL_STATES:
                    final = data
            if not sent_chips:  # the detection failed or was published before anyone listened
                yield "chips", {"request_id": str(rid), "items": []}
            yield "cards", self.final_cards(rid, final)
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]

    @staticmethod
    def final_cards(request_id: uuid.UUID, meta: dict[str, Any]) -> dict[str, Any]:
        """Cards from the stored task meta (SUCCESS → the pipeline's result; else failed)."""
        if meta.get("status") == "SUCCESS" and isinstance(meta.get("result"), dict):
            return cards(meta["result"])
        return {"request_id": str(request_id), "status": "failed", "items": [], "error": "recognition failed"}
