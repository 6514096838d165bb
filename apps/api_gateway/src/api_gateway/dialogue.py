"""The gateway as a producer of the orchestrator's Celery tasks on ``dialogue_queue`` (local-redis
DB 11) and a reader of their results, without blocking the event loop on a result.

One call (:meth:`DialogueClient.call` / :meth:`DialogueClient.stream`):

1. **Saturation.** ``LLEN dialogue_queue`` at or above ``DIALOGUE_MAX_QUEUED`` →
   :class:`DialogueUnavailableError` (503 + Retry-After) before anything is sent.
2. **Which task.** With an ``idempotency_key`` (the chat route gives the assistant message id), the
   task sent for it is remembered in the gateway Redis (``gw:turn:<key>`` → task id, send time,
   for an hour like the results): a retry of the same message follows the task already running, or
   gets its stored result at once, instead of running the turn again. A task that failed for a
   transient reason, or that has no result a deadline after it was sent (its worker died), is sent
   again under a new task id. The orchestrator's own message ids make a second run write nothing
   twice either way.
3. **Subscribe first.** The result arrives on Celery's Redis result backend: the key
   ``celery-task-meta-<task id>`` is SET and PUBLISHed on a channel of that name. The client
   subscribes to that channel (and, streaming, to ``orch:stream:<assistant_message_id>``) and waits
   for the subscription to be confirmed *before* the task is sent, then reads the key once (a
   result stored before the subscription is not missed), then waits for messages; the key is read
   again after each quiet second (a message lost with a reconnect is not waited for forever).
4. **Deadline.** No final state within the deadline → :class:`DialogueUnavailableError`; the task
   goes on and stores the reply, and the client's retry (same ids) gets it (step 2).

A task that raised → :class:`DialogueRejectedError` with the exception's type as ``code``
(``TurnRejectedError``: the input was refused, naming the field; the route answers 422).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Final, Literal

import redis.asyncio as aioredis
from celery import Celery
from prometheus_client import Counter

from api_gateway.settings import ApiGatewaySettings
from unde_common.metrics import AppMetrics

__all__ = [
    "RESULT_KEY",
    "STREAM_CHANNEL",
    "DialogueCall",
    "DialogueClient",
    "DialogueRejectedError",
    "DialogueUnavailableError",
    "StreamEvent",
]

log = logging.getLogger("api_gateway.dialogue")

RESULT_KEY: Final = "celery-task-meta-{}"
STREAM_CHANNEL: Final = "orch:stream:{}"
TURN_KEY: Final = "gw:turn:{}"
_FINAL: Final = frozenset({"SUCCESS", "FAILURE", "REVOKED"})
#: failures worth a new run (the worker or the shard, not the input)
_TRANSIENT: Final = frozenset(
    {
        "ShardUnavailableError",
        "TimeLimitExceeded",
        "SoftTimeLimitExceeded",
        "WorkerLostError",
        "MaxRetriesExceededError",
    }
)
#: the longest a started turn runs (generate_response's hard limit is 30 s) plus a margin
_RUN_LIMIT_S: Final = 40.0
#: how long buffered sentences are read after a result found in its key
_DRAIN_S: Final = 0.2
#: results live an hour in the backend (unde_common.worker result_expires)
_TURN_TTL_S: Final = 3600

StreamEvent = tuple[Literal["sentence", "reset", "done"], dict[str, Any]]


class DialogueUnavailableError(Exception):
    """The queue is saturated, the deadline passed or the broker is down: retry after ``retry_after_s``."""

    def __init__(self, reason: str, retry_after_s: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


class DialogueRejectedError(Exception):
    """The task raised: ``code`` is the exception's type name, ``message`` its text."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _down(exc: BaseException) -> str:
    return f"dialogue broker unavailable ({type(exc).__name__})"


def _failure(meta: dict[str, Any]) -> DialogueRejectedError:
    result = meta.get("result")
    if isinstance(result, dict):
        code = str(result.get("exc_type") or "TaskFailed")
        raw = result.get("exc_message")
        message = " ".join(str(m) for m in raw) if isinstance(raw, list | tuple) else str(raw or "")
    else:
        code, message = (
            ("TaskRevoked" if meta.get("status") == "REVOKED" else "TaskFailed"),
            str(result or ""),
        )
    return DialogueRejectedError(code, message[:500])


class DialogueClient:
    def __init__(
        self, settings: ApiGatewaySettings, gateway_redis: aioredis.Redis, metrics: AppMetrics
    ) -> None:
        self.settings = settings
        self.gateway_redis = gateway_redis
        url = settings.dialogue_broker_url.get_secret_value()
        self.broker = aioredis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
        # builds the task messages (Celery's protocol 2 headers); it never connects anywhere
        self.celery = Celery("api_gateway_dialogue", set_as_current=False)
        self.refused: Counter = metrics.counter(
            "dialogue_unavailable", "Dialogue calls answered 503, by reason.", ["reason"]
        )
        for reason in ("saturated", "deadline", "broker_down"):
            self.refused.labels(reason)
        self.reused: Counter = metrics.counter(
            "dialogue_reused", "Retried calls that followed the task already sent for the same message."
        )

    async def close(self) -> None:
        await self.broker.aclose()

    def _unavailable(self, reason: str, detail: str) -> DialogueUnavailableError:
        self.refused.labels(reason).inc()
        return DialogueUnavailableError(detail, self.settings.dialogue_retry_after_s)

    # ------------------------------------------------------------------ sending

    async def _check_queue(self) -> None:
        try:
            queued = await self.broker.llen(self.settings.dialogue_queue)
        except aioredis.RedisError as exc:
            raise self._unavailable("broker_down", _down(exc)) from None
        if queued >= self.settings.dialogue_max_queued:
            raise self._unavailable("saturated", f"{queued} dialogue turns are queued")

    async def _meta(self, task_id: str) -> dict[str, Any] | None:
        try:
            raw = await self.broker.get(RESULT_KEY.format(task_id))
        except aioredis.RedisError as exc:
            raise self._unavailable("broker_down", _down(exc)) from None
        return json.loads(raw) if raw else None

    async def _pick_task(
        self, idempotency_key: str | None, deadline_s: float
    ) -> tuple[str, bool, dict[str, Any] | None]:
        """(task id, whether it must be sent, its final meta when already known)."""
        if idempotency_key is None:
            return uuid.uuid4().hex, True, None
        key = TURN_KEY.format(idempotency_key)
        for _ in range(3):
            task_id = uuid.uuid4().hex
            # the task is sent with expires=deadline_s: a task not started by then never runs
            claim = json.dumps({"task_id": task_id, "expires_at": time.time() + deadline_s})
            if await self.gateway_redis.set(key, claim, nx=True, ex=_TURN_TTL_S):
                return task_id, True, None
            raw = await self.gateway_redis.get(key)
            if raw is None:
                continue  # expired between the two calls
            known = json.loads(raw)
            meta = await self._meta(known["task_id"])
            status = (meta or {}).get("status")
            if status == "SUCCESS":
                self.reused.inc()
                return known["task_id"], False, meta
            result = (meta or {}).get("result")
            exc_type = result.get("exc_type") if isinstance(result, dict) else None
            transient = status == "FAILURE" and str(exc_type) in _TRANSIENT
            expires_at = float(known.get("expires_at", 0))
            # never started before it expired, or started and past any run's hard limit
            stale = (status is None and time.time() > expires_at) or (
                status not in _FINAL and time.time() > expires_at + _RUN_LIMIT_S
            )
            if status == "FAILURE" and not transient:
                return known["task_id"], False, meta
            if transient or stale or status == "REVOKED":
                await self.gateway_redis.set(key, claim, ex=_TURN_TTL_S)
                return task_id, True, None
            self.reused.inc()
            return known["task_id"], False, None  # in flight: follow it
        return uuid.uuid4().hex, True, None

    def task_message(self, task_name: str, kwargs: dict[str, Any], task_id: str, deadline_s: float) -> str:
        """The task as kombu's Redis transport stores it in the queue's list: Celery's protocol 2
        message (headers from ``Celery.amqp.as_task_v2``, JSON body, base64) in kombu's envelope,
        exactly what ``send_task`` would LPUSH on the default exchange. ``expires`` = the deadline:
        a turn nobody took before the client gave up is replayed by the client, not run late. The
        message text is left out of ``kwargsrepr`` (what the worker logs on receipt)."""
        queue = self.settings.dialogue_queue
        shown = {k: v for k, v in kwargs.items() if k != "message"}
        task = self.celery.amqp.as_task_v2(
            task_id, task_name, args=(), kwargs=kwargs, expires=deadline_s, kwargsrepr=repr(shown)
        )
        body = json.dumps(list(task.body), separators=(",", ":"), ensure_ascii=False)
        envelope = {
            "body": base64.b64encode(body.encode()).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": task.headers,
            "properties": {
                **task.properties,
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": queue},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
        return json.dumps(envelope, separators=(",", ":"))

    async def _send(self, task_name: str, kwargs: dict[str, Any], task_id: str, deadline_s: float) -> None:
        """LPUSH the task on dialogue_queue (one round trip on the event loop; no thread, no
        second connection pool)."""
        message = self.task_message(task_name, kwargs, task_id, deadline_s)
        try:
            await self.broker.lpush(self.settings.dialogue_queue, message)
        except aioredis.RedisError as exc:
            log.warning("dialogue task not sent", extra={"task_id": task_id, "error": type(exc).__name__})
            raise self._unavailable("broker_down", _down(exc)) from None

    # ------------------------------------------------------------------ waiting

    async def open(
        self,
        task_name: str,
        kwargs: dict[str, Any],
        *,
        deadline_s: float | None = None,
        idempotency_key: str | None = None,
        stream_channel: str | None = None,
    ) -> DialogueCall:
        """Check the queue, subscribe, send the task (steps 1-3 of the module doc); the returned
        call's :meth:`DialogueCall.events` waits for its events. Raises as :meth:`call` does.
        Close it (``async with``) when done."""
        deadline_s = deadline_s or self.settings.dialogue_deadline_s
        until = time.monotonic() + deadline_s
        await self._check_queue()
        try:
            task_id, must_send, meta = await self._pick_task(idempotency_key, deadline_s)
        except aioredis.RedisError as exc:  # the gateway Redis is down: the turn still runs, once more
            log.warning("turn de-duplication unavailable", extra={"error": type(exc).__name__})
            task_id, must_send, meta = uuid.uuid4().hex, True, None
        call = DialogueCall(self, task_id, until, deadline_s, final=meta)
        if meta is not None:
            return call
        channels = [call.result_channel] + ([stream_channel] if stream_channel else [])
        call.pubsub = self.broker.pubsub()
        try:
            try:
                await call.pubsub.subscribe(*channels)
                confirmed = 0
                while confirmed < len(channels):
                    left = until - time.monotonic()
                    if left <= 0:
                        raise self._unavailable("deadline", "no answer within the deadline")
                    message = await call.pubsub.get_message(timeout=min(left, 1.0))
                    if message is not None and message["type"] == "subscribe":
                        confirmed += 1
            except aioredis.RedisError as exc:
                raise self._unavailable("broker_down", _down(exc)) from None
            if must_send:
                try:
                    await self._send(task_name, kwargs, task_id, deadline_s)
                except DialogueUnavailableError:
                    if idempotency_key is not None:  # nothing was sent: a retry must send, not follow
                        with contextlib.suppress(aioredis.RedisError):
                            await self.gateway_redis.delete(TURN_KEY.format(idempotency_key))
                    raise
        except BaseException:
            await call.close()
            raise
        return call

    async def stream(
        self,
        task_name: str,
        kwargs: dict[str, Any],
        *,
        deadline_s: float | None = None,
        idempotency_key: str | None = None,
        stream_channel: str | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """The task's ``sentence`` / ``reset`` events from ``stream_channel`` (when given) as they
        are published, then ``("done", result)``. Raises as :meth:`call` does."""
        call = await self.open(
            task_name,
            kwargs,
            deadline_s=deadline_s,
            idempotency_key=idempotency_key,
            stream_channel=stream_channel,
        )
        async with call:
            async for event in call.events():
                yield event

    async def call(
        self,
        task_name: str,
        kwargs: dict[str, Any],
        *,
        deadline_s: float | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Send ``task_name`` with ``kwargs`` on dialogue_queue and return its result.

        Raises :class:`DialogueUnavailableError` (saturated queue, deadline, broker down) or
        :class:`DialogueRejectedError` (the task raised)."""
        call = await self.open(task_name, kwargs, deadline_s=deadline_s, idempotency_key=idempotency_key)
        async with call:
            async for kind, data in call.events():
                if kind == "done":
                    return data
        raise self._unavailable("deadline", "the dialogue ended without a result")


class DialogueCall:
    """One sent (or followed) task: its events until the final result (:meth:`events`)."""

    def __init__(
        self,
        client: DialogueClient,
        task_id: str,
        until: float,
        deadline_s: float,
        final: dict[str, Any] | None,
    ) -> None:
        self.client = client
        self.task_id = task_id
        self.until = until
        self.deadline_s = deadline_s
        self.result_channel = RESULT_KEY.format(task_id)
        self.pubsub: Any = None
        self._final = final

    async def __aenter__(self) -> DialogueCall:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self.pubsub is not None:
            pubsub, self.pubsub = self.pubsub, None
            with contextlib.suppress(aioredis.RedisError):
                await pubsub.aclose()

    async def _next(self, timeout_s: float) -> tuple[str, Any] | None:
        """The next message (channel, decoded JSON) within ``timeout_s``, None when quiet."""
        try:
            message = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout_s)
        except aioredis.RedisError as exc:
            raise self.client._unavailable("broker_down", _down(exc)) from None
        if message is None:
            return None
        channel = message["channel"]
        channel = channel.decode() if isinstance(channel, bytes) else channel
        try:
            return channel, json.loads(message["data"])
        except (TypeError, ValueError):
            return channel, None

    async def events(self) -> AsyncGenerator[StreamEvent, None]:
        """``sentence`` / ``reset`` as published, then ``done`` with the result; raises
        :class:`DialogueUnavailableError` past the deadline, :class:`DialogueRejectedError` when
        the task raised.

        A result found by reading its key (not from the channel) may overtake sentences still in
        this connection's buffer (the worker publishes them before the result, and Redis delivers
        a connection's messages in order): those are read until the result's own message, or a
        quiet ``_DRAIN_S``, before ``done``."""
        client = self.client
        final = self._final
        from_key = False
        if final is None and self.pubsub is not None:
            final = await client._meta(self.task_id)
            from_key = final is not None
        while final is None or final.get("status") not in _FINAL:
            left = self.until - time.monotonic()
            if left <= 0:
                raise client._unavailable("deadline", f"no answer within {self.deadline_s:g} s")
            got = await self._next(min(left, 1.0))
            if got is None:
                final = await client._meta(self.task_id)
                from_key = final is not None
                continue
            channel, data = got
            if channel == self.result_channel and isinstance(data, dict):
                final = data
            elif isinstance(data, dict) and data.get("type") in ("sentence", "reset"):
                yield data["type"], data
        while from_key and self.pubsub is not None:
            got = await self._next(_DRAIN_S)
            if got is None or got[0] == self.result_channel:
                break
            if isinstance(got[1], dict) and got[1].get("type") in ("sentence", "reset"):
                yield got[1]["type"], got[1]
        if final.get("status") != "SUCCESS":
            raise _failure(final)
        yield "done", dict(final.get("result") or {})
