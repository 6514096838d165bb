"""Benchmark of one dialogue turn of the LLM orchestrator (``make bench-dialogue``): ContextPack assembly,
the whole turn, user-knowledge decryption and retrieval quality.

Starts, on 127.0.0.1 only: a throwaway PostgreSQL 16 + pgvector (pgserver) and a Redis, then
:class:`unde_testkit.dialogue_testbed.DialogueBed`: the shard and the Production DB migrated with the
repository's migrations, the mood / context / persona agents as real processes, the provider
stand-ins (DeepSeek, Gemini, Claude, Qwen, Cohere embed, Intelistyle; the mood agent's LLMs; WeatherAPI)
and a master key ring. The turns run in this process through ``llm_orchestrator.dialogue.run_turn`` on a
real :class:`llm_orchestrator.runtime.Runtime`. The user has a ``--messages``-row history seeded into
the shard (embedded by the Cohere stand-in's deterministic bag-of-words embedding) and encrypted
knowledge. Phases (bounded loops, one JSON object on stdout, progress on stderr):

- ``context_pack_instant``: ``timings_ms.context_pack`` of ``--turns`` turns, every external provider
  (embedding, LLM, the mood agent's LLM) answering at once; agents, shard, Redis, crypto real
  (goal p95 <= 30 ms);
- ``context_pack_spec_latency``: the same with the spec's provider latencies (embedding 50 ms, the
  mood agent's LLM 150 ms): the critical path of the pack;
- ``turn_with_llm``: the whole ``run_turn`` with a 1.0 s LLM (``--llm-turns`` turns; goal p95 <= 1.2 s);
- ``decrypt``: one ``user_knowledge`` row's decryption (``llm_orchestrator.crypto.decrypt_fact`` +
  the JSON decode, as ``load_knowledge`` times it), timed directly over ``--decrypt-rows`` rows x
  ``--decrypt-passes``, and the ``user_knowledge_decrypt_latency_ms`` histogram the turns filled
  (goal p95 <= 0.1 ms);
- ``retrieval_quality``: a second user's generated history with ``--planted`` planted memories:
  recall@15 of each planted memory in the canonical hybrid search (``store.hybrid_search``) for a
  query that should find it, and over ``--quality-turns`` turns asking those queries the share of
  turns whose ContextPack obeys the caps (<= 3 episodes per answer, <= 30 % of the last 10 answers
  with memories, <= 3 episodes of one calendar day), read from the system prompt the LLM received and
  the stored replies (goals 1.0 and 1.0).

    .venv/bin/python bench/dialogue.py [--messages 3000] [--turns 200] [--llm-turns 30]
"""

from __future__ import annotations

import argparse
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
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
LOCATION = {"lat": 25.1181, "lng": 55.2006, "mall_id": "mall-of-the-emirates"}
CAPS = {"episodes_per_answer": 3, "answers_with_memory_of_last_10": 3, "episodes_per_day": 3}
EPISODES_HEADER = "[Episode Cards"
LLM_PROVIDERS = ("deepseek", "gemini", "claude", "qwen")

#: what the benchmark user says (fashion chat; several intents)
MESSAGES = (
    "What should I wear to the office tomorrow?",
    "Do you think a beige trench coat goes with white sneakers?",
    "I need something for a dinner date on Friday",
    "Show me a summer dress under 100 euros",
    "Which colour suits me better, navy or olive?",
    "I feel a bit down today, nothing fits",
    "Is COS good for basics?",
    "Help me pack for a weekend trip",
    "Can you find loafers like the ones from last time?",
    "What goes well with a burgundy blazer?",
    "Thanks, that was helpful!",
    "Any ideas for a gallery opening outfit?",
)
KNOWLEDGE: tuple[tuple[str, dict[str, Any], float], ...] = (
    ("style_profile", {"style": "smart casual", "fit": "relaxed"}, 0.9),
    ("body_params", {"attribute": "height_cm", "value": 172}, 0.95),
    ("body_params", {"attribute": "shoe_size_eu", "value": 39}, 0.9),
    ("brand_preferences", {"favorite": ["COS", "Massimo Dutti"], "avoid": ["Shein"]}, 0.85),
    ("budget", {"max_per_item": 150, "currency": "EUR"}, 0.8),
    ("color_preferences", {"likes": ["navy", "cream"], "dislikes": ["neon"]}, 0.8),
    ("behavior_patterns", {"shops": "weekends", "prefers": "short answers"}, 0.7),
    ("emotional_patterns", {"stress_trigger": "crowded malls"}, 0.6),
)

# planted memories: distinctive words the filler never uses, and a query sharing most of them
_NAMES = (
    "Amira", "Leyla", "Omar", "Karim", "Noor", "Yusuf", "Sofia", "Rania", "Tariq", "Hana",
    "Zaid", "Mariam", "Idris", "Salma", "Faris", "Lina", "Bilal", "Dalia", "Nabil", "Yasmin",
)  # fmt: skip
_CITIES = (
    "Lisbon", "Istanbul", "Marrakesh", "Vienna", "Seoul", "Kyoto", "Beirut", "Muscat", "Porto", "Tbilisi",
)  # fmt: skip
_ITEMS_NEAR = ("olive blazer", "white sneakers", "silk scarf", "denim jacket", "linen shirt")
_MONTHS = ("January", "March", "April", "June", "July", "September", "October", "November")
_PLANTS = (
    ("My sister {name} is getting married in {city} in {month}",
     "{name} getting married in {city} in {month}"),
    ("My friend {name} moves to {city} in {month} for a new job",
     "{name} moves to {city} in {month}"),
    ("I fly to {city} with {name} in {month} for a conference",
     "flying to {city} with {name} in {month}"),
    ("{name} invited me to a rooftop party in {city} in {month}",
     "{name} rooftop party {city} {month}"),
    ("My colleague {name} retires in {month}, farewell dinner in {city}",
     "{name} retires farewell dinner {city}"),
)  # fmt: skip


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
    print(f"[bench-dialogue {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def planted_set(n: int, seed: int) -> list[tuple[str, str, str]]:
    """``n`` (memory text, query, distractor) triples, each with its own name + city; the distractor
    is another memory naming the same person and city on another subject (a near miss)."""
    rng = random.Random(seed)
    pairs = [(name, city) for name in _NAMES for city in _CITIES]
    rng.shuffle(pairs)
    out = []
    for i, (name, city) in enumerate(pairs[:n]):
        text, query = _PLANTS[i % len(_PLANTS)]
        values = {"name": name, "city": city, "month": rng.choice(_MONTHS)}
        distractor = f"{name} liked my {rng.choice(_ITEMS_NEAR)} when we met in {city}"
        out.append((text.format(**values), query.format(**values), distractor))
    return out


# ---------------------------------------------------------------- turns


@dataclass
class TurnRecord:
    wall_ms: float
    result: dict[str, Any]


def turn(rt: Any, user_id: uuid.UUID, message: str) -> TurnRecord:
    from llm_orchestrator.dialogue import new_ids, run_turn

    args = {"user_id": str(user_id), "message": message, "location": LOCATION, **new_ids()}
    started = time.perf_counter()
    result = rt.run(run_turn(rt, args))
    return TurnRecord((time.perf_counter() - started) * 1000, result)


def run_phase(
    rt: Any, user_id: uuid.UUID, n: int, messages: Callable[[int], str], *, label: str
) -> list[TurnRecord]:
    records = []
    started = time.monotonic()
    for i in range(n):
        records.append(turn(rt, user_id, messages(i)))
        if (i + 1) % 50 == 0:
            progress(f"{label}: {i + 1}/{n} turns ({time.monotonic() - started:.0f} s)")
    return records


def phase_report(records: list[TurnRecord], latency: dict[str, float]) -> dict[str, Any]:
    parts: dict[str, list[float]] = {}
    for r in records:
        for name, ms in r.result.get("timings_ms", {}).items():
            parts.setdefault(name, []).append(float(ms))
    degraded = Counter(p for r in records for p in r.result.get("degraded", []))
    return {
        "stand_in_latency_s": latency,
        "turns": len(records),
        "context_pack_ms": summary(parts.pop("context_pack", [])),
        "turn_wall_ms": summary([r.wall_ms for r in records]),
        "turn_duration_ms": summary([float(r.result.get("duration_ms", 0)) for r in records]),
        "parts_ms": {name: summary(v) for name, v in sorted(parts.items())},
        "degraded_parts": dict(degraded),
        "failed_turns": sum(1 for r in records if r.result.get("failed")),
        "episodes_per_turn_mean": round(statistics.fmean(r.result.get("episodes", 0) for r in records), 3)
        if records
        else None,
    }


# ---------------------------------------------------------------- decrypt


def histogram_p(histogram: Any, p: float) -> float | str | None:
    """Upper bound (ms) of the bucket holding percentile ``p`` of a prometheus_client histogram."""
    buckets: list[tuple[float, float]] = []
    for metric in histogram.collect():
        for sample in metric.samples:
            if sample.name.endswith("_bucket"):
                buckets.append((float(sample.labels["le"]), sample.value))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0
    if not total:
        return None
    for le, count in buckets:
        if count >= p / 100 * total:
            return "inf" if le == float("inf") else le
    return "inf"


def decrypt_bench(bed: Any, rt: Any, rows: int, passes: int) -> dict[str, Any]:
    import psycopg
    from llm_orchestrator.crypto import EncryptedFact, MasterKeyRing, decrypt_fact
    from llm_orchestrator.knowledge import load_knowledge, user_dek

    user_id = uuid.uuid4()
    facts = [
        (KNOWLEDGE[i % len(KNOWLEDGE)][0], {**KNOWLEDGE[i % len(KNOWLEDGE)][1], "n": i}, 0.8)
        for i in range(rows)
    ]
    bed.seed_knowledge(user_id, facts)
    ring = MasterKeyRing.load(bed.key_file)

    async def read() -> tuple[list[tuple[Any, ...]], bytes, float, int]:
        async with await psycopg.AsyncConnection.connect(bed.shard_dsn) as conn:
            cur = await conn.execute(
                "SELECT id, knowledge_type, encrypted_data, iv, auth_tag FROM user_knowledge"
                " WHERE user_id = %s",
                (user_id,),
            )
            data = await cur.fetchall()
            dek = await user_dek(conn, user_id, ring, create=False)
            assert dek is not None
            started = time.perf_counter()
            load = await load_knowledge(conn, user_id, ring)
            return data, dek, (time.perf_counter() - started) * 1000, len(load.facts)

    data, dek, load_ms, loaded = rt.run(read())
    sealed = [(r[0], r[1], EncryptedFact(bytes(r[2]), bytes(r[3]), bytes(r[4]))) for r in data]
    lat: list[float] = []
    for _ in range(passes):
        for row_id, ktype, fact in sealed:
            started = time.perf_counter()
            json.loads(decrypt_fact(dek, user_id, ktype, row_id, fact))
            lat.append((time.perf_counter() - started) * 1000)
    return {
        "rows": len(sealed),
        "samples": len(lat),
        "per_row_ms": {k: (round(v, 5) if isinstance(v, float) else v) for k, v in summary(lat).items()},
        "load_knowledge_ms_for_all_rows": round(load_ms, 3),
        "load_knowledge_facts": loaded,
        "histogram_from_turns_p95_le_ms": histogram_p(rt.metrics.decrypt_latency_ms, 95),
        "histogram_from_turns_p50_le_ms": histogram_p(rt.metrics.decrypt_latency_ms, 50),
        "goal_p95_ms": 0.1,
    }


# ---------------------------------------------------------------- retrieval quality


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def prompt_cards(call: dict[str, Any]) -> list[str]:
    """The episode cards of the system prompt one LLM call carried."""
    for text in _strings(call.get("json")):
        if EPISODES_HEADER in text:
            block = text.split(EPISODES_HEADER, 1)[1].split("\n\n", 1)[0]
            return [line[2:] for line in block.splitlines()[1:] if line.startswith("- ")]
    return []


def quality_bench(
    bed: Any, rt: Any, messages: int, n_planted: int, n_turns: int, seed: int
) -> dict[str, Any]:
    import datetime as dt
    from zoneinfo import ZoneInfo

    import psycopg
    from llm_orchestrator import store
    from unde_testkit.dialogue_simulators import hashed_embedding
    from unde_testkit.dialogue_testbed import PlantedMemory

    s = rt.settings
    user_id = uuid.uuid4()
    pairs = planted_set(n_planted, seed)
    memories = [PlantedMemory(text, memory_type="event") for text, _, _ in pairs]
    distractors = [PlantedMemory(d, memory_type="preference", confidence=0.7) for _, _, d in pairs]
    history = bed.seed_history(user_id, messages, planted=memories + distractors, seed=seed)

    top_k = 15

    async def search_all() -> list[list[uuid.UUID]]:
        pool = await rt.router.pool_for_user(user_id)
        out = []
        async with pool.connection() as conn:
            for _, query, _ in pairs:
                rows = await store.hybrid_search(
                    conn,
                    history.conversation_id,
                    hashed_embedding(query),
                    query,
                    threshold=s.similarity_threshold,
                    top_k=top_k,
                )
                out.append([r["id"] for r in rows])
        return out

    found = rt.run(search_all())
    hits = [pid in ids for pid, ids in zip(history.planted_ids[: len(pairs)], found, strict=True)]
    misses = [pairs[i][1] for i, hit in enumerate(hits) if not hit]

    zone = ZoneInfo(s.diversity_timezone)
    days = history.card_days(s.diversity_timezone)
    sim = bed.providers
    obeyed = 0
    violations: Counter[str] = Counter()
    with_memory = 0
    carried_target = 0
    for i in range(n_turns):
        query = pairs[i % len(pairs)][1]
        before = len(sim.calls)
        record = turn(rt, user_id, query)
        llm_calls = [
            c for c in sim.calls[before:] if c.get("provider") in ("deepseek", "gemini", "claude", "qwen")
        ]
        cards = prompt_cards(llm_calls[-1]) if llm_calls else []
        today = dt.datetime.now(zone).date()
        per_day = Counter(days.get(card, today) for card in cards)
        with psycopg.connect(bed.shard_dsn) as conn:
            refs = [
                r[0] or 0
                for r in conn.execute(
                    "SELECT memory_refs FROM messages WHERE conversation_id = %s AND role = 'assistant'"
                    " ORDER BY created_at DESC LIMIT 10",
                    (history.conversation_id,),
                ).fetchall()
            ]
        checks = {
            "episodes_per_answer": max(record.result.get("episodes", 0), len(cards))
            <= CAPS["episodes_per_answer"],
            "answers_with_memory_of_last_10": sum(1 for r in refs if r > 0)
            <= CAPS["answers_with_memory_of_last_10"],
            "episodes_per_day": max(per_day.values(), default=0) <= CAPS["episodes_per_day"],
        }
        violations.update(name for name, ok in checks.items() if not ok)
        obeyed += all(checks.values())
        with_memory += bool(cards)
        target = pairs[i % len(pairs)][0]
        carried_target += any(target in card for card in cards)
    return {
        "user_history_messages": messages,
        "planted": len(pairs),
        "recall_at_15": round(sum(hits) / len(hits), 4) if hits else None,
        "missed_queries": misses,
        "cap_turns": n_turns,
        "share_turns_obeying_caps": round(obeyed / n_turns, 4) if n_turns else None,
        "cap_violations": dict(violations),
        "turns_with_memories": with_memory,
        "turns_whose_pack_carried_the_asked_memory": carried_target,
        "goals": {"recall_at_15": 1.0, "share_turns_obeying_caps": 1.0},
        "caps": CAPS,
    }


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=3000, help="rows of the benchmark user's history")
    parser.add_argument("--turns", type=int, default=200, help="turns per ContextPack phase (>= 200 for p95)")
    parser.add_argument("--llm-turns", type=int, default=30, help="turns with the 1.0 s LLM")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--decrypt-rows", type=int, default=300)
    parser.add_argument("--decrypt-passes", type=int, default=40)
    parser.add_argument("--planted", type=int, default=30)
    parser.add_argument("--quality-turns", type=int, default=40)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--workdir", type=Path, help="keep the data and the agents' logs here")
    args = parser.parse_args(argv)

    from unde_testkit.dialogue_testbed import DialogueBed
    from unde_testkit.testing import postgres_server, redis_server

    result: dict[str, Any] = {
        "benchmark": "dialogue",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "history_messages": args.messages,
        "goals": {
            "context_pack_instant_p95_ms": 30,
            "turn_with_llm_p95_ms": 1200,
            "decrypt_p95_ms": 0.1,
            "recall_at_15": 1.0,
            "share_turns_obeying_caps": 1.0,
        },
    }
    work = args.workdir or Path(tempfile.mkdtemp(prefix="unde-bench-dialogue-"))
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    began = time.monotonic()
    try:
        with ExitStack() as stack:
            progress("starting PostgreSQL, Redis, the agents and the stand-ins")
            pg = stack.enter_context(postgres_server(work / "pg"))
            redis = stack.enter_context(redis_server(work / "redis", password="bench"))  # noqa: S106
            bed = stack.enter_context(DialogueBed(pg, redis, work / "bed"))
            user_id = uuid.uuid4()
            progress(f"seeding {args.messages} messages and {len(KNOWLEDGE)} facts")
            history = bed.seed_history(user_id, args.messages, seed=args.seed)
            bed.seed_knowledge(user_id, KNOWLEDGE, source=history)
            rt = bed.runtime()
            stack.callback(rt.close)

            def says(_: int) -> str:
                return rng.choice(MESSAGES)

            bed.set_latency()
            run_phase(rt, user_id, args.warmup, says, label="warm-up")
            records = run_phase(rt, user_id, args.turns, says, label="instant")
            result["context_pack_instant"] = phase_report(records, bed.latency)

            bed.set_latency(embedding=0.05, mood_llm=0.15)
            records = run_phase(rt, user_id, args.turns, says, label="spec latency")
            result["context_pack_spec_latency"] = phase_report(records, bed.latency)

            bed.set_latency(embedding=0.05, mood_llm=0.15, llm=1.0)
            records = run_phase(rt, user_id, args.llm_turns, says, label="LLM 1.0 s")
            result["turn_with_llm"] = phase_report(records, bed.latency)

            progress("decrypt")
            result["decrypt"] = decrypt_bench(bed, rt, args.decrypt_rows, args.decrypt_passes)

            progress("retrieval quality")
            bed.set_latency()
            result["retrieval_quality"] = quality_bench(
                bed, rt, args.messages, args.planted, args.quality_turns, args.seed
            )
            rt.run(rt.drain())
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    result["wall_s"] = round(time.monotonic() - began, 1)
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
