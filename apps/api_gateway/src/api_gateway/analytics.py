"""Product analytics to the self-hosted PostHog, fire-and-forget (spec 03 "PostHog").

:meth:`Analytics.capture` puts the event on a bounded in-process queue and returns at once; one
background task per process takes up to ``POSTHOG_BATCH_SIZE`` events and POSTs them to
``<POSTHOG_HOST>/batch/`` (``{"api_key", "batch": [{"event", "distinct_id", "properties",
"timestamp"}]}``, PostHog's capture API). A request never waits for PostHog:

- queue full (PostHog down or slow for long) → the new event is dropped and counted
  (``api_gateway_analytics_dropped_total{reason="queue_full"}``);
- a batch PostHog refuses or does not answer within ``POSTHOG_TIMEOUT_S`` is dropped and counted
  (``reason="send_failed"``) and the sender pauses ``ANALYTICS_RETRY_PAUSE_S`` (the queue then
  fills and drops instead of the sender hammering a PostHog that is down).

Privacy: the ``distinct_id`` is :func:`anonymous_id` (an HMAC of the user id with
``ANALYTICS_ID_KEY``), never the user id; properties are structural only (ids of the gateway's
own making, counts, durations, flags) — :meth:`Analytics.capture` refuses keys that could carry
content (``text``, ``message``, ``content`` ...). The spec's events: ``user_message_sent``,
``recommendation_shown``, ``recommendation_clicked``, ``store_visited``, ``try_on_used``,
``avatar_interaction``, ``session_start``, ``session_end``, ``onboarding_step``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import logging
import uuid
from typing import Any, Final

import httpx
from prometheus_client import Counter

from api_gateway.settings import ApiGatewaySettings
from unde_common.metrics import AppMetrics

__all__ = ["EVENTS", "FORBIDDEN_PROPERTIES", "Analytics", "anonymous_id"]

log = logging.getLogger("api_gateway.analytics")

EVENTS: Final = frozenset(
    {
        "user_message_sent",
        "recommendation_shown",
        "recommendation_clicked",
        "store_visited",
        "try_on_used",
        "avatar_interaction",
        "session_start",
        "session_end",
        "onboarding_step",
    }
)
#: property names that would carry what a user said or who they are
FORBIDDEN_PROPERTIES: Final = frozenset(
    {"text", "message", "content", "query", "email", "phone", "name", "user_id", "location", "lat", "lng"}
)


def anonymous_id(user_id: uuid.UUID | str, key: bytes | str = b"") -> str:
    """The distinct_id PostHog sees for a user: HMAC-SHA256(key, user id), 32 hex characters.
    Stable per user (funnels work), not reversible without the key."""
    raw_key = key.encode() if isinstance(key, str) else key
    return hmac.new(raw_key, str(user_id).encode(), hashlib.sha256).hexdigest()[:32]


class Analytics:
    """The bounded queue and its sender (started by :meth:`start` in the app's lifespan)."""

    def __init__(self, settings: ApiGatewaySettings, metrics: AppMetrics) -> None:
        self.settings = settings
        self.enabled = bool(settings.posthog_api_key.get_secret_value())
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=settings.analytics_queue_size)
        self.url = str(settings.posthog_host).rstrip("/") + settings.posthog_batch_path
        self._key = settings.analytics_id_key.get_secret_value().encode()
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self.dropped: Counter = metrics.counter(
            "analytics_dropped", "Analytics events dropped (queue full, PostHog refused or down).", ["reason"]
        )
        self.sent: Counter = metrics.counter("analytics_sent", "Analytics events PostHog accepted.")
        for reason in ("queue_full", "send_failed"):
            self.dropped.labels(reason)

    def anonymous_id(self, user_id: uuid.UUID | str) -> str:
        return anonymous_id(user_id, self._key)

    def capture(self, event: str, distinct_id: str, properties: dict[str, Any] | None = None) -> bool:
        """Queue one event (never blocks, never raises for PostHog's sake); False when dropped or off."""
        if event not in EVENTS:
            raise ValueError(f"unknown analytics event {event!r}")
        props = dict(properties or {})
        bad = FORBIDDEN_PROPERTIES.intersection(props)
        if bad:
            raise ValueError(f"analytics properties must not carry {sorted(bad)}")
        if not self.enabled:
            return False
        item = {
            "event": event,
            "distinct_id": distinct_id,
            "properties": {**props, "$lib": "unde-api-gateway"},
            "timestamp": dt.datetime.now(dt.UTC).isoformat(),
        }
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped.labels("queue_full").inc()
            return False
        return True

    def capture_user(self, event: str, user_id: uuid.UUID, properties: dict[str, Any] | None = None) -> bool:
        """:meth:`capture` with the user's anonymised id."""
        return self.capture(event, self.anonymous_id(user_id), properties)

    async def start(self) -> None:
        if not self.enabled or self._task is not None:
            return
        timeout = httpx.Timeout(self.settings.posthog_timeout_s)
        self._client = httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(max_connections=2))
        self._task = asyncio.get_running_loop().create_task(self._run(), name="analytics-sender")

    async def close(self, flush_timeout_s: float = 2.0) -> None:
        """Send what is queued (within ``flush_timeout_s``), then stop."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(flush_timeout_s):
                await self.queue.join()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _next_batch(self) -> list[dict[str, Any]]:
        batch = [await self.queue.get()]
        self.queue.task_done()
        loop = asyncio.get_running_loop()
        until = loop.time() + self.settings.analytics_flush_interval_s
        while len(batch) < self.settings.posthog_batch_size:
            try:
                batch.append(self.queue.get_nowait())
                self.queue.task_done()
                continue
            except asyncio.QueueEmpty:
                pass
            left = until - loop.time()
            if left <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self.queue.get(), timeout=left))
                self.queue.task_done()
            except TimeoutError:
                break
        return batch

    async def _run(self) -> None:
        assert self._client is not None
        api_key = self.settings.posthog_api_key.get_secret_value()
        while True:
            batch = await self._next_batch()
            try:
                response = await self._client.post(self.url, json={"api_key": api_key, "batch": batch})
                ok = response.status_code < 300
                reason = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                ok, reason = False, type(exc).__name__
            if ok:
                self.sent.inc(len(batch))
                continue
            self.dropped.labels("send_failed").inc(len(batch))
            log.warning("analytics batch dropped", extra={"events": len(batch), "error": reason})
            await asyncio.sleep(self.settings.analytics_retry_pause_s)
