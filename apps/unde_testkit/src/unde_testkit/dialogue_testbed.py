"""Everything one LLM orchestrator turn needs, real and on loopback (tests, the lab and ``bench/dialogue.py``;
never imported by app code)::

    with postgres_server(work / "pg") as pg, redis_server(work / "redis") as redis_url:
        with DialogueBed(pg, redis_url, work / "bed") as bed:
            history = bed.seed_history(user_id, 3000, planted=[PlantedMemory("My sister Amira ...")])
            bed.seed_knowledge(user_id, [("budget", {"max": 200, "currency": "EUR"})])
            rt = bed.runtime()
            try:
                result = rt.run(run_turn(rt, {"user_id": str(user_id), "message": "hi", **new_ids()}))
            finally:
                rt.close()

What it brings up:

- the shard and the Production DB, created in the given test PostgreSQL and migrated with the
  repository's migrations (``files/sql/unde_shard``, ``files/sql/unde_main``);
- the three agents as real processes (``python -m mood_agent`` / ``context_agent`` /
  ``persona_agent``, one uvicorn worker each, free ports), with env files written here: their Redis
  DBs on the given Redis (``group_vars/all/redis.yml`` ``unde_redis_db``: mood 9, persona 13,
  context 15, shard routing 12), the persona agent on the migrated shard, the context agent on the
  migrated Production DB and a WeatherAPI stand-in, the mood agent's DeepSeek / Gemini pointed at an
  :class:`~unde_testkit.llm_simulators.LLMSimulator` answering a valid mood classification; each
  agent's real service auth accepts the orchestrator (``llm_orchestrator``) and the test caller;
- the orchestrator's providers (DeepSeek, Gemini, Claude, Qwen, Cohere embed, Intelistyle) on one
  :class:`~unde_testkit.dialogue_simulators.DialogueSimulator`;
- with ``shard_dsn=`` the caller's shard instead (already migrated: e.g. the primary of an
  :class:`unde_testkit.pg_replica.ReplicatedShard`), with ``shard_members=`` as ``SHARD_MEMBERS``
  of the orchestrator and the persona agent, so their routers follow an entry naming its standby;
- a master key ring file (``{"current": 1, "keys": {"1": "<base64>"}}``, mode 0600) in the work dir.

:meth:`DialogueBed.env` gives the orchestrator's complete settings (env names) pointing at all of it,
:meth:`DialogueBed.settings` the settings object, :meth:`DialogueBed.runtime` a
:class:`llm_orchestrator.runtime.Runtime` in this process. Latencies of the stand-ins
(:meth:`DialogueBed.set_latency`, seconds): ``embedding`` (Cohere), ``llm`` (the four chat providers,
before the first text), ``mood_llm`` (the mood agent's DeepSeek and Gemini); none set means every
stand-in answers at once (the simulator's ``instant`` mode).

The agents are stopped on exit whatever happened; when the ``with`` block raised, or an agent did not
start, the tail of each agent's log is printed to stderr (:meth:`DialogueBed.logs` reads them).
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import datetime as dt
import json
import os
import random
import secrets
import sys
import uuid
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar
from zoneinfo import ZoneInfo

import httpx
import psycopg
from starlette.requests import ClientDisconnect

from unde_testkit.dialogue_simulators import DialogueSimulator, hashed_embedding
from unde_testkit.llm_simulators import LLMSimulator
from unde_testkit.service_auth import TEST_CALLER, TEST_SERVICE_TOKENS, monitoring_headers, service_auth_env
from unde_testkit.testing import LoopbackServer, PostgresHandle, free_port, running_service
from unde_testkit.testing_sql import migrate_database
from unde_testkit.weather_simulator import WEATHER_KEY, WeatherSimulator

if TYPE_CHECKING:
    from llm_orchestrator.runtime import Runtime
    from llm_orchestrator.settings import LlmOrchestratorSettings

__all__ = [
    "AGENTS",
    "MOOD_ANSWER",
    "REDIS_DB",
    "DelayedApp",
    "DialogueBed",
    "PlantedMemory",
    "SeededHistory",
    "SeededRow",
]

T = TypeVar("T")

#: Redis DB per user of local-redis (group_vars/all/redis.yml, unde_redis_db)
REDIS_DB: Mapping[str, int] = {
    "mood_agent": 9,
    "llm_orchestrator": 11,
    "shard_routing": 12,
    "persona_agent": 13,
    "context_agent": 15,
}
#: the agents a turn calls: module → the prefix of its PORT / WORKERS aliases
AGENTS: Mapping[str, str] = {"mood_agent": "MOOD", "context_agent": "CONTEXT", "persona_agent": "PERSONA"}
#: what the mood agent's LLMs answer (the JSON object mood_agent's classifier expects as message text)
MOOD_ANSWER: Mapping[str, Any] = {
    "valence": 0.7,
    "arousal": 0.5,
    "dominance": 0.55,
    "frustration": 0.1,
    "urgency": 0.2,
    "confidence": 0.85,
    "fatigue": 0.1,
    "topic": "clothes",
    "thread_break": False,
}
#: the chat providers of the orchestrator's router (DialogueSimulator names)
_CHAT = ("deepseek", "gemini", "claude", "qwen")
_LOG_TAIL = 4000


class DelayedApp:
    """An ASGI wrapper that waits ``delay_s`` (mutable) before handing each HTTP request to ``app``:
    a fixed latency for a stand-in that has no knob of its own. A client that hangs up first (the
    mood agent drops its hedged second call once the first one answered) ends the request quietly
    instead of an "Exception in ASGI application" traceback in the log."""

    def __init__(self, app: Any, delay_s: float = 0.0) -> None:
        self.app = app
        self.delay_s = delay_s

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.delay_s > 0:
            await asyncio.sleep(self.delay_s)
        try:
            await self.app(scope, receive, send)
        except ClientDisconnect:
            return


@dataclass(frozen=True)
class PlantedMemory:
    """A user message whose memory retrieval must find (seeded among the filler)."""

    text: str
    #: the precomputed episode card (memory_snippet); default: "<Mon DD>: <text>"
    snippet: str | None = None
    memory_type: str = "fact"
    confidence: float = 0.9
    #: how long ago it was said; default: spread over the history
    days_ago: float | None = None


@dataclass(frozen=True)
class SeededRow:
    id: uuid.UUID
    role: str
    created_at: dt.datetime
    snippet: str | None
    response_description: str | None


@dataclass
class SeededHistory:
    """What :meth:`DialogueBed.seed_history` wrote (rows oldest first)."""

    user_id: uuid.UUID
    conversation_id: uuid.UUID
    rows: list[SeededRow] = field(default_factory=list)
    #: ids of the planted memories, in the order given
    planted_ids: list[uuid.UUID] = field(default_factory=list)
    #: assistant rows with a response_description (artefacts)
    artifact_ids: list[uuid.UUID] = field(default_factory=list)

    def card_days(self, zone: str = "Asia/Dubai") -> dict[str, dt.date]:
        """Episode card text (memory_snippet / response_description) → its calendar day in ``zone``."""
        tz = ZoneInfo(zone)
        out: dict[str, dt.date] = {}
        for row in self.rows:
            card = row.response_description if row.role == "assistant" else row.snippet
            if card:
                out[card] = row.created_at.astimezone(tz).date()
        return out


# ------------------------------------------------------------------ a realistic filler conversation

_ITEMS = (
    "linen shirt", "white sneakers", "denim jacket", "silk scarf", "leather belt", "wool coat",
    "summer dress", "ankle boots", "chino trousers", "cotton tee", "trench coat", "loafers",
    "pleated skirt", "blazer", "cardigan", "sandals", "crossbody bag", "sunglasses",
)  # fmt: skip
_COLOURS = ("black", "beige", "navy", "olive", "cream", "burgundy", "grey", "pastel pink", "khaki")
_BRANDS = ("Zara", "Mango", "COS", "Massimo Dutti", "Uniqlo", "H&M", "Arket", "Nike")
_OCCASIONS = (
    "the office", "a dinner date", "the weekend", "a beach day", "a job interview", "brunch",
    "a concert", "travelling", "a gallery opening", "the gym",
)  # fmt: skip
_USER_TEMPLATES = (
    "Do you think a {colour} {item} works for {occasion}?",
    "I bought a {item} from {brand} yesterday, not sure about it",
    "Show me something like a {colour} {item} please",
    "What goes well with my {colour} {item}?",
    "I'm tired of my {item}, any ideas for {occasion}?",
    "Is {brand} good for a {item}?",
    "Need an outfit for {occasion}, nothing too formal",
    "Honestly the {item} from {brand} was a disappointment",
    "Can you find a {item} under 80 euros?",
    "I love how the {colour} {item} looked on me",
)  # fmt: skip
_ASSISTANT_TEMPLATES = (
    "A {colour} {item} would be lovely for {occasion}. Pair it with something simple.",
    "Good pick! {brand} does a nice {item}; I'd keep the rest neutral.",
    "For {occasion} I'd go with a {item} in {colour}, it's easy to style.",
    "Let's try a {colour} {item} with clean lines, it suits your style.",
)  # fmt: skip
_MEMORY_TYPES = ("preference", "preference", "general", "emotion", "event", "fact")


def _filler(rng: random.Random, templates: Sequence[str]) -> tuple[str, str]:
    item, colour = rng.choice(_ITEMS), rng.choice(_COLOURS)
    text = rng.choice(templates).format(
        item=item, colour=colour, brand=rng.choice(_BRANDS), occasion=rng.choice(_OCCASIONS)
    )
    return text, f"{colour} {item}"


def _vector_text(vector: Sequence[float]) -> str:
    return "[" + ",".join(f"{x:.7g}" for x in vector) + "]"


def _run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a fresh loop in a helper thread (works inside a running loop too)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


class DialogueBed:
    """The orchestrator's world on loopback (see the module docstring). ``workdir`` holds the env
    files, the agents' logs and the key ring; ``shard_db`` / ``main_db`` name the databases created in
    ``pg`` (recreated if they exist)."""

    def __init__(
        self,
        pg: PostgresHandle,
        redis_url: str,
        workdir: Path,
        *,
        latency: Mapping[str, float] | None = None,
        shard_db: str = "dialogue_shard",
        main_db: str = "dialogue_main",
        agent_log_level: str = "WARNING",
        agent_start_timeout_s: float = 60.0,
        shard_dsn: str | None = None,
        shard_members: Sequence[str] = (),
    ) -> None:
        unknown = set(latency or {}) - {"embedding", "llm", "mood_llm"}
        if unknown:
            raise ValueError(f"unknown latency keys {sorted(unknown)}; known: embedding, llm, mood_llm")
        self.pg = pg
        self.workdir = Path(workdir)
        self.redis_base = redis_url.rsplit("/", 1)[0]
        self.shard_db, self.main_db = shard_db, main_db
        self.agent_log_level = agent_log_level
        self.agent_start_timeout_s = agent_start_timeout_s
        self.providers = DialogueSimulator()
        self.mood_llm = LLMSimulator({"deepseek": dict(MOOD_ANSWER), "gemini": dict(MOOD_ANSWER)})
        self._mood_delay = DelayedApp(self.mood_llm.app)
        self.weather = WeatherSimulator()
        #: a shard brought by the caller (already migrated, e.g. unde_testkit.pg_replica's primary)
        #: instead of one migrated in ``pg``; its members are the addresses a routing entry may name
        self._given_shard_dsn = shard_dsn
        self.shard_members = list(shard_members)
        self.shard_dsn = ""
        self.main_dsn = ""
        self.key_file = self.workdir / "master_keys.json"
        self.agent_urls: dict[str, str] = {}
        self.provider_url = ""
        self._stack = ExitStack()
        self._latency = dict(latency or {})
        self.set_latency(**self._latency)

    # ------------------------------------------------------------------ life cycle

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.print_logs()
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self.print_logs()
        self.stop()

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.shard_dsn = self._given_shard_dsn or migrate_database(self.pg, self.shard_db, "unde_shard")
        self.main_dsn = migrate_database(self.pg, self.main_db, "unde_main")
        self._write_key_ring()
        stack = self._stack
        self.provider_url = stack.enter_context(LoopbackServer(self.providers.app)).url
        mood_llm_url = stack.enter_context(LoopbackServer(self._mood_delay)).url
        weather_url = stack.enter_context(LoopbackServer(self.weather.app)).url
        agent_env = {
            "mood_agent": {
                "MOOD_LLM_API_KEY": "mood-llm-test-key",
                "MOOD_FALLBACK_API_KEY": "mood-fallback-test-key",
                "DEEPSEEK_BASE_URL": mood_llm_url,
                "GEMINI_BASE_URL": mood_llm_url,
                "REDIS_URL": self._redis("mood_agent"),
            },
            "context_agent": {
                "WEATHER_API_KEY": WEATHER_KEY,
                "WEATHER_API_URL": weather_url + "/v1",
                "PRODUCTION_DB_URL": self.main_dsn,
                "REDIS_URL": self._redis("context_agent"),
            },
            "persona_agent": {
                "SHARD_0_DB_URL": self.shard_dsn,
                "SHARD_ROUTING_REDIS_URL": self._redis("shard_routing"),
                "REDIS_URL": self._redis("persona_agent"),
                **self._members_env(),
            },
        }
        for module, env in agent_env.items():
            self.agent_urls[module] = self._start_agent(module, env)

    def _members_env(self) -> dict[str, str]:
        return {"SHARD_MEMBERS": ",".join(self.shard_members)} if self.shard_members else {}

    def stop(self) -> None:
        """Stop the agents and the stand-ins (idempotent)."""
        self._stack.close()

    def _start_agent(self, module: str, values: Mapping[str, str]) -> str:
        port = free_port()
        prefix = AGENTS[module]
        env = {
            # the orchestrator is a caller of every agent; the test caller too (tests' own requests)
            **service_auth_env(callers=["llm_orchestrator", TEST_CALLER], token_of=None),
            "ENVIRONMENT": "test",
            "LOG_LEVEL": self.agent_log_level,
            "HOST": "127.0.0.1",
            f"{prefix}_PORT": str(port),
            f"{prefix}_WORKERS": "1",
            **values,
        }
        env_file = self.workdir / f"{module}.env"
        env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()), encoding="utf-8")
        os.chmod(env_file, 0o600)
        url = f"http://127.0.0.1:{port}"
        self._stack.enter_context(
            running_service(
                [sys.executable, "-m", module],
                env_file,
                url + "/health/live",
                self.log_path(module),
                timeout_s=self.agent_start_timeout_s,
            )
        )
        return url

    def _redis(self, user: str) -> str:
        return f"{self.redis_base}/{REDIS_DB[user]}"

    def _write_key_ring(self) -> None:
        ring = {"current": 1, "keys": {"1": base64.b64encode(secrets.token_bytes(32)).decode()}}
        fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(ring, out)

    # ------------------------------------------------------------------ logs and health

    def log_path(self, module: str) -> Path:
        return self.workdir / f"{module}.log"

    def logs(self) -> dict[str, str]:
        """Each agent's log so far (those that were started)."""
        return {m: self.log_path(m).read_text(errors="replace") for m in AGENTS if self.log_path(m).exists()}

    def print_logs(self, tail: int = _LOG_TAIL) -> None:
        for module, text in self.logs().items():
            print(f"----- {module} log (last {tail} chars) -----\n{text[-tail:]}", file=sys.stderr)

    def health(self) -> dict[str, int]:
        """Each agent's ``GET /health`` status code (with the monitoring token)."""
        return {
            module: httpx.get(url + "/health", headers=monitoring_headers(), timeout=5).status_code
            for module, url in self.agent_urls.items()
        }

    # ------------------------------------------------------------------ latency

    def set_latency(
        self, *, embedding: float | None = None, llm: float | None = None, mood_llm: float | None = None
    ) -> None:
        """Fixed latencies of the stand-ins (seconds); all unset or 0: every stand-in answers at once."""
        self._latency = {"embedding": embedding or 0.0, "llm": llm or 0.0, "mood_llm": mood_llm or 0.0}
        sim = self.providers
        sim.latency_s["cohere"] = self._latency["embedding"]
        for provider in _CHAT:
            sim.latency_s[provider] = self._latency["llm"]
        sim.instant = not (self._latency["embedding"] or self._latency["llm"])
        self._mood_delay.delay_s = self._latency["mood_llm"]

    @property
    def latency(self) -> dict[str, float]:
        return dict(self._latency)

    # ------------------------------------------------------------------ the orchestrator's settings

    def env(self, **overrides: str) -> dict[str, str]:
        """The orchestrator's settings as env names (``overrides``: NAME=value, case-insensitive)."""
        values = {
            "ENVIRONMENT": "test",
            "LOG_LEVEL": "WARNING",
            "METRICS_ENABLED": "false",
            **self.providers.settings_env(self.provider_url),
            "CELERY_BROKER_URL": self._redis("llm_orchestrator"),
            "CELERY_RESULT_BACKEND": self._redis("llm_orchestrator"),
            "SHARD_ROUTING_REDIS_URL": self._redis("shard_routing"),
            "SHARD_0_DB_URL": self.shard_dsn,
            "SHARD_COUNT": "1",
            "PRODUCTION_DB_URL": self.main_dsn,
            "MOOD_AGENT_URL": self.agent_urls.get("mood_agent", ""),
            "CONTEXT_AGENT_URL": self.agent_urls.get("context_agent", ""),
            "PERSONA_AGENT_URL": self.agent_urls.get("persona_agent", ""),
            "SERVICE_TOKEN": TEST_SERVICE_TOKENS["llm_orchestrator"],
            "SERVICE_MONITORING_SHA256": service_auth_env()["SERVICE_MONITORING_SHA256"],
            "MASTER_KEY_FILE": str(self.key_file),
            **self._members_env(),
        }
        values.update({k.upper(): v for k, v in overrides.items()})
        return values

    def write_env(self, path: Path, **overrides: str) -> Path:
        """:meth:`env` as a ``.env`` file (mode 0600) for ``UNDE_ENV_FILE``."""
        path = Path(path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write("".join(f"{k}={v}\n" for k, v in self.env(**overrides).items()))
        return path

    def settings(self, **overrides: str) -> LlmOrchestratorSettings:
        """The settings of :meth:`env` (no env file read; the values given win over the process env)."""
        from llm_orchestrator.settings import LlmOrchestratorSettings

        values: dict[str, Any] = {k.lower(): v for k, v in self.env(**overrides).items()}
        return LlmOrchestratorSettings(_env_file=None, **values)  # type: ignore[call-arg]

    def runtime(self, **overrides: str) -> Runtime:
        """A Runtime in this process on :meth:`settings`, with its own metrics registry and a Celery
        app built from the same settings (enrichment is queued on the bed's Redis). Close it with
        ``runtime.close()``."""
        from llm_orchestrator.celery_app import make_celery
        from llm_orchestrator.metrics import OrchestratorMetrics
        from llm_orchestrator.runtime import Runtime
        from unde_common.metrics import AppMetrics

        settings = self.settings(**overrides)
        rt = Runtime(settings, OrchestratorMetrics(AppMetrics("llm_orchestrator", process_collectors=False)))
        rt.celery = make_celery(settings)
        return rt

    # ------------------------------------------------------------------ seeding the shard

    def seed_history(
        self,
        user_id: uuid.UUID,
        n_messages: int,
        planted: Iterable[PlantedMemory | str] = (),
        *,
        months: float = 6.0,
        artifact_every: int = 25,
        seed: int = 7,
    ) -> SeededHistory:
        """Write a conversation of ``n_messages`` rows (user and assistant alternating, oldest
        ``months`` ago, the newest an hour ago) straight into the shard, as enrichment leaves it:
        user rows embedded with the Cohere stand-in's deterministic embedding
        (:func:`~unde_testkit.dialogue_simulators.hashed_embedding`), ``is_embeddable``,
        ``enrichment_status = 'done'``, a memory_type / confidence / snippet each; every
        ``artifact_every``-th assistant row is an artefact (response_description). ``planted``
        memories replace user rows spread evenly over the history (or at their ``days_ago``).
        Creates the user's conversation if needed; returns what was written."""
        rng = random.Random(seed)
        plants = [p if isinstance(p, PlantedMemory) else PlantedMemory(p) for p in planted]
        if n_messages < 2 * len(plants):
            raise ValueError(f"{n_messages} messages cannot hold {len(plants)} planted memories")
        now = dt.datetime.now(dt.UTC)
        span = dt.timedelta(days=30.44 * months)
        start = now - span - dt.timedelta(hours=1)
        step = span / max(1, n_messages - 1)
        user_slots = list(range(0, n_messages, 2))
        positions = {
            user_slots[(i + 1) * len(user_slots) // (len(plants) + 1)]: i for i in range(len(plants))
        }
        history_rows: list[tuple[Any, ...]] = []
        seeded: list[SeededRow] = []
        planted_ids: list[uuid.UUID | None] = [None] * len(plants)
        artifact_ids: list[uuid.UUID] = []
        assistant_n = 0
        for i in range(n_messages):
            created = start + step * i + dt.timedelta(seconds=rng.uniform(0, 30))
            row_id = uuid.uuid4()
            if i % 2 == 0:
                plant = plants[positions[i]] if i in positions else None
                if plant is not None:
                    if plant.days_ago is not None:
                        created = now - dt.timedelta(days=plant.days_ago)
                    content = plant.text
                    snippet = plant.snippet or f"{created:%b %d}: {plant.text}"
                    mtype, conf = plant.memory_type, plant.confidence
                    planted_ids[positions[i]] = row_id
                else:
                    content, topic = _filler(rng, _USER_TEMPLATES)
                    mtype = rng.choice(_MEMORY_TYPES)
                    conf = round(rng.uniform(0.4, 0.8), 2)
                    snippet = f"{created:%b %d}: talked about a {topic}"
                history_rows.append(
                    (
                        row_id, "user", content, _vector_text(hashed_embedding(content)), True, mtype, conf,
                        snippet, None, "done", created, "text", None, None, None, None, created,
                    )
                )  # fmt: skip
                seeded.append(SeededRow(row_id, "user", created, snippet, None))
            else:
                assistant_n += 1
                content, topic = _filler(rng, _ASSISTANT_TEMPLATES)
                description = None
                if artifact_every and assistant_n % artifact_every == 0:
                    picks = rng.sample(_ITEMS, 3)
                    description = f"Showed {len(picks)} looks ({created:%b %d}): " + ", ".join(
                        f"{rng.choice(_COLOURS)} {p} by {rng.choice(_BRANDS)}" for p in picks
                    )
                    artifact_ids.append(row_id)
                history_rows.append(
                    (
                        row_id, "assistant", content, None, False, "general", 0.5, None, description,
                        "skipped", None, None, "deepseek-v4-flash", rng.randint(700, 2500), 0, "ok", created,
                    )
                )  # fmt: skip
                seeded.append(SeededRow(row_id, "assistant", created, None, description))
        with psycopg.connect(self.shard_dsn) as conn:
            conversation_id = self._conversation(conn, user_id)
            columns = (
                "id, role, content, embedding, is_embeddable, memory_type, memory_confidence, memory_snippet,"
                " response_description, enrichment_status, enriched_at, input_type, model_used, duration_ms,"
                " memory_refs, turn_status, created_at, conversation_id"
            )
            with conn.cursor() as cur, cur.copy(f"COPY messages ({columns}) FROM STDIN") as copy:
                for values in history_rows:
                    copy.write_row((*values, conversation_id))
            conn.execute(
                "UPDATE conversations SET message_count = message_count + %s, updated_at = now()"
                " WHERE id = %s",
                (n_messages, conversation_id),
            )
        seeded.sort(key=lambda r: r.created_at)
        return SeededHistory(
            user_id=user_id,
            conversation_id=conversation_id,
            rows=seeded,
            planted_ids=[p for p in planted_ids if p is not None],
            artifact_ids=artifact_ids,
        )

    @staticmethod
    def _conversation(conn: psycopg.Connection[Any], user_id: uuid.UUID) -> uuid.UUID:
        conn.execute("INSERT INTO conversations (user_id) VALUES (%s) ON CONFLICT DO NOTHING", (user_id,))
        row = conn.execute("SELECT id FROM conversations WHERE user_id = %s", (user_id,)).fetchone()
        assert row is not None
        found: uuid.UUID = row[0]
        return found

    def conversation_id(self, user_id: uuid.UUID) -> uuid.UUID:
        """The user's conversation (created if the user has none)."""
        with psycopg.connect(self.shard_dsn) as conn:
            return self._conversation(conn, user_id)

    def seed_knowledge(
        self,
        user_id: uuid.UUID,
        facts: Iterable[tuple[str, Mapping[str, Any]] | tuple[str, Mapping[str, Any], float]],
        *,
        source: SeededHistory | None = None,
    ) -> list[uuid.UUID]:
        """Store ``facts`` — ``(knowledge_type, data)`` or ``(knowledge_type, data, confidence)`` —
        encrypted with the bed's key ring through :func:`llm_orchestrator.knowledge.store_fact`
        (evidence: a user message of ``source`` when given); returns the row ids."""
        return _run_sync(self.aseed_knowledge(user_id, facts, source=source))

    async def aseed_knowledge(
        self,
        user_id: uuid.UUID,
        facts: Iterable[tuple[str, Mapping[str, Any]] | tuple[str, Mapping[str, Any], float]],
        *,
        source: SeededHistory | None = None,
    ) -> list[uuid.UUID]:
        """:meth:`seed_knowledge` on the caller's event loop."""
        from llm_orchestrator.crypto import MasterKeyRing
        from llm_orchestrator.knowledge import store_fact

        ring = MasterKeyRing.load(self.key_file)
        evidence = [r.id for r in source.rows if r.role == "user"] if source else []
        ids: list[uuid.UUID] = []
        async with await psycopg.AsyncConnection.connect(self.shard_dsn, autocommit=True) as conn:
            for n, fact in enumerate(facts):
                knowledge_type, data = fact[0], fact[1]
                confidence = float(fact[2]) if len(fact) > 2 else 0.8
                ids.append(
                    await store_fact(
                        conn,
                        user_id,
                        ring,
                        knowledge_type,
                        data,
                        confidence=confidence,
                        source_message_id=evidence[n % len(evidence)] if evidence else None,
                        source_conversation_id=source.conversation_id if source else None,
                    )
                )
        return ids
