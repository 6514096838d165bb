"""Settings of llm_orchestrator (local-orchestrator (10.2.0.17)).

Read by ``LlmOrchestratorSettings.load()`` from the process environment and the app's ``.env``
(``$UNDE_ENV_FILE``, else ``/opt/unde/llm_orchestrator/.env``); names are case-insensitive, secrets are
``SecretStr``. See ``unde_common.settings``.
"""

from __future__ import annotations

from pydantic import Field, HttpUrl, SecretStr

from llm_orchestrator.budget_settings import ContextPackSettings
from llm_orchestrator.keys_settings import KeySettings
from llm_orchestrator.providers.settings import ProviderSettings
from unde_common.settings import (
    CeleryWorkerSettings,
    DbPoolSettings,
    HttpClientSettings,
    PostgresDsn,
    RedisDsn,
)


class LlmOrchestratorSettings(
    ProviderSettings,
    KeySettings,
    ContextPackSettings,
    CeleryWorkerSettings,
    DbPoolSettings,
    HttpClientSettings,
):
    """Dialogue: generate_response on dialogue_queue (ContextPack, LLM providers with fallback) and
    message enrichment on the enrichment queue.
    """

    app_name: str = "llm_orchestrator"

    #: Celery broker + results: local-redis DB 11 (dialogue_queue and enrichment)
    celery_broker_url: RedisDsn = SecretStr("redis://localhost/11")
    celery_result_backend: RedisDsn = SecretStr("redis://localhost/11")
    #: shard routing cache on local-redis, DB 12
    shard_routing_redis_url: RedisDsn = SecretStr("redis://localhost/12")
    shard_0_db_url: PostgresDsn = SecretStr("postgresql://app_rw@localhost/unde_shard")
    production_db_url: PostgresDsn = SecretStr("postgresql://undeuser@localhost/unde_main")

    mood_agent_url: HttpUrl = HttpUrl("http://127.0.0.1")
    context_agent_url: HttpUrl = HttpUrl("http://127.0.0.1")
    persona_agent_url: HttpUrl = HttpUrl("http://127.0.0.1")
    voice_server_url: HttpUrl = HttpUrl("http://127.0.0.1")
    recognition_queue: str = "recognition_queue"

    celery_concurrency: int = Field(default=4, ge=1, le=64)
    celery_max_tasks_per_child: int = Field(default=500, ge=1)
    #: generate_response limits (latency target p95 < 10 s); enrichment tasks have none
    dialogue_time_limit_s: int = Field(default=30, ge=1)
    dialogue_soft_time_limit_s: int = Field(default=25, ge=1)
