"""Benchmark of the user entry (``make bench-entry``): the gateway's own overhead on a chat, the time to
the first audio chunk with streaming, 100 concurrent voice WebSockets, and the failover replay drill.

Starts, on 127.0.0.1 only (no WAN in between: loopback): a throwaway PostgreSQL (the Production DB),
a Redis, the shard as a :class:`unde_testkit.pg_replica.ReplicatedShard` (primary + streaming hot
standby, asynchronous as Patroni runs it, its routing entry ``shard:0`` in Redis DB 12 as the Patroni
callback writes it), :class:`unde_testkit.gateway_testbed.GatewayBed` on that shard (the mood /
context / persona agents as processes, a real orchestrator Celery worker on dialogue_queue, the
provider stand-ins, the gateway under uvicorn), and the voice server (``python -m voice``) on an
:class:`unde_testkit.elevenlabs_simulator.ElevenLabsSimulator`. The client is this process (httpx,
websockets), behaving as the app does. Phases (bounded loops, one JSON object on stdout, progress
on stderr):

- ``gateway_overhead_ms``: ``--chats`` JSON chats, ``--concurrency`` at once and again one at a
  time, every provider answering at once: client latency minus the orchestrator's own
  ``duration_ms`` of the turn (goal p95 <= 5 ms); the same difference for ``generate_response``
  sent with Celery without the gateway, and HTTP / trivial Celery round trips, split it
  (``duration_ms`` stops before the reply is stored, so that write counts as overhead too);
- ``first_audio_ms``: ``--audio-turns`` turns with an LLM whose first sentence arrives at
  ``--llm-first-sentence-s`` (0.3) and whole answer at ``--llm-total-s`` (1.0) after the call, and a
  TTS whose first byte comes ``--tts-first-byte-s`` (0.3) after its request: ``POST /api/v1/chat``
  with ``Accept: text/event-stream``; on the first ``sentence`` event the client sends it over the
  open voice WebSocket and stops the clock at the first binary chunk (goal p95 <= 1000 ms). Each
  turn's answer is new, so the voice server's phrase cache never answers;
- ``ws_concurrent``: ``--ws-streams`` (100) WebSockets opened and held at once, then each sends a
  sentence and reads its audio to the end frame: completed, errors, time to the first chunk (the
  voice server passes at most ``ELEVENLABS_MAX_CONCURRENCY`` streams to ElevenLabs at once);
- ``failover_replay``: chats offered at ``--rate`` per second for ``--drill-seconds`` to
  ``--drill-users`` users (a user sends the next message only after the answer to the last), every
  provider instant; ``--lag-window-s`` before the kill the standby stops receiving WAL (the WAN's
  replication lag), at ``--kill-at`` s the shard's primary is SIGKILLed, ``--outage-s`` later
  (Patroni's detection; default 0) the standby is promoted and ``shard:0`` rewritten. The client
  retries a 503 / 429 / timeout / connection error with the same message ids after Retry-After,
  keeps each user's acknowledged pairs (the app's buffer: the last 10 pairs and every pair for 60 s
  after its ack), and once the routing entry names the new primary each user with buffered pairs
  calls ``POST /api/v1/verify-and-replay`` (its buffered ids as ``recent_confirmed_ids``, then the
  pairs the shard says it lost, 429/503 honoured); answers that arrived after a user's verification
  for messages sent before it are verified again as unconfirmed pairs. At the end: acknowledged pairs
  missing on the new primary (before the replay and after it; goal 0 after), messages stored twice
  (goal 0), what the users saw as errors, the rate served.

    .venv/bin/python bench/entry.py [--quick] [--chats 200] [--drill-seconds 60] [--rate 100]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import inspect
import itertools
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from llm_orchestrator.agents import DEFAULT_VOICE_PARAMS

#: what the app sends before any answer told it the persona's voice (the orchestrator's default)
VOICE_PARAMS: dict[str, Any] = dict(DEFAULT_VOICE_PARAMS)

REPO = Path(__file__).resolve().parents[1]
LOCATION = {"lat": 25.1181, "lng": 55.2006, "mall_id": "mall-of-the-emirates"}
CHAT_PROVIDERS = ("deepseek", "gemini", "claude", "qwen")
GOALS = {
    "gateway_overhead_p95_ms": 5.0,
    "first_audio_p95_ms": 1000.0,
    "lost_after_replay": 0,
    "duplicates": 0,
}
#: the app's buffer (spec 02 "Client-Side Verify-and-Replay"): 10 pairs + confirmed pairs for 60 s
BUFFER_PAIRS = 10
BUFFER_S = 60.0
REPLAY_TRIES = 3
#: one request: at most 20 recent_confirmed_ids (10 pairs) and 20 pairs (the gateway's
#: REPLAY_MAX_CONFIRMED_IDS / REPLAY_MAX_PAIRS defaults)
MAX_CONFIRMED_PAIRS = 10
MAX_UNCONFIRMED_PAIRS = 10
#: ``--quick``: a smoke run of every phase in about two minutes
QUICK: dict[str, Any] = {
    "chats": 30,
    "warmup": 5,
    "audio_turns": 5,
    "ws_streams": 20,
    "drill_seconds": 10.0,
    "rate": 10.0,
    "kill_at": 4.0,
    "drill_users": 40,
    "grace_s": 15.0,
}
SAYS = (
    "What should I wear to the office tomorrow?",
    "Do you think a beige trench coat goes with white sneakers?",
    "I need something for a dinner date on Friday",
    "Show me a summer dress under 100 euros",
    "Which colour suits me better, navy or olive?",
    "Is COS good for basics?",
    "What goes well with a burgundy blazer?",
)


def pct(values: Sequence[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return round(ordered[k], 3)


def summary(values: Sequence[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50": pct(values, 50),
        "p95": pct(values, 95),
        "p99": pct(values, 99),
        "mean": round(statistics.fmean(values), 3) if values else None,
        "max": round(max(values), 3) if values else None,
    }


def progress(msg: str) -> None:
    print(f"[bench-entry {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def retry_after(response: httpx.Response | None, default: float = 1.0) -> float:
    if response is None:
        return default
    try:
        return max(0.05, float(response.headers.get("retry-after", default)))
    except ValueError:
        return default


# ---------------------------------------------------------------- the world


@dataclass
class World:
    bed: Any
    shard: Any
    redis_url: str
    voice_ws: str
    tts: Any
    tokens: dict[uuid.UUID, str] = field(default_factory=dict)

    @property
    def routing_url(self) -> str:
        from unde_testkit.dialogue_testbed import REDIS_DB

        return self.redis_url.rsplit("/", 1)[0] + f"/{REDIS_DB['shard_routing']}"

    def users(self, n: int) -> list[uuid.UUID]:
        """``n`` new users in routing_table, each with an access token."""
        out = []
        settings = self.bed.settings()
        from api_gateway.auth import issue_tokens

        for _ in range(n):
            user = self.bed.seed_user()
            self.tokens[user] = str(issue_tokens(settings, user, 0)["access_token"])
            out.append(user)
        return out

    def headers(self, user: uuid.UUID) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    def write_routing(self) -> dict[str, str]:
        """``shard:0`` naming the current primary, as the Patroni callback writes it."""
        import redis

        entry = self.shard.routing_entry()
        client = redis.Redis.from_url(self.routing_url)
        try:
            client.hset("shard:0", mapping=dict(entry))
        finally:
            client.close()
        return dict(entry)


def public_keys(signing_keys_json: str) -> str:
    """The gateway's ``JWT_SIGNING_KEYS`` (private PEMs) as the voice server's ``JWT_PUBLIC_KEYS``."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key

    out = {}
    for kid, pem in json.loads(signing_keys_json).items():
        key = load_pem_private_key(pem.encode(), password=None)
        out[kid] = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    return json.dumps(out)


def start_voice(stack: ExitStack, work: Path, redis_url: str, gateway_env: dict[str, str]) -> tuple[str, Any]:
    from unde_testkit.elevenlabs_simulator import ELEVENLABS_KEY, ELEVENLABS_VOICE, ElevenLabsSimulator
    from unde_testkit.service_auth import service_auth_env
    from unde_testkit.testing import LoopbackServer, free_port, running_service

    sim = ElevenLabsSimulator()
    sim_url = stack.enter_context(LoopbackServer(sim.app)).url
    http_port, ws_port = free_port(), free_port()
    env = {
        "ENVIRONMENT": "test",
        "LOG_LEVEL": "WARNING",
        "HOST": "127.0.0.1",
        "VOICE_HTTP_PORT": str(http_port),
        "VOICE_WS_PORT": str(ws_port),
        "ELEVENLABS_API_KEY": ELEVENLABS_KEY,
        "ELEVENLABS_VOICE_ID": ELEVENLABS_VOICE,
        "ELEVENLABS_BASE_URL": sim_url,
        "REDIS_URL": redis_url.rsplit("/", 1)[0] + "/10",
        "JWT_PUBLIC_KEYS": public_keys(gateway_env["JWT_SIGNING_KEYS"]),
        **{k: v for k, v in service_auth_env().items() if k == "SERVICE_MONITORING_SHA256"},
    }
    env_file = work / "voice.env"
    fd = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("".join(f"{k}={v}\n" for k, v in env.items()))
    stack.enter_context(
        running_service(
            [sys.executable, "-m", "voice"],
            env_file,
            f"http://127.0.0.1:{http_port}/health/live",
            work / "voice.log",
            timeout_s=60,
        )
    )
    return f"ws://127.0.0.1:{ws_port}/stream", sim


def gateway_bed(pg: Any, redis_url: str, work: Path, shard: Any, worker_concurrency: int) -> Any:
    """GatewayBed on the replicated shard (its members allowed to every router)."""
    from unde_testkit.dialogue_testbed import DialogueBed
    from unde_testkit.gateway_testbed import GatewayBed

    members = ",".join(shard.shard_members)
    params = inspect.signature(GatewayBed).parameters
    gw_env = {"SHARD_MEMBERS": members}
    if "shard_dsn" in params:
        return GatewayBed(
            pg,
            redis_url,
            work,
            worker_concurrency=worker_concurrency,
            gateway_env=gw_env,
            shard_dsn=shard.primary_dsn,
            shard_members=shard.shard_members,
        )
    bed = GatewayBed(pg, redis_url, work, worker_concurrency=worker_concurrency, gateway_env=gw_env)
    bed.dialogue = DialogueBed(
        pg, redis_url, Path(work) / "dialogue", shard_dsn=shard.primary_dsn, shard_members=shard.shard_members
    )
    return bed


# ---------------------------------------------------------------- chats


def chat_body(message: str, conversation_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "message": message,
        "user_message_id": str(uuid.uuid4()),
        "assistant_message_id": str(uuid.uuid4()),
        "location": LOCATION,
    }
    if conversation_id:
        body["conversation_id"] = conversation_id
    return body


async def overhead_run(w: World, n: int, concurrency: int, warmup: int) -> dict[str, Any]:
    """``n`` JSON chats (after ``warmup``), ``concurrency`` at once, one message of a user at a time."""
    users = w.users(max(concurrency, (n + warmup) // 5 + 1))  # <= 5 chats per user: under the chat bucket
    lat: list[float] = []
    orch: list[float] = []
    over: list[float] = []
    statuses: Counter[str] = Counter()
    conv: dict[uuid.UUID, str] = {}
    jobs = list(range(n + warmup))
    next_job = 0

    async def worker(client: httpx.AsyncClient, lane: int) -> None:
        nonlocal next_job
        while next_job < len(jobs):
            i = next_job
            next_job += 1
            # users are split between the lanes: a user never has two messages in flight
            user = users[(i // concurrency * concurrency + lane) % len(users)]
            body = chat_body(random.choice(SAYS), conv.get(user))
            started = time.perf_counter()
            r = await client.post("/api/v1/chat", json=body, headers=w.headers(user))
            ms = (time.perf_counter() - started) * 1000
            statuses[str(r.status_code)] += 1
            if r.status_code != 200:
                continue
            data = r.json()
            conv[user] = data.get("conversation_id") or conv.get(user, "")
            if i < warmup or data.get("duration_ms") is None:
                continue
            lat.append(ms)
            orch.append(float(data["duration_ms"]))
            over.append(ms - float(data["duration_ms"]))

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=w.bed.url, timeout=30, limits=limits) as client:
        await asyncio.gather(*(worker(client, lane) for lane in range(concurrency)))
    return {
        "chats": len(over),
        "concurrency": concurrency,
        "users": len(users),
        "overhead_ms": summary(over),
        "client_latency_ms": summary(lat),
        "orchestrator_duration_ms": summary(orch),
        "statuses": dict(statuses),
    }


def transport_baseline(w: World, n: int = 50) -> dict[str, Any]:
    """What the overhead is made of, without the gateway: an HTTP round trip to the gateway
    (``GET /health/live``), a Celery round trip through the orchestrator's broker, worker and
    result backend (the built-in ``celery.accumulate`` task on dialogue_queue), and
    ``generate_response`` sent directly (Celery's ``send_task`` + result ``get``): its round trip
    minus the turn's ``duration_ms`` is what the task wrapper and Celery add without the gateway."""
    from celery import Celery

    http: list[float] = []
    with httpx.Client(base_url=w.bed.url, timeout=10) as client:
        for _ in range(n + 5):
            started = time.perf_counter()
            client.get("/health/live")
            http.append((time.perf_counter() - started) * 1000)
    broker = w.bed.dialogue.env()["CELERY_BROKER_URL"]
    app = Celery("bench_entry", broker=broker, backend=broker)
    celery: list[float] = []
    try:
        for _ in range(n + 5):
            started = time.perf_counter()
            app.send_task("celery.accumulate", args=(1,), queue="dialogue_queue").get(timeout=10)
            celery.append((time.perf_counter() - started) * 1000)
        # the orchestrator's own task sent directly (no gateway): its round trip minus duration_ms
        user = w.users(1)[0]
        direct: list[float] = []
        conversation: str | None = None
        for _ in range(n + 5):
            kwargs = {
                "user_id": str(user),
                "message": random.choice(SAYS),
                "input_type": "text",
                "explicit_reply_to": None,
                "conversation_id": conversation,
                "user_message_id": str(uuid.uuid4()),
                "assistant_message_id": str(uuid.uuid4()),
                "location": LOCATION,
            }
            started = time.perf_counter()
            out = app.send_task(
                "llm_orchestrator.generate_response", kwargs=kwargs, queue="dialogue_queue"
            ).get(timeout=30)
            ms = (time.perf_counter() - started) * 1000
            conversation = out.get("conversation_id") or conversation
            direct.append(ms - float(out.get("duration_ms") or 0))
    finally:
        app.close()
    return {
        "http_health_rtt_ms": summary(http[5:]),
        "celery_task_rtt_ms": summary(celery[5:]),
        "generate_response_direct_minus_duration_ms": summary(direct[5:]),
    }


async def overhead_phase(w: World, n: int, concurrency: int, warmup: int, workers: int) -> dict[str, Any]:
    w.bed.dialogue.set_latency()  # every provider instant
    baseline = await asyncio.get_running_loop().run_in_executor(None, transport_baseline, w)
    sequential = await overhead_run(w, n, 1, warmup)
    concurrent = await overhead_run(w, n, concurrency, warmup)
    s = concurrent["overhead_ms"]
    direct = baseline["generate_response_direct_minus_duration_ms"]
    seq = sequential["overhead_ms"]
    # duration_ms stops before the orchestrator stores the reply (dialogue.run_turn step 5), so
    # "client minus duration_ms" also counts the reply's write and Celery; the same difference of
    # the task sent without the gateway takes them out again (an estimate: percentiles of two runs)
    own = {
        k: round(seq[k] - direct[k], 3) if seq[k] is not None and direct[k] is not None else None
        for k in ("p50", "p95", "p99")
    }
    return {
        "what": "client latency of POST /api/v1/chat minus the orchestrator's duration_ms of the turn",
        "llm": "instant (every provider answers at once)",
        "orchestrator_worker_processes": workers,
        "p50": s["p50"],
        "p95": s["p95"],
        "p99": s["p99"],
        "concurrent": concurrent,
        "sequential": sequential,
        "baseline_without_gateway": baseline,
        "gateway_only_estimate_ms": own,
        "met_gateway_only_estimate": own["p95"] is not None
        and own["p95"] <= GOALS["gateway_overhead_p95_ms"],
        "goal_ms": GOALS["gateway_overhead_p95_ms"],
        "met": s["p95"] is not None and s["p95"] <= GOALS["gateway_overhead_p95_ms"],
        "met_sequential": sequential["overhead_ms"]["p95"] is not None
        and sequential["overhead_ms"]["p95"] <= GOALS["gateway_overhead_p95_ms"],
    }


# ---------------------------------------------------------------- streaming and first audio


def pace_llm(w: World, first_sentence_s: float, total_s: float, words: int = 24) -> dict[str, Any]:
    """Every chat provider streams ``words`` words whose first sentence (two words) is complete at
    ``first_sentence_s`` and the last piece at ``total_s`` after the request: the simulator's fixed
    latency before the first text, then its ``trickle`` pacing between the pieces."""
    sim = w.bed.dialogue.providers
    # pieces after the first: role/keep-alive (1), the words, finish + usage + [DONE] (3)
    first_at = 2 + 1  # the piece after the first sentence's last word: the splitter has seen its end
    last_at = 1 + words + 3
    interval = (total_s - first_sentence_s) / max(1, last_at - first_at)
    before = max(0.0, first_sentence_s - first_at * interval)
    for provider in CHAT_PROVIDERS:
        sim.latency_s[provider] = before
        sim.fault(provider, "trickle", interval_s=interval)
    sim.latency_s["cohere"] = 0.0
    sim.instant = False
    return {"latency_before_first_text_s": round(before, 4), "piece_interval_s": round(interval, 4)}


def unpace_llm(w: World) -> None:
    sim = w.bed.dialogue.providers
    for provider in CHAT_PROVIDERS:
        sim.fault(provider, None)
    w.bed.dialogue.set_latency()


def set_answer(w: World, n: int, words: int = 24) -> str:
    """A new answer for every provider: a two-word first sentence, then ``words - 2`` more."""
    filler = [
        "I",
        "would",
        "pair",
        "the",
        "navy",
        "blazer",
        "with",
        "cream",
        "trousers",
        "and",
        "white",
        "leather",
        "sneakers,",
        "then",
        "add",
        "a",
        "slim",
        "brown",
        "belt",
        "and",
        "a",
        "light",
        "scarf",
        "for",
        "the",
        "evening",
        "breeze",
        "tonight",
    ]
    rest = " ".join(filler[: max(1, words - 2)])
    text = f"Lovely choice{n}! {rest[0].upper()}{rest[1:]}."
    for provider in CHAT_PROVIDERS:
        w.bed.dialogue.providers.answer[provider] = text
    return text


async def sse_events(response: httpx.Response) -> Any:
    event, data = "message", list[str]()
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


@dataclass
class AudioTurn:
    first_sentence_ms: float | None = None
    first_audio_ms: float | None = None
    done_ms: float | None = None
    cached: bool = False
    error: str | None = None
    answer: dict[str, Any] = field(default_factory=dict)


async def audio_turn(
    client: httpx.AsyncClient, ws: Any, headers: dict[str, str], body: dict[str, Any], voice: dict[str, Any]
) -> AudioTurn:
    """One streamed turn as the app plays it: the first ``sentence`` event goes to the voice
    WebSocket at once; the clock runs from the POST to the first binary frame."""
    out = AudioTurn()
    started = time.perf_counter()
    reader: asyncio.Task[None] | None = None
    end_frame: dict[str, Any] = {}

    async def read_audio() -> None:
        nonlocal end_frame
        async for frame in ws:
            if isinstance(frame, bytes):
                if out.first_audio_ms is None:
                    out.first_audio_ms = (time.perf_counter() - started) * 1000
            else:
                end_frame = json.loads(frame)
                return

    sse_headers = {**headers, "Accept": "text/event-stream"}
    async with client.stream("POST", "/api/v1/chat", json=body, headers=sse_headers) as r:
        if r.status_code != 200:
            await r.aread()
            out.error = f"chat_{r.status_code}"
            return out
        async for kind, data in sse_events(r):
            if kind == "sentence" and reader is None:
                out.first_sentence_ms = (time.perf_counter() - started) * 1000
                request = {"text": data["text"], "voice_params": voice, "previous_text": ""}
                await ws.send(json.dumps(request))
                reader = asyncio.create_task(read_audio())
            elif kind == "done":
                out.done_ms = (time.perf_counter() - started) * 1000
                out.answer = data
            elif kind == "error":
                out.error = f"sse_{data.get('error')}"
    if reader is None:
        out.error = out.error or "no_sentence"
        return out
    try:
        await asyncio.wait_for(reader, 15)
    except TimeoutError:
        reader.cancel()
        out.error = "audio_timeout"
    if end_frame.get("type") == "error":
        out.error = f"ws_{end_frame.get('code')}"
    out.cached = bool(end_frame.get("cached"))
    if out.first_audio_ms is None:
        out.error = out.error or "no_audio"
    return out


async def first_audio_phase(
    w: World, turns: int, first_sentence_s: float, total_s: float, tts_first_byte_s: float, warmup: int = 2
) -> dict[str, Any]:
    import websockets

    pacing = pace_llm(w, first_sentence_s, total_s)
    w.tts.first_byte_delay_s = tts_first_byte_s
    users = w.users(max(1, (turns + warmup) // 5 + 1))
    first_audio: list[float] = []
    first_sentence: list[float] = []
    done: list[float] = []
    cached = 0
    errors: Counter[str] = Counter()
    conv: dict[uuid.UUID, str] = {}
    #: the voice of the user's last answer (the sentence events carry none; the app keeps the last)
    voice: dict[uuid.UUID, dict[str, Any]] = {}
    try:
        async with httpx.AsyncClient(base_url=w.bed.url, timeout=30) as client:
            for n in range(turns + warmup):
                user = users[n % len(users)]
                set_answer(w, n)
                async with websockets.connect(
                    w.voice_ws, additional_headers=w.headers(user), max_size=None, open_timeout=10
                ) as ws:
                    body = chat_body(random.choice(SAYS), conv.get(user))
                    t = await audio_turn(client, ws, w.headers(user), body, voice.get(user, VOICE_PARAMS))
                if t.answer:
                    conv[user] = t.answer.get("conversation_id") or conv.get(user, "")
                    voice[user] = t.answer.get("voice_params") or voice.get(user, VOICE_PARAMS)
                if n < warmup:
                    continue
                if t.error:
                    errors[t.error] += 1
                cached += t.cached
                if t.first_sentence_ms is not None:
                    first_sentence.append(t.first_sentence_ms)
                if t.first_audio_ms is not None:
                    first_audio.append(t.first_audio_ms)
                if t.done_ms is not None:
                    done.append(t.done_ms)
    finally:
        unpace_llm(w)
        w.tts.first_byte_delay_s = 0.0
    s = summary(first_audio)
    return {
        "turns": turns,
        "llm_stand_in": {"first_sentence_s": first_sentence_s, "total_s": total_s, **pacing},
        "tts_first_byte_s": tts_first_byte_s,
        "p50": s["p50"],
        "p95": s["p95"],
        "first_audio_ms": s,
        "first_sentence_event_ms": summary(first_sentence),
        "sse_done_ms": summary(done),
        "served_from_phrase_cache": cached,
        "errors": dict(errors),
        "goal_ms": GOALS["first_audio_p95_ms"],
        "met": s["p95"] is not None and s["p95"] <= GOALS["first_audio_p95_ms"],
        "spec_without_streaming_ms": [1500, 2500],
    }


async def ws_phase(w: World, streams: int, tts_first_byte_s: float) -> dict[str, Any]:
    import websockets

    w.tts.first_byte_delay_s = tts_first_byte_s
    user = w.users(1)[0]
    opened: list[Any] = []
    errors: Counter[str] = Counter()
    first: list[float] = []
    total: list[float] = []
    ok = 0
    held_at_once = 0
    try:

        async def open_one() -> Any:
            try:
                return await websockets.connect(
                    w.voice_ws, additional_headers=w.headers(user), max_size=None, open_timeout=20
                )
            except Exception as exc:
                errors[f"open_{type(exc).__name__}"] += 1
                return None

        conns = await asyncio.gather(*(open_one() for _ in range(streams)))
        opened = [c for c in conns if c is not None]
        held_at_once = len(opened)
        stamp = uuid.uuid4().hex[:6]

        async def run(n: int, ws: Any) -> bool:
            text = f"Stream {n} of run {stamp}: the navy blazer works with cream trousers."
            started = time.perf_counter()
            got_first: float | None = None
            try:
                await ws.send(json.dumps({"text": text, "voice_params": VOICE_PARAMS, "previous_text": ""}))
                async with asyncio.timeout(60):
                    async for frame in ws:
                        if isinstance(frame, bytes):
                            got_first = got_first or time.perf_counter()
                            continue
                        msg = json.loads(frame)
                        if msg.get("type") == "end":
                            break
                        errors[f"ws_{msg.get('code')}"] += 1
                        return False
            except Exception as exc:
                errors[f"stream_{type(exc).__name__}"] += 1
                return False
            if got_first is None:
                errors["no_audio"] += 1
                return False
            first.append((got_first - started) * 1000)
            total.append((time.perf_counter() - started) * 1000)
            return True

        results = await asyncio.gather(*(run(n, ws) for n, ws in enumerate(opened)))
        ok = sum(results)
    finally:
        for ws in opened:
            with contextlib.suppress(Exception):
                await ws.close()
        w.tts.first_byte_delay_s = 0.0
    return {
        "streams": streams,
        "held_at_once": held_at_once,
        "completed_ok": ok,
        "errors": dict(errors),
        "tts_first_byte_s": tts_first_byte_s,
        "first_chunk_ms": summary(first),
        "p95_first_chunk_ms": pct(first, 95),
        "stream_total_ms": summary(total),
        "note": "the voice server passes ELEVENLABS_MAX_CONCURRENCY (default 20) streams to ElevenLabs"
        " at once",
    }


# ---------------------------------------------------------------- failover drill


@dataclass
class Pair:
    user_message_id: str
    assistant_message_id: str
    user_text: str
    assistant_text: str
    user_at: str
    assistant_at: str
    acked_mono: float
    voice_params: dict[str, Any] | None = None
    #: when the message was first sent (its retries keep the ids)
    sent_mono: float = 0.0


@dataclass
class AppUser:
    user_id: uuid.UUID
    conversation_id: str | None = None
    busy: bool = False
    pairs: list[Pair] = field(default_factory=list)
    sent: int = 0
    #: when the reconnect's verify-and-replay took its buffer (None: not yet)
    verified_at: float | None = None


@dataclass
class Drill:
    started: float = 0.0
    killed_at: float | None = None
    promoted_at: float | None = None
    routed_at: float | None = None
    offered: int = 0
    skipped_busy: int = 0
    acked: int = 0
    attempts: int = 0
    retries: Counter[str] = field(default_factory=Counter)
    user_errors: Counter[str] = field(default_factory=Counter)
    failed_answers: int = 0
    ack_latency_ms: list[float] = field(default_factory=list)
    ack_times: list[float] = field(default_factory=list)
    first_error_after_kill: float | None = None
    first_ack_after_kill: float | None = None
    round_at: float | None = None
    replay: Counter[str] = field(default_factory=Counter)


async def drill_chat(
    client: httpx.AsyncClient, w: World, d: Drill, u: AppUser, text: str, give_up_at: float
) -> None:
    """One message as the app sends it: retried with the same ids until answered or ``give_up_at``."""
    body = chat_body(text, u.conversation_id)
    user_at = dt.datetime.now(dt.UTC).isoformat()
    started = time.monotonic()
    try:
        while True:
            d.attempts += 1
            response: httpx.Response | None = None
            reason = ""
            try:
                response = await client.post("/api/v1/chat", json=body, headers=w.headers(u.user_id))
                if response.status_code == 200:
                    data = response.json()
                    now = time.monotonic()
                    d.acked += 1
                    d.ack_times.append(now - d.started)
                    d.ack_latency_ms.append((now - started) * 1000)
                    if d.killed_at is not None and d.first_ack_after_kill is None and now > d.killed_at:
                        d.first_ack_after_kill = now
                    if data.get("failed"):
                        d.failed_answers += 1
                    u.conversation_id = data.get("conversation_id") or u.conversation_id
                    u.pairs.append(
                        Pair(
                            body["user_message_id"],
                            body["assistant_message_id"],
                            text,
                            str(data.get("text") or ""),
                            user_at,
                            dt.datetime.now(dt.UTC).isoformat(),
                            now,
                            data.get("voice_params"),
                            started,
                        )
                    )
                    return
                if response.status_code in (429, 502, 503, 504):
                    reason = str(response.status_code)
                else:
                    d.user_errors[f"http_{response.status_code}"] += 1
                    return
            except httpx.TimeoutException:
                reason = "timeout"
            except httpx.TransportError as exc:
                reason = type(exc).__name__
            d.retries[reason] += 1
            now = time.monotonic()
            if d.killed_at is not None and d.first_error_after_kill is None and now > d.killed_at:
                d.first_error_after_kill = now
            wait = min(5.0, retry_after(response)) * random.uniform(0.8, 1.2)
            if now + wait > give_up_at:
                d.user_errors[f"gave_up_after_{reason}"] += 1
                return
            await asyncio.sleep(wait)
    finally:
        u.busy = False


def replay_pair(p: Pair) -> dict[str, Any]:
    assistant: dict[str, Any] = {
        "id": p.assistant_message_id,
        "text": p.assistant_text or "…",
        "created_at": p.assistant_at,
    }
    if p.voice_params:
        assistant["voice_params"] = p.voice_params
    return {
        "user_message": {"id": p.user_message_id, "text": p.user_text, "created_at": p.user_at},
        "assistant_message": assistant,
    }


async def reconnect_verify(client: httpx.AsyncClient, w: World, d: Drill, u: AppUser) -> None:
    """The reconnect after a failover: the whole buffer verified by id, 10 pairs per request."""
    now = time.monotonic()
    buffer = app_buffer(u, now)
    u.verified_at = now
    for n in range(0, len(buffer), MAX_CONFIRMED_PAIRS):
        await verify_and_replay(client, w, d, u, confirmed=buffer[n : n + MAX_CONFIRMED_PAIRS])
    d.replay["users_verified"] += 1


async def verify_and_replay(
    client: httpx.AsyncClient,
    w: World,
    d: Drill,
    u: AppUser,
    unconfirmed: Sequence[Pair] = (),
    confirmed: Sequence[Pair] = (),
) -> None:
    """One verify-and-replay exchange: ``unconfirmed`` pairs sent as they are, ``confirmed`` pairs
    by id (``recent_confirmed_ids``); pairs the shard says it lost are replayed from the buffer."""
    send = [replay_pair(p) for p in unconfirmed]
    buffer = [*unconfirmed, *confirmed]
    if not buffer or not u.conversation_id:
        return
    by_id = {}
    for p in buffer:
        by_id[p.user_message_id] = p
        by_id[p.assistant_message_id] = p
    body: dict[str, Any] = {
        "conversation_id": u.conversation_id,
        "pairs": send,
        "recent_confirmed_ids": [i for p in confirmed for i in (p.user_message_id, p.assistant_message_id)],
    }
    for _ in range(REPLAY_TRIES + 3):
        d.replay["requests"] += 1
        try:
            r = await client.post("/api/v1/verify-and-replay", json=body, headers=w.headers(u.user_id))
        except httpx.HTTPError as exc:
            d.replay[f"error_{type(exc).__name__}"] += 1
            await asyncio.sleep(1.0)
            continue
        if r.status_code in (429, 503):
            d.replay[f"status_{r.status_code}"] += 1
            await asyncio.sleep(min(5.0, retry_after(r)))
            continue
        if r.status_code != 200:
            d.replay[f"status_{r.status_code}"] += 1
            d.user_errors[f"replay_{r.status_code}"] += 1
            return
        data = r.json()
        d.replay["inserted_ids"] += len(data.get("inserted_ids") or [])
        missing = [i for i in (data.get("missing_confirmed_ids") or []) if i in by_id]
        if not missing:
            d.replay["requests_settled"] += 1
            return
        d.replay["missing_confirmed_ids_reported"] += len(missing)
        lost = list({by_id[i].assistant_message_id: by_id[i] for i in missing}.values())
        body = {
            "conversation_id": u.conversation_id,
            "pairs": [replay_pair(p) for p in lost],
            "recent_confirmed_ids": [],
        }
    d.user_errors["replay_gave_up"] += 1


def app_buffer(u: AppUser, now: float) -> list[Pair]:
    """The app's buffer: the last 10 pairs, and every pair for 60 s after its ack."""
    last = len(u.pairs) - BUFFER_PAIRS
    return [p for n, p in enumerate(u.pairs) if n >= last or now - p.acked_mono <= BUFFER_S]


def late_pairs(u: AppUser, round_at: float) -> list[Pair]:
    """Pairs the app cannot count as safe after the reconnect's verification: sent before the
    reconnect (possibly written on the old primary, inside the lag window) but answered after the
    user's buffer was verified (a retry that found the old turn's stored answer)."""
    if u.verified_at is None:
        return [p for p in u.pairs if p.sent_mono < round_at]
    return [p for p in u.pairs if p.sent_mono < round_at and p.acked_mono > u.verified_at]


def shard_check(shard: Any, users: list[AppUser]) -> dict[str, Any]:
    """Acknowledged pairs missing on the current primary, and messages stored twice."""
    import psycopg

    acked = [p for u in users for p in u.pairs]
    ids = [uuid.UUID(i) for p in acked for i in (p.user_message_id, p.assistant_message_id)]
    convs = [uuid.UUID(u.conversation_id) for u in users if u.conversation_id]
    with psycopg.connect(shard.primary_dsn, autocommit=True, connect_timeout=5) as conn:
        present = {
            str(r[0]) for r in conn.execute("SELECT id FROM messages WHERE id = ANY(%s)", (ids,)).fetchall()
        }
        dup_user = conn.execute(
            "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM messages"
            " WHERE conversation_id = ANY(%s) AND role = 'user' GROUP BY conversation_id, content) t",
            (convs,),
        ).fetchone()
        extra_assistant = conn.execute(
            "SELECT coalesce(sum(greatest(a - u, 0)), 0) FROM (SELECT conversation_id,"
            " count(*) FILTER (WHERE role = 'assistant') AS a, count(*) FILTER (WHERE role = 'user') AS u"
            " FROM messages WHERE conversation_id = ANY(%s) GROUP BY conversation_id) t",
            (convs,),
        ).fetchone()
    lost = [p for p in acked if p.user_message_id not in present or p.assistant_message_id not in present]
    return {
        "acked_pairs": len(acked),
        "lost_pairs": len(lost),
        "duplicates": int(dup_user[0] if dup_user else 0) + int(extra_assistant[0] if extra_assistant else 0),
    }


async def drill_phase(
    w: World,
    *,
    seconds: float,
    rate: float,
    kill_at: float,
    outage_s: float,
    lag_window_s: float,
    n_users: int,
    grace_s: float,
    client_timeout_s: float,
) -> dict[str, Any]:
    w.bed.dialogue.set_latency()  # instant LLM
    users = [AppUser(u) for u in w.users(n_users)]
    d = Drill()
    # every user has talked before (a conversation on the shard, replicated) before the drill starts
    progress(f"drill: one message of each of the {n_users} users first")
    async with httpx.AsyncClient(base_url=w.bed.url, timeout=30) as client:
        sem = asyncio.Semaphore(8)

        async def first(u: AppUser) -> None:
            async with sem:
                body = chat_body(f"[{u.user_id.hex[:8]}-0] hello", None)
                r = await client.post("/api/v1/chat", json=body, headers=w.headers(u.user_id))
                if r.status_code == 200:
                    data = r.json()
                    u.conversation_id = data.get("conversation_id")
                    now = dt.datetime.now(dt.UTC).isoformat()
                    u.pairs.append(
                        Pair(
                            body["user_message_id"],
                            body["assistant_message_id"],
                            body["message"],
                            str(data.get("text") or ""),
                            now,
                            now,
                            time.monotonic(),
                            data.get("voice_params"),
                        )
                    )

        await asyncio.gather(*(first(u) for u in users))
    await asyncio.get_running_loop().run_in_executor(None, w.shard.wait_replayed)
    tasks: set[asyncio.Task[None]] = set()
    limits = httpx.Limits(max_connections=n_users, max_keepalive_connections=min(n_users, 200))
    before_replay: dict[str, Any] = {}
    failover: dict[str, Any] = {}
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(base_url=w.bed.url, timeout=client_timeout_s, limits=limits) as client:

        async def fail_over() -> None:
            if lag_window_s > 0:
                await asyncio.sleep(max(0.0, d.started + kill_at - lag_window_s - time.monotonic()))
                lsn = await loop.run_in_executor(None, w.shard.cut_stream)
                failover["standby_stream_cut_at_lsn"] = lsn
                progress(f"drill: the standby stops receiving WAL {lag_window_s:g} s before the kill")
            await asyncio.sleep(max(0.0, d.started + kill_at - time.monotonic()))
            progress(f"drill: killing the primary {w.shard.primary.name} at {kill_at:g} s")
            d.killed_at = time.monotonic()
            await loop.run_in_executor(None, w.shard.kill_primary)
            if outage_s:
                await asyncio.sleep(outage_s)
            await loop.run_in_executor(None, w.shard.promote)
            d.promoted_at = time.monotonic()
            entry = await loop.run_in_executor(None, w.write_routing)
            d.routed_at = time.monotonic()
            failover.update({"new_primary": entry["member"], "timeline": int(entry["timeline"])})
            progress(f"drill: {entry['member']} promoted (timeline {entry['timeline']}), shard:0 rewritten")
            # the app's reconnect after the failover: every user with buffered pairs verifies
            await asyncio.sleep(1.0)
            check = await loop.run_in_executor(None, shard_check, w.shard, users)
            before_replay.update(check)
            d.round_at = time.monotonic()
            sem = asyncio.Semaphore(16)

            async def one(u: AppUser) -> None:
                async with sem:
                    await reconnect_verify(client, w, d, u)

            await asyncio.gather(*(one(u) for u in users if u.pairs))
            progress(f"drill: verify-and-replay done ({dict(d.replay)})")

        d.started = time.monotonic()
        failing = asyncio.create_task(fail_over())
        total = int(seconds * rate)
        give_up_at = d.started + seconds + grace_s
        rr = 0
        for i in range(total):
            due = d.started + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            d.offered += 1
            if i and i % max(1, int(rate * 10)) == 0:
                progress(f"drill: {i}/{total} offered, {d.acked} acknowledged, {len(tasks)} in flight")
            for _ in range(len(users)):
                u = users[rr % len(users)]
                rr += 1
                if not u.busy:
                    break
            else:
                d.skipped_busy += 1
                continue
            u.busy = True
            u.sent += 1
            text = f"[{u.user_id.hex[:8]}-{u.sent}] {SAYS[u.sent % len(SAYS)]}"
            task = asyncio.create_task(drill_chat(client, w, d, u, text, give_up_at))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        offered_until = time.monotonic()
        await failing
        if tasks:
            await asyncio.wait(set(tasks), timeout=max(1.0, give_up_at - time.monotonic() + 15))
        for task in list(tasks):
            task.cancel()
            d.user_errors["unfinished"] += 1
        ended = time.monotonic()
        after_round = await loop.run_in_executor(None, shard_check, w.shard, users)
        # the answers that came after a user's verification for messages sent before it
        late = [(u, late_pairs(u, d.round_at or ended)) for u in users]
        d.replay["late_pairs_sent_as_unconfirmed"] = sum(len(p) for _, p in late)
        sem = asyncio.Semaphore(16)

        async def verify_late(u: AppUser, pairs: list[Pair]) -> None:
            async with sem:
                for n in range(0, len(pairs), MAX_UNCONFIRMED_PAIRS):
                    await verify_and_replay(client, w, d, u, unconfirmed=pairs[n : n + MAX_UNCONFIRMED_PAIRS])

        await asyncio.gather(*(verify_late(u, p) for u, p in late if p))
    after = shard_check(w.shard, users)
    gap = 0.0
    if d.killed_at is not None:
        kill_t = d.killed_at - d.started
        around = sorted(t for t in d.ack_times if t >= kill_t - 1.0)
        gap = max((b - a for a, b in itertools.pairwise(around)), default=0.0)
    acked_in_window = sum(1 for t in d.ack_times if t <= seconds)
    return {
        "wan": "none: loopback (client, gateway, orchestrator, shard members all on 127.0.0.1)",
        "offered_rate_per_s": rate,
        "drill_seconds": seconds,
        "users": n_users,
        "offered": d.offered,
        "not_sent_user_busy": d.skipped_busy,
        "acknowledged": d.acked,
        "served_rate_per_s": round(acked_in_window / seconds, 2) if seconds else None,
        "served_rate_overall_per_s": round(d.acked / max(1e-9, ended - d.started), 2),
        "attempts": d.attempts,
        "retries": dict(d.retries),
        "errors_user_saw": dict(d.user_errors),
        "errors_user_saw_total": sum(d.user_errors.values()),
        "answers_marked_failed": d.failed_answers,
        "ack_latency_ms": summary(d.ack_latency_ms),
        "ack_latency_ms_before_kill": summary(
            [ms for t, ms in zip(d.ack_times, d.ack_latency_ms, strict=True) if t < kill_at]
        ),
        "ack_latency_ms_from_kill_plus_15s": summary(
            [ms for t, ms in zip(d.ack_times, d.ack_latency_ms, strict=True) if t >= kill_at + 15]
        ),
        "kill_at_s": kill_at,
        "outage_s_before_promotion": outage_s,
        "failover": {
            **failover,
            "promoted_after_kill_s": round(d.promoted_at - d.killed_at, 3)
            if d.promoted_at and d.killed_at
            else None,
            "routed_after_kill_s": round(d.routed_at - d.killed_at, 3)
            if d.routed_at and d.killed_at
            else None,
            "first_client_error_after_kill_s": round(d.first_error_after_kill - d.killed_at, 3)
            if d.first_error_after_kill and d.killed_at
            else None,
            "first_ack_after_kill_s": round(d.first_ack_after_kill - d.killed_at, 3)
            if d.first_ack_after_kill and d.killed_at
            else None,
        },
        "longest_gap_between_acks_after_kill_s": round(gap, 3),
        "lag_window_s": lag_window_s,
        "client_timeout_s": client_timeout_s,
        "offer_loop_s": round(offered_until - d.started, 2),
        "lost_before_replay": before_replay.get("lost_pairs"),
        "acked_at_replay": before_replay.get("acked_pairs"),
        "replay": dict(d.replay),
        "lost_after_reconnect_replay": after_round["lost_pairs"],
        "lost_after_replay": after["lost_pairs"],
        "duplicates": after["duplicates"],
        "goals": {"lost_after_replay": 0, "duplicates": 0},
        "met": after["lost_pairs"] == 0 and after["duplicates"] == 0,
    }


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small counts and a short drill (smoke run)")
    parser.add_argument("--chats", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--audio-turns", type=int, default=30)
    parser.add_argument("--llm-first-sentence-s", type=float, default=0.3)
    parser.add_argument("--llm-total-s", type=float, default=1.0)
    parser.add_argument("--tts-first-byte-s", type=float, default=0.3)
    parser.add_argument("--ws-streams", type=int, default=100)
    parser.add_argument("--drill-seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=100.0, help="chats offered per second in the drill")
    parser.add_argument("--kill-at", type=float, default=20.0, help="seconds into the drill")
    parser.add_argument("--outage-s", type=float, default=0.0, help="seconds from the kill to the promotion")
    parser.add_argument(
        "--lag-window-s",
        type=float,
        default=2.0,
        help="the standby stops receiving WAL this long before the kill (the spec's 1-5 s of async lag)",
    )
    parser.add_argument("--client-timeout-s", type=float, default=10.0, help="the app's request timeout")
    parser.add_argument("--drill-users", type=int, default=400)
    parser.add_argument(
        "--grace-s", type=float, default=30.0, help="how long a message is retried after the drill"
    )
    parser.add_argument("--worker-concurrency", type=int, default=8, help="orchestrator worker processes")
    parser.add_argument("--phases", default="overhead,audio,ws,drill")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--workdir", type=Path, help="keep the data and the logs here")
    if parser.parse_known_args(argv)[0].quick:  # smaller defaults; options given still win
        parser.set_defaults(**QUICK)
    args = parser.parse_args(argv)
    phases = {p.strip() for p in args.phases.split(",") if p.strip()}
    random.seed(args.seed)

    from unde_testkit.pg_replica import ReplicatedShard
    from unde_testkit.testing import postgres_server, redis_server

    result: dict[str, Any] = {
        "benchmark": "entry",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "wan": "none: loopback",
        "quick": args.quick,
        "goals": GOALS,
    }
    work = args.workdir or Path(tempfile.mkdtemp(prefix="unde-bench-entry-"))
    work.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    try:
        with ExitStack() as stack:
            progress("starting PostgreSQL, Redis, the replicated shard, the gateway bed and the voice server")
            pg = stack.enter_context(postgres_server(work / "pg"))
            redis_url = stack.enter_context(redis_server(work / "redis", password="bench"))  # noqa: S106
            shard = stack.enter_context(ReplicatedShard(work / "shard"))
            bed = gateway_bed(pg, redis_url, work / "gw", shard, args.worker_concurrency)
            # the routing entry exists before anyone routes (Patroni's on_start callback)
            world = World(bed, shard, redis_url, "", None)
            world.write_routing()
            stack.enter_context(bed)
            voice_ws, tts = start_voice(stack, work, redis_url, bed.env())
            world.voice_ws, world.tts = voice_ws, tts
            result["setup_s"] = round(time.monotonic() - began, 1)
            if "overhead" in phases:
                progress(f"gateway overhead: {args.chats} chats, {args.concurrency} at once")
                result["gateway_overhead_ms"] = asyncio.run(
                    overhead_phase(world, args.chats, args.concurrency, args.warmup, args.worker_concurrency)
                )
            if "audio" in phases:
                progress(f"first audio: {args.audio_turns} streamed turns")
                result["first_audio_ms"] = asyncio.run(
                    first_audio_phase(
                        world,
                        args.audio_turns,
                        args.llm_first_sentence_s,
                        args.llm_total_s,
                        args.tts_first_byte_s,
                    )
                )
            if "ws" in phases:
                progress(f"{args.ws_streams} concurrent WebSocket streams")
                result["ws_concurrent"] = asyncio.run(ws_phase(world, args.ws_streams, args.tts_first_byte_s))
            if "drill" in phases:
                progress(
                    f"failover drill: {args.rate:g}/s for {args.drill_seconds:g} s,"
                    f" kill at {args.kill_at:g} s"
                )
                result["failover_replay"] = asyncio.run(
                    drill_phase(
                        world,
                        seconds=args.drill_seconds,
                        rate=args.rate,
                        kill_at=args.kill_at,
                        outage_s=args.outage_s,
                        lag_window_s=args.lag_window_s,
                        n_users=args.drill_users,
                        grace_s=args.grace_s,
                        client_timeout_s=args.client_timeout_s,
                    )
                )
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result["wall_s"] = round(time.monotonic() - began, 1)
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
