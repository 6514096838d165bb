"""What a worker process of the orchestrator holds: one asyncio event loop for the process's life,
and on it the shard router, the Production DB pool, Redis, the agents' and providers' clients and
the master key ring. Built on the first task after the prefork (never in the parent), closed at
process exit.

    runtime = process_runtime()          # in a task
    result = runtime.run(run_turn(runtime, args))

Work that follows an answer (the persona feedback, queueing the enrichment) runs as background
tasks on the same loop (:meth:`Runtime.after_turn`): the loop keeps running them between tasks, and
``run`` gives them a moment to finish before the next turn waits on its own work.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import threading
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar
from uuid import UUID

import redis.asyncio as aioredis
from celery import Celery

from llm_orchestrator.agents import AgentClients, FrameStore
from llm_orchestrator.crypto import KeyRingSource
from llm_orchestrator.metrics import OrchestratorMetrics
from llm_orchestrator.providers.embedding import build_embedder
from llm_orchestrator.providers.intelistyle import build_intelistyle
from llm_orchestrator.providers.router import build_router
from llm_orchestrator.settings import LlmOrchestratorSettings
from unde_common.db import PoolConfig, create_async_pool
from unde_common.shard_router import router_from_settings

__all__ = ["Runtime", "process_runtime"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_META_KEEP = 20


class Runtime:
    """One per worker process (see the module docstring)."""

    def __init__(self, settings: LlmOrchestratorSettings, metrics: OrchestratorMetrics) -> None:
        self.settings = s = settings
        self.metrics = metrics
        self.loop = asyncio.new_event_loop()
        self._background: set[asyncio.Task[Any]] = set()
        self._lock = threading.Lock()
        self.keyring = KeyRingSource(s.master_key_file)
        config = PoolConfig.from_settings(s)
        self.redis = aioredis.Redis.from_url(
            s.celery_broker_url.get_secret_value(), socket_connect_timeout=1.0, socket_timeout=2.0
        )
        routing = aioredis.Redis.from_url(
            s.shard_routing_redis_url.get_secret_value(), socket_connect_timeout=0.2, socket_timeout=0.2
        )
        self.router = router_from_settings(s, routing, pool_config=config)
        self.production = create_async_pool(
            s.production_db_url, app_name=s.app_name, name="production_db", config=config
        )
        self.frames = FrameStore(self.redis, s.frame_ttl_s)
        self.agents = AgentClients(
            s,
            self.frames,
            on_fallback=lambda agent, reason: metrics.agent_fallbacks.labels(agent, reason).inc(),
        )
        self.llm = build_router(s)
        self.embedder = build_embedder(s)
        self.intelistyle = build_intelistyle(s)
        self.celery: Celery | None = None
        self.recognition_app: Celery | None = None
        if s.recognition_broker_url is not None:
            url = s.recognition_broker_url.get_secret_value()
            self.recognition_app = Celery("llm_orchestrator_recognition", broker=url, backend=url)
            self.recognition_app.conf.update(
                task_serializer="json", result_serializer="json", accept_content=["json"]
            )
        self._opened = False

    # ------------------------------------------------------------------ loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the process's loop (opening the pools on first use)."""
        with self._lock:
            if not self._opened:
                self.loop.run_until_complete(self._open())
                self._opened = True
            return self.loop.run_until_complete(coro)

    async def _open(self) -> None:
        self.keyring.ring()  # MasterKeyMissingError names the playbook that delivers the key
        await self.production.open(wait=False)

    def after_turn(self, *work: Awaitable[Any]) -> None:
        """Start follow-up work of a turn in the background (errors are logged, never raised)."""
        for item in work:
            task = asyncio.ensure_future(self._quiet(item), loop=self.loop)
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    @staticmethod
    async def _quiet(item: Awaitable[Any]) -> None:
        try:
            await item
        except Exception as exc:
            log.warning(
                "follow-up work failed", extra={"error": type(exc).__name__, "detail": str(exc)[:200]}
            )

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Wait for the background work (tests, shutdown)."""
        if self._background:
            await asyncio.wait(set(self._background), timeout=timeout_s)

    async def aclose(self) -> None:
        await self.drain()
        await self.agents.aclose()
        await self.llm.aclose()
        await self.embedder.aclose()
        await self.intelistyle.aclose()
        await self.router.close()
        await self.production.close()
        await self.redis.aclose()

    def close(self) -> None:
        with self._lock:
            if self.loop.is_closed():
                return
            try:
                self.loop.run_until_complete(self.aclose())
            finally:
                self.loop.close()

    # ------------------------------------------------------------------ turn helpers

    def enqueue_enrichment(
        self, conversation_id: UUID, message_id: UUID, user_id: UUID, *, priority: str = "live"
    ) -> Awaitable[Any]:
        """Queue ``enrich_message`` for the stored user message (on the enrichment queue);
        ``priority`` labels its latency (``live``, ``backfill`` for replayed messages)."""

        async def send() -> None:
            app = self.celery
            if app is None:
                from llm_orchestrator.celery_app import app as celery_app

                app = self.celery = celery_app
            await asyncio.to_thread(
                app.send_task,
                "llm_orchestrator.enrich_message",
                args=[str(conversation_id), str(message_id), str(user_id), priority],
                queue="enrichment",
            )

        return send()

    async def observe_queues(self) -> None:
        """``llm_orchestrator_queue_size`` and ``unde_enrichment_queue_size`` from the broker (LLEN
        of the two queues' lists; kombu keeps a queue's messages in the list named after it)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.llen("dialogue_queue")
            pipe.llen("enrichment")
            dialogue, enrichment = await pipe.execute()
        self.metrics.queue_size.labels("dialogue_queue").set(dialogue)
        self.metrics.enrichment_queue_size.labels("live").set(enrichment)

    async def recent_meta(self, user_id: UUID) -> list[dict[str, Any]]:
        """The persona ``response_meta`` of the user's last replies (oldest first)."""
        try:
            raw = await self.redis.lrange(f"orch:meta:{user_id}", 0, _META_KEEP - 1)
        except Exception as exc:
            log.warning("response meta unreadable", extra={"error": type(exc).__name__})
            return []
        out = []
        for item in reversed(raw):
            try:
                value = json.loads(item)
            except ValueError:
                continue
            if isinstance(value, dict):
                out.append(value)
        return out

    async def remember_meta(self, user_id: UUID, meta: dict[str, Any]) -> None:
        key = f"orch:meta:{user_id}"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.lpush(key, json.dumps(meta, separators=(",", ":")))
            pipe.ltrim(key, 0, _META_KEEP - 1)
            pipe.expire(key, 30 * 86400)
            await pipe.execute()

    async def stylist(
        self, message: str, profile: Any, catalog: list[dict[str, Any]]
    ) -> dict[str, Any] | None:
        return await self.intelistyle.recommend(message, profile, catalog)

    async def recognize(self, photo_url: str, user_id: UUID) -> dict[str, Any] | None:
        """``recognition.recognize_photo`` through recognition_queue, waited for in a thread."""
        if self.recognition_app is None:
            raise RuntimeError("recognition is not configured (RECOGNITION_BROKER_URL)")
        app = self.recognition_app
        timeout = self.settings.recognition_timeout_s

        def call() -> Any:
            result = app.send_task(
                "recognition.recognize_photo",
                args=[photo_url, str(user_id)],
                queue=self.settings.recognition_queue,
            )
            try:
                return result.get(timeout=timeout, disable_sync_subtasks=False)
            finally:
                result.forget()

        value = await asyncio.to_thread(call)
        return value if isinstance(value, dict) else None


_RUNTIMES: list[Runtime] = []


def process_runtime() -> Runtime:
    """This process's runtime (built on first use, after the fork)."""
    if not _RUNTIMES:
        from llm_orchestrator.celery_app import orchestrator_metrics

        runtime = Runtime(LlmOrchestratorSettings.load(), orchestrator_metrics())
        _RUNTIMES.append(runtime)
        atexit.register(runtime.close)
    return _RUNTIMES[0]
