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
from unde_common.shard_router import ShardRoutingSettings


class LlmOrchestratorSettings(
    ProviderSettings,
    KeySettings,
    ContextPackSettings,
    CeleryWorkerSettings,
    DbPoolSettings,
    HttpClientSettings,
    ShardRoutingSettings,
):
    """Dialogue: generate_response on dialogue_queue (ContextPack, LLM providers with fallback) and
    message enrichment on the enrichment queue.
    """

    app_name: str = "llm_orchestrator"

    #: Celery broker + results: local-redis DB 11 (dialogue_queue and enrichment)
    celery_broker_url: RedisDsn = SecretStr("redis://localhost/11")
    celery_result_backend: RedisDsn = SecretStr("redis://localhost/11")
    production_db_url: PostgresDsn = SecretStr("postgresql://undeuser@localhost/unde_main")

    mood_agent_url: HttpUrl = HttpUrl("http://127.0.0.1")
    context_agent_url: HttpUrl = HttpUrl("http://127.0.0.1")
    persona_agent_url: HttpUrl = HttpUrl("http://127.0.0.1")
    voice_server_url: HttpUrl = HttpUrl("http://127.0.0.1")
    #: agent budgets of a turn (seconds): past them the last frame (or the default) is used
    mood_timeout_s: float = Field(default=0.3, gt=0, le=5)
    context_timeout_s: float = Field(default=0.15, gt=0, le=5)
    persona_timeout_s: float = Field(default=0.3, gt=0, le=5)
    persona_feedback_timeout_s: float = Field(default=2.0, gt=0, le=30)
    persona_contract_version: str = Field(default="0.7.0", pattern=r"^\d+\.\d+\.\d+$")
    #: how long the last mood/context frame of a user stays usable as a fallback (orch:frame:*)
    frame_ttl_s: int = Field(default=3600, ge=1)

    #: recognition (photo intents): producer of recognition_queue on push Redis DB 6; unset = no
    #: recognition from the dialogue (a photo turn is answered without it, marked degraded)
    recognition_broker_url: RedisDsn | None = None
    recognition_queue: str = "recognition_queue"
    #: the longest a turn waits for recognition (spec: .get(timeout=15)), within the turn's deadline
    recognition_timeout_s: float = Field(default=15, gt=0, le=25)
    #: catalog context (Production DB): products per turn, and the query's budget
    catalog_products: int = Field(default=5, ge=0, le=50)
    catalog_timeout_s: float = Field(default=0.1, gt=0, le=5)
    #: margin kept under the soft time limit for storing the reply (seconds)
    dialogue_store_margin_s: float = Field(default=1.5, ge=0, le=10)

    #: publish each finished sentence of an answer on orch:stream:<assistant_message_id> (the
    #: broker Redis) while the LLM streams; one publish's limit (past it the stream is dropped)
    stream_sentences: bool = True
    stream_publish_timeout_s: float = Field(default=0.5, gt=0, le=5)

    celery_concurrency: int = Field(default=4, ge=1, le=64)
    celery_max_tasks_per_child: int = Field(default=500, ge=1)
    #: generate_response limits (latency target p95 < 10 s); enrichment tasks have none
    dialogue_time_limit_s: int = Field(default=30, ge=1)
    dialogue_soft_time_limit_s: int = Field(default=25, ge=1)
