"""Hybrid-search benchmark for the unde_shard chat history (spec 02 §14).

Starts a throwaway PostgreSQL + pgvector (the ``pgserver`` wheel), applies the unde_shard
migrations with the real migration runner, streams a synthetic chat history into ``messages``
with binary COPY (default: 800 conversations x 250 user messages with 1024-dim embeddings, plus
the assistant replies), builds the indexes after loading, then runs for random conversations
(fixed seed):

* the spec's original query, with the spec's partial HNSW index (built here only: the schema no
  longer has it), at the default ``hnsw.ef_search`` and at a larger one;
* the canonical query, exactly ``files/sql/unde_shard/queries/hybrid_search.sql``;

and prints ONE JSON object on stdout: latency percentiles (ms), result rows, the vector branch's
recall@20 against exact search (a sequential scan of the partition) and its average row count,
table and index sizes, and the canonical query's EXPLAIN ANALYZE proving partition pruning.
Progress goes to stderr. Memory-light: embeddings are built as bytes and streamed; nothing holds
the whole data set. Standard library + psycopg + pgserver only (no numpy).

    .venv/bin/python bench/hybrid_search.py [--conversations 800] [--messages 250] [--queries 200]
"""

from __future__ import annotations

import argparse
import array
import contextlib
import datetime as dt
import heapq
import json
import math
import random
import re
import shutil
import statistics
import struct
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
from unde_testkit.loaders import sql_runner

REPO = Path(__file__).resolve().parents[1]
SHARD_SQL = REPO / "files" / "sql" / "unde_shard"
CANONICAL_QUERY_FILE = REPO / "apps/llm_orchestrator/src/llm_orchestrator/sql/hybrid_search.sql"
FINAL_MARKER = "-- final ranking"
DIM = 1024
PARTITIONS = 64

# The spec's query (02 §14), verbatim except: $1/$2/$3 -> named placeholders with the same casts
# as the canonical file.
SPEC_QUERY = """
WITH vector_results AS (
    SELECT id, content, memory_snippet, memory_type,
           memory_confidence, created_at, role,
           response_description,
           GREATEST(0, 1 - (embedding <=> %(query_embedding)s::vector(1024))) AS vec_score
    FROM messages
    WHERE conversation_id = %(conversation_id)s::uuid
      AND role = 'user'
      AND is_embeddable = TRUE
      AND is_forgotten = FALSE
      AND embedding IS NOT NULL
    ORDER BY embedding <=> %(query_embedding)s::vector(1024)
    LIMIT 20
),
fts_results AS (
    SELECT id, content, memory_snippet, memory_type,
           memory_confidence, created_at, role,
           response_description,
           LEAST(1.0, ts_rank(tsv, plainto_tsquery('simple', %(query_text)s)) * 10) AS fts_score
    FROM messages
    WHERE conversation_id = %(conversation_id)s::uuid
      AND is_forgotten = FALSE
      AND tsv @@ plainto_tsquery('simple', %(query_text)s)
    ORDER BY fts_score DESC
    LIMIT 10
),
merged AS (
    SELECT
        COALESCE(v.id, f.id) AS id,
        COALESCE(v.content, f.content) AS content,
        COALESCE(v.memory_snippet, f.memory_snippet) AS memory_snippet,
        COALESCE(v.memory_type, f.memory_type) AS memory_type,
        COALESCE(v.memory_confidence, f.memory_confidence) AS memory_confidence,
        COALESCE(v.created_at, f.created_at) AS created_at,
        COALESCE(v.role, f.role) AS role,
        COALESCE(v.response_description, f.response_description) AS response_description,
        COALESCE(v.vec_score, 0) AS vec_score,
        COALESCE(f.fts_score, 0) AS fts_score
    FROM vector_results v
    FULL OUTER JOIN fts_results f
        ON v.id = f.id
)
-- final ranking
SELECT
    id,
    CASE
        WHEN role = 'assistant' AND response_description IS NOT NULL
            THEN response_description
        ELSE COALESCE(memory_snippet, LEFT(content, 80))
    END AS episode_card,
    created_at,
    role,
    (0.7 * vec_score + 0.3 * fts_score)
    * (1 + 0.3 * EXP(
        -1 * CASE memory_type
            WHEN 'emotion'    THEN 0.015
            WHEN 'event'      THEN 0.008
            WHEN 'general'    THEN 0.005
            WHEN 'preference' THEN 0.002
            WHEN 'fact'       THEN 0.001
            ELSE 0.005
        END
        * (1.3 - COALESCE(memory_confidence, 0.5))
        * EXTRACT(EPOCH FROM NOW() - created_at) / 86400
    )) AS final_score
FROM merged
WHERE vec_score > 0.5 OR fts_score > 0
ORDER BY final_score DESC
LIMIT 15;
"""

# The spec's two vector-related indexes, built for the "spec" phase only (the schema has neither).
SPEC_INDEXES = {
    "idx_messages_embedding": """
CREATE INDEX idx_messages_embedding
    ON messages USING hnsw (embedding vector_cosine_ops)
    WITH (m = 16, ef_construction = 64)
    WHERE role = 'user' AND is_embeddable = TRUE
      AND is_forgotten = FALSE AND embedding IS NOT NULL
""",
    "idx_messages_retrieval_spec": """
CREATE INDEX idx_messages_retrieval_spec
    ON messages(conversation_id, role, is_embeddable, is_forgotten)
    WHERE role = 'user' AND is_embeddable = TRUE AND is_forgotten = FALSE
""",
}

# Exact top-20 of one conversation: a sequential scan of its partition, no index at all.
EXACT_TOP20 = """
SELECT id FROM messages
WHERE conversation_id = %(conversation_id)s::uuid
  AND role = 'user' AND is_embeddable AND NOT is_forgotten AND embedding IS NOT NULL
ORDER BY embedding <=> %(query_embedding)s::vector(1024)
LIMIT 20
"""

# Server settings: spec 03 "Конфигурация шарда" (32 GB NVMe shard), shared_buffers scaled to
# this machine so the data set is hot, as on a shard whose working set fits in RAM.
SERVER_SETTINGS = {
    "shared_buffers": "2GB",
    "effective_cache_size": "6GB",
    "work_mem": "40MB",
    "maintenance_work_mem": "1GB",
    "random_page_cost": "1.1",
    "seq_page_cost": "1.0",
    "effective_io_concurrency": "200",
    "max_parallel_maintenance_workers": "2",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "30min",
    "synchronous_commit": "off",  # loading speed only; no effect on read latency
}

# --- synthetic chat text --------------------------------------------------------------------

TOPICS: list[tuple[str, ...]] = [
    ("платье", "dress", "миди", "вечернее"),
    ("кроссовки", "sneakers", "кеды", "running"),
    ("пальто", "coat", "тренч", "trench"),
    ("джинсы", "jeans", "denim", "straight"),
    ("сумка", "bag", "клатч", "tote"),
    ("костюм", "suit", "пиджак", "blazer"),
    ("рубашка", "shirt", "блузка", "blouse"),
    ("юбка", "skirt", "плиссе", "pleated"),
    ("ботинки", "boots", "сапоги", "chelsea"),
    ("свитер", "sweater", "кардиган", "cardigan"),
    ("куртка", "jacket", "бомбер", "bomber"),
    ("купальник", "swimsuit", "пляж", "beach"),
    ("леггинсы", "leggings", "спортзал", "gym"),
    ("шарф", "scarf", "ремень", "belt"),
    ("серьги", "earrings", "кольцо", "ring"),
    ("туфли", "heels", "лодочки", "pumps"),
    ("офис", "office", "дресс-код", "formal"),
    ("свадьба", "wedding", "гостья", "guest"),
    ("свидание", "date", "ужин", "dinner"),
    ("отпуск", "vacation", "чемодан", "travel"),
    ("бюджет", "budget", "скидка", "sale"),
    ("размер", "size", "талия", "fit"),
    ("оттенок", "palette", "цветотип", "undertone"),
    ("кино", "cinema", "премьера", "imax"),
]
BRANDS = ["zara", "bershka", "massimo", "dutti", "stradivarius", "oysho", "mango", "cos", "uniqlo"]
COLOURS = [
    ("чёрный", "black"), ("белый", "white"), ("бежевый", "beige"), ("хаки", "khaki"),
    ("красный", "red"), ("синий", "navy"), ("зелёный", "green"), ("розовый", "pink"),
    ("серый", "grey"), ("оливковый", "olive"),
]  # fmt: skip
OCCASIONS = [
    ("на работу", "for work"), ("на выходные", "for the weekend"), ("на вечеринку", "for a party"),
    ("в театр", "for the theatre"), ("на прогулку", "for a walk"), ("в поездку", "for a trip"),
]  # fmt: skip
FEELINGS_RU = ["хочу", "обожаю", "ищу", "нравится", "не люблю", "устала от", "присмотрела"]
FEELINGS_EN = ["I want", "I love", "looking for", "I like", "I hate", "tired of", "thinking about"]
MEMORY_TYPES = ["emotion", "preference", "fact", "event", "general"]
ASSISTANT_OPENERS = ["Вот что я нашла!", "Смотри, какие варианты", "Here are some options", "Есть идея:"]


def user_sentence(rng: random.Random, topic: tuple[str, ...]) -> str:
    brand = rng.choice(BRANDS)
    colour = rng.choice(COLOURS)
    occasion = rng.choice(OCCASIONS)
    if rng.random() < 0.6:
        return (
            f"{rng.choice(FEELINGS_RU)} {rng.choice(topic[0::2])} {colour[0]} от {brand} {occasion[0]}, "
            f"размер {rng.choice('SML')}?"
        )
    return f"{rng.choice(FEELINGS_EN)} a {colour[1]} {rng.choice(topic[1::2])} from {brand} {occasion[1]}"


def artefact_description(rng: random.Random, topic: tuple[str, ...]) -> str:
    return (
        f"{rng.choice(BRANDS)} {rng.choice(topic)} {rng.choice(COLOURS)[0]} "
        f"SKU {rng.randrange(10**7, 10**8)} размер {rng.choice('SML')} цена {rng.randrange(9, 90)}990 KZT"
    )


# --- synthetic embeddings (bytes, big-endian float4, no numpy) ------------------------------
#
# Each topic has a random centroid, each conversation a random "style" vector; a message of
# topic t in conversation c is base(c, t) = centroid[t] + STYLE * style[c] with WINDOWS windows
# of WINDOW dimensions overwritten by slices of a large Gaussian noise buffer. Same-topic messages
# of a conversation have cosine similarity ~0.75, the same topic in another conversation ~0.7
# (people talk about the same dresses: the conversation is a weak signal), other topics ~0:
# nearest neighbours are meaningful and distances are continuous (no ties).

WINDOW = 64
WINDOWS = 2
STYLE = 0.2
NOISE_FLOATS = 1 << 20


def gaussian_floats(rng: random.Random, n: int, scale: float = 1.0) -> array.array[float]:
    return array.array("f", (rng.gauss(0.0, scale) for _ in range(n)))


def be_bytes(values: array.array[float]) -> bytes:
    copy = array.array("f", values)
    if sys.byteorder == "little":
        copy.byteswap()
    return copy.tobytes()


class EmbeddingFactory:
    def __init__(self, rng: random.Random, topics: int) -> None:
        self.rng = rng
        self.centroids = [gaussian_floats(rng, DIM) for _ in range(topics)]
        self.noise = be_bytes(gaussian_floats(rng, NOISE_FLOATS, 1.1))
        self._bases: dict[tuple[int, int], bytes] = {}
        self._styles: dict[int, array.array[float]] = {}

    def base(self, conv: int, topic: int) -> bytes:
        key = (conv, topic)
        found = self._bases.get(key)
        if found is None:
            style = self._styles.get(conv)
            if style is None:
                style = self._styles[conv] = gaussian_floats(self.rng, DIM, STYLE)
            centroid = self.centroids[topic]
            found = self._bases[key] = be_bytes(array.array("f", map(float.__add__, centroid, style)))
        return found

    def message(self, conv: int, topic: int) -> bytes:
        vec = bytearray(self.base(conv, topic))
        for _ in range(WINDOWS):
            start = self.rng.randrange(DIM - WINDOW) * 4
            src = self.rng.randrange(NOISE_FLOATS - WINDOW) * 4
            vec[start : start + WINDOW * 4] = self.noise[src : src + WINDOW * 4]
        return bytes(vec)

    def forget(self, conv: int) -> None:
        self._styles.pop(conv, None)
        for key in [k for k in self._bases if k[0] == conv]:
            del self._bases[key]


def vector_text(be: bytes) -> str:
    values = array.array("f", be)
    if sys.byteorder == "little":
        values.byteswap()
    return "[" + ",".join(f"{v:.6g}" for v in values) + "]"


# --- binary COPY encoding -------------------------------------------------------------------

PG_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
COPY_TRAILER = struct.pack("!h", -1)
NULL = struct.pack("!i", -1)
COPY_COLUMNS = (
    "id, conversation_id, role, content, embedding, is_embeddable, is_forgotten, memory_type, "
    "memory_confidence, memory_snippet, response_description, reply_to_id, enrichment_status, "
    "enriched_at, created_at"
)
N_COLUMNS = 15
_i4 = struct.Struct("!i").pack
_f8 = struct.Struct("!d").pack
_i8 = struct.Struct("!q").pack
VECTOR_HEADER = struct.pack("!hh", DIM, 0)


def f_bytes(data: bytes | None) -> bytes:
    return NULL if data is None else _i4(len(data)) + data


def f_text(value: str | None) -> bytes:
    return NULL if value is None else f_bytes(value.encode())


def f_time(micros: int) -> bytes:
    return _i4(8) + _i8(micros)


# --- data set -------------------------------------------------------------------------------


@dataclass
class Conversation:
    index: int
    id: uuid.UUID
    user_messages: int
    topics: list[int]
    last_user_id: uuid.UUID | None = None
    emitted: int = 0


@dataclass
class LoadStats:
    user_messages: int = 0
    embedded: int = 0
    assistant_messages: int = 0
    rows: int = 0
    copy_bytes: int = 0


@dataclass
class QueryCase:
    conversation_id: uuid.UUID
    query_embedding: str
    query_text: str
    user_messages: int

    def params(self) -> dict[str, Any]:
        return {
            "conversation_id": self.conversation_id,
            "query_embedding": self.query_embedding,
            "query_text": self.query_text,
            "similarity_threshold": 0.5,
            "top_k": 15,
        }


def make_uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def conversations_plan(
    rng: random.Random, normal: int, per_conv: int, long: int, long_len: int
) -> list[Conversation]:
    convs = []
    for i in range(normal + long):
        length = long_len if i >= normal else per_conv
        convs.append(Conversation(i, make_uuid(rng), length, rng.sample(range(len(TOPICS)), 5)))
    return convs


def message_rows(
    rng: random.Random, factory: EmbeddingFactory, convs: Sequence[Conversation], stats: LoadStats
) -> Iterator[bytes]:
    """All rows, interleaved in time across conversations (as a shard receives them), so one
    conversation's rows are spread over its partition's heap like in production."""
    now_us = int((dt.datetime.now(dt.UTC) - PG_EPOCH).total_seconds() * 1e6)
    year_us = 365 * 86400 * 10**6
    queue: list[tuple[float, int]] = [(rng.random() / c.user_messages, c.index) for c in convs]
    heapq.heapify(queue)
    while queue:
        at, index = heapq.heappop(queue)
        conv = convs[index]
        created = now_us - year_us + int(at * year_us)
        topic_i = rng.choice(conv.topics)
        topic = TOPICS[topic_i]
        msg_id = make_uuid(rng)
        forgotten = rng.random() < 0.01
        embedding = None if forgotten else VECTOR_HEADER + factory.message(conv.index, topic_i)
        content = user_sentence(rng, topic)
        snippet = None if forgotten or rng.random() < 0.5 else content[:80]
        stats.user_messages += 1
        stats.embedded += embedding is not None
        yield b"".join(
            (
                struct.pack("!h", N_COLUMNS),
                f_bytes(msg_id.bytes),
                f_bytes(conv.id.bytes),
                f_text("user"),
                f_text(content),
                f_bytes(embedding),
                f_bytes(b"\x01"),
                f_bytes(b"\x01" if forgotten else b"\x00"),
                f_text(rng.choice(MEMORY_TYPES)),
                _i4(8) + _f8(round(rng.uniform(0.2, 1.0), 2)),
                f_text(snippet),
                NULL,
                f_bytes(conv.last_user_id.bytes if conv.last_user_id and rng.random() < 0.3 else None),
                f_text("done"),
                f_time(created + 2_000_000),
                f_time(created),
            )
        )
        conv.last_user_id = msg_id
        if rng.random() < 0.5:  # an assistant reply, 40% with an artefact description
            description = artefact_description(rng, topic) if rng.random() < 0.4 else None
            stats.assistant_messages += 1
            yield b"".join(
                (
                    struct.pack("!h", N_COLUMNS),
                    f_bytes(make_uuid(rng).bytes),
                    f_bytes(conv.id.bytes),
                    f_text("assistant"),
                    f_text(rng.choice(ASSISTANT_OPENERS)),
                    NULL,
                    f_bytes(b"\x00"),
                    f_bytes(b"\x00"),
                    f_text("general"),
                    NULL,
                    NULL,
                    f_text(description),
                    NULL,
                    f_text("skipped"),
                    NULL,
                    f_time(created + 1_500_000),
                )
            )
        conv.emitted += 1
        if conv.emitted < conv.user_messages:
            heapq.heappush(queue, (at + (0.5 + rng.random()) / conv.user_messages, index))
        else:
            factory.forget(conv.index)


# --- server ---------------------------------------------------------------------------------


@dataclass
class Server:
    pgdata: Path
    uri: str
    handle: Any = field(repr=False)

    def dsn(self, database: str) -> str:
        return self.uri.replace("/postgres?", f"/{database}?", 1)

    @property
    def socket_dir(self) -> str:
        match = re.search(r"host=([^&]+)", self.uri)
        assert match is not None
        return match.group(1)


@contextlib.contextmanager
def postgres(pgdata: Path, settings: dict[str, str]) -> Iterator[Server]:
    """pgserver's PostgreSQL 16 + pgvector with ``settings`` (ALTER SYSTEM, then a restart)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR not set
        from pgserver.postgres_server import get_server

        handle = get_server(pgdata, cleanup_mode="stop")
        with psycopg.connect(handle.get_uri(), autocommit=True) as conn:
            for name, value in settings.items():
                conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        handle.cleanup()  # stop; the next start reads postgresql.auto.conf
        handle = get_server(pgdata, cleanup_mode="stop")
    try:
        yield Server(pgdata, handle.get_uri(), handle)
    finally:
        handle.cleanup()


def load_runner() -> ModuleType:
    return sql_runner()


def apply_migrations(server: Server, database: str) -> list[str]:
    from pgserver._commands import POSTGRES_BIN_PATH

    runner = load_runner()
    run = runner.subprocess_runner(
        runner.Connection(database=database, host=server.socket_dir, user="postgres"),
        psql=str(POSTGRES_BIN_PATH / "psql"),
    )
    result = runner.migrate(run, SHARD_SQL)
    applied: list[str] = result.applied
    return applied


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentiles(samples: Sequence[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def pct(p: float) -> float:
        rank = max(0, math.ceil(p / 100 * len(ordered)) - 1)
        return round(ordered[rank], 3)

    return {
        "p50": pct(50),
        "p95": pct(95),
        "p99": pct(99),
        "mean": round(statistics.fmean(ordered), 3),
        "max": round(ordered[-1], 3),
    }


def index_sizes(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Size of every index of messages; a partitioned index = the sum over its partitions."""
    rows = conn.execute(
        """
        SELECT i.relname, COALESCE(sum(pg_relation_size(t.relid)), 0)::bigint
        FROM pg_index x
        JOIN pg_class i ON i.oid = x.indexrelid
        CROSS JOIN LATERAL pg_partition_tree(i.oid) t
        WHERE x.indrelid = 'messages'::regclass AND t.isleaf
        GROUP BY i.relname ORDER BY i.relname
        """
    ).fetchall()
    return {name: int(size) for name, size in rows}


def table_sizes(conn: psycopg.Connection[Any]) -> dict[str, int]:
    row = conn.execute(
        """
        SELECT sum(pg_relation_size(c.oid)), sum(pg_relation_size(c.reltoastrelid)),
               sum(pg_total_relation_size(c.oid))
        FROM pg_partition_tree('messages'::regclass) t JOIN pg_class c ON c.oid = t.relid
        WHERE t.isleaf
        """
    ).fetchone()
    assert row is not None
    return {"heap": int(row[0]), "toast": int(row[1]), "total_with_indexes": int(row[2])}


def branch_query(full_query: str) -> str:
    """The query's CTEs + SELECT of the vector branch only (for recall and row counts)."""
    head, marker, _ = full_query.partition(FINAL_MARKER)
    if not marker:
        raise SystemExit(f"query has no {FINAL_MARKER!r} line")
    return head + "SELECT id FROM vector_results"  # noqa: S608 - the repo's own query text


def run_variant(
    conn: psycopg.Connection[Any],
    query: str,
    cases: Sequence[QueryCase],
    truth: Sequence[set[uuid.UUID]],
    settings: dict[str, str],
    repeats: int,
) -> dict[str, Any]:
    for name, value in settings.items():
        conn.execute(f"SET {name} = {value}")
    branch = branch_query(query)
    recalls: list[float] = []
    branch_rows: list[int] = []
    hnsw_plans = 0
    for case, expected in zip(cases, truth, strict=True):
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + branch, case.params()).fetchall())
        hnsw_plans += "embedding_idx" in plan
        got = {r[0] for r in conn.execute(branch, case.params()).fetchall()}
        branch_rows.append(len(got))
        recalls.append(len(got & expected) / len(expected) if expected else 1.0)
    for case in cases:  # warm-up: hot cache, prepared statement
        conn.execute(query, case.params(), prepare=True).fetchall()
    latencies: list[float] = []
    rows: list[int] = []
    for _ in range(repeats):
        for case in cases:
            start = time.perf_counter()
            result = conn.execute(query, case.params(), prepare=True).fetchall()
            latencies.append((time.perf_counter() - start) * 1000)
            rows.append(len(result))
    for name in settings:
        conn.execute(f"RESET {name}")
    return {
        "latency_ms": percentiles(latencies),
        "avg_result_rows": round(statistics.fmean(rows), 2),
        "vector_branch": {
            "recall_at_20": round(statistics.fmean(recalls), 4),
            "min_recall_at_20": round(min(recalls), 4),
            "avg_rows": round(statistics.fmean(branch_rows), 2),
            "queries_planned_with_hnsw": f"{hnsw_plans}/{len(cases)}",
        },
        "settings": settings,
    }


def timed(conn: psycopg.Connection[Any], statement: str) -> float:
    start = time.perf_counter()
    conn.execute(statement)
    return round(time.perf_counter() - start, 1)


def explain(conn: psycopg.Connection[Any], query: str, case: QueryCase) -> tuple[str, list[str]]:
    rows = conn.execute("EXPLAIN (ANALYZE, COSTS OFF, SUMMARY ON) " + query, case.params()).fetchall()
    plan = "\n".join(r[0] for r in rows)
    partitions = sorted(set(re.findall(r"\bmessages_p\d\d\b", plan)))
    return plan, partitions


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--conversations", type=int, default=800)
    parser.add_argument("--messages", type=int, default=250, help="user messages per conversation")
    parser.add_argument("--long-conversations", type=int, default=8, help="extra year-long conversations")
    parser.add_argument("--long-messages", type=int, default=3000, help="user messages of a long one")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes over the queries")
    parser.add_argument("--seed", type=int, default=20260214)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temp dir, removed after")
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="unde-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    pgdata = workdir / "pgdata"
    if pgdata.exists():
        shutil.rmtree(pgdata)
    report: dict[str, Any] = {"benchmark": "unde_shard hybrid search (spec 02 §14)", "seed": args.seed}
    started = time.perf_counter()
    try:
        with postgres(pgdata, SERVER_SETTINGS) as server:
            with psycopg.connect(server.uri, autocommit=True) as admin:
                admin.execute("CREATE DATABASE unde_shard")
            applied = apply_migrations(server, "unde_shard")
            log(f"migrations applied: {applied}")
            with psycopg.connect(server.dsn("unde_shard"), autocommit=True) as conn:
                report.update(benchmark(conn, rng, args, applied))
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    report["wall_seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report, ensure_ascii=False, indent=2))
    return 0


def benchmark(
    conn: psycopg.Connection[Any], rng: random.Random, args: argparse.Namespace, applied: list[str]
) -> dict[str, Any]:
    versions = conn.execute(
        "SELECT current_setting('server_version'), extversion FROM pg_extension WHERE extname = 'vector'"
    ).fetchone()
    assert versions is not None
    settings = {
        name: conn.execute("SELECT current_setting(%s)", (name,)).fetchone()[0]  # type: ignore[index]
        for name in (
            "shared_buffers",
            "work_mem",
            "random_page_cost",
            "jit",
            "max_parallel_workers_per_gather",
        )
    }

    # Build indexes after loading: drop the migration's secondary indexes on messages now,
    # recreate them from their own definitions after COPY.
    # (pg_indexes shows a partitioned index as "ON ONLY messages": recreate it on every partition)
    index_defs = [
        (name, definition.replace(" ON ONLY ", " ON ", 1))
        for name, definition in conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
            "AND tablename = 'messages' AND indexname <> 'messages_pkey' ORDER BY indexname"
        ).fetchall()
    ]
    for name, _ in index_defs:
        conn.execute(f"DROP INDEX {name}")

    factory = EmbeddingFactory(rng, len(TOPICS))
    convs = conversations_plan(
        rng, args.conversations, args.messages, args.long_conversations, args.long_messages
    )
    stats = LoadStats()
    log(f"loading {len(convs)} conversations with binary COPY ...")
    t0 = time.perf_counter()
    with conn.cursor() as cur, cur.copy(f"COPY messages ({COPY_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
        chunk: list[bytes] = [COPY_HEADER]
        size = 0
        for row in message_rows(rng, factory, convs, stats):
            chunk.append(row)
            size += len(row)
            if size > 4 << 20:
                copy.write(b"".join(chunk))
                stats.copy_bytes += size
                chunk, size = [], 0
        chunk.append(COPY_TRAILER)
        copy.write(b"".join(chunk))
        stats.copy_bytes += size
    load_s = time.perf_counter() - t0
    stats.rows = stats.user_messages + stats.assistant_messages
    log(f"loaded {stats.rows} rows ({stats.copy_bytes >> 20} MiB) in {load_s:.1f}s")
    build: dict[str, float] = {}
    conn.execute("SET maintenance_work_mem = '1GB'")
    for name, definition in index_defs:
        build[name] = timed(conn, definition)
        log(f"built {name} in {build[name]}s")

    # Queries: random normal conversations (+ every long one), a query embedding drawn like a
    # message of one of the conversation's topics, query text = one of that topic's words, half
    # of the time with a brand (plainto_tsquery ANDs the words).
    normal = [c for c in convs if c.user_messages == args.messages]
    long = [c for c in convs if c.user_messages != args.messages]
    picked = [rng.choice(normal) for _ in range(args.queries)]
    cases = []
    for conv in [*picked, *long]:
        topic_i = rng.choice(conv.topics)
        embedding = vector_text(factory.message(conv.index, topic_i))
        factory.forget(conv.index)
        words = [rng.choice(TOPICS[topic_i])] + ([rng.choice(BRANDS)] if rng.random() < 0.5 else [])
        cases.append(QueryCase(conv.id, embedding, " ".join(words), conv.user_messages))
    normal_cases, long_cases = cases[: len(picked)], cases[len(picked) :]

    build["vacuum_analyze"] = timed(conn, "VACUUM (ANALYZE) messages")
    build["checkpoint"] = timed(conn, "CHECKPOINT")  # no background flushing while timing
    conn.execute("SET enable_indexscan = off")
    conn.execute("SET enable_bitmapscan = off")
    truth = [{r[0] for r in conn.execute(EXACT_TOP20, c.params()).fetchall()} for c in cases]
    conn.execute("RESET enable_indexscan")
    conn.execute("RESET enable_bitmapscan")
    normal_truth, long_truth = truth[: len(picked)], truth[len(picked) :]
    repeats_long = max(args.repeats, 10)

    # Phase 1, the schema as migrated: the canonical file (right after loading, cache hot).
    sizes = table_sizes(conn)
    indexes = index_sizes(conn)
    canonical = CANONICAL_QUERY_FILE.read_text()
    log(f"canonical phase: {len(normal_cases)} queries x {args.repeats} ...")
    fixed = run_variant(conn, canonical, normal_cases, normal_truth, {}, args.repeats)
    fixed_long = (
        run_variant(conn, canonical, long_cases, long_truth, {}, repeats_long) if long_cases else None
    )
    plan, partitions = explain(conn, canonical, normal_cases[0])

    # Phase 2, the spec: its query with its own vector indexes (partial HNSW + its retrieval
    # index) instead of the schema's retrieval index.
    conn.execute("DROP INDEX idx_messages_retrieval")
    for name, definition in SPEC_INDEXES.items():
        build[f"{name} (spec, bench only)"] = timed(conn, definition)
        log(f"built the spec's {name} in {build[f'{name} (spec, bench only)']}s")
    conn.execute("ANALYZE messages")
    conn.execute("CHECKPOINT")
    spec_index_sizes = index_sizes(conn)
    log(f"spec phase: {len(normal_cases)} queries x {args.repeats} per variant ...")
    spec = run_variant(conn, SPEC_QUERY, normal_cases, normal_truth, {}, args.repeats)
    spec["partitions_scanned"] = explain(conn, SPEC_QUERY, normal_cases[0])[1]
    spec["partitions_scanned_of_total"] = f"{len(spec['partitions_scanned'])}/{PARTITIONS}"
    # The plan the spec relies on: the HNSW index scan (steered with enable_sort = off, as the
    # planner picks by itself for long conversations or when the estimates favour it).
    spec_hnsw = run_variant(
        conn, SPEC_QUERY, normal_cases, normal_truth, {"enable_sort": "off"}, args.repeats
    )
    spec_hnsw_wide = run_variant(
        conn,
        SPEC_QUERY,
        normal_cases,
        normal_truth,
        {"enable_sort": "off", "hnsw.ef_search": "400"},
        args.repeats,
    )
    spec_long = (
        run_variant(conn, SPEC_QUERY, long_cases, long_truth, {}, repeats_long) if long_cases else None
    )

    return {
        "postgresql": versions[0],
        "pgvector": versions[1],
        "server_settings": settings,
        "migrations_applied": applied,
        "dataset": {
            "conversations": len(convs),
            "user_messages_per_conversation": args.messages,
            "long_conversations": len(long),
            "long_conversation_user_messages": args.long_messages if long else 0,
            "user_messages": stats.user_messages,
            "user_messages_with_embedding": stats.embedded,
            "assistant_messages": stats.assistant_messages,
            "rows": stats.rows,
            "embedding_dim": DIM,
            "partitions": PARTITIONS,
            "copy_format": "binary",
            "copy_mib": stats.copy_bytes >> 20,
            "load_seconds": round(load_s, 1),
            "index_build_seconds": build,
        },
        "sizes_bytes": {
            "messages": sizes,
            "indexes": indexes,
            "spec_hnsw_idx_messages_embedding": spec_index_sizes.get("idx_messages_embedding"),
        },
        "queries_per_variant": len(normal_cases),
        "timed_runs_per_variant": len(normal_cases) * args.repeats,
        "goal": "spec 03: full hybrid search 2-5 ms hot; alert p95 > 50 ms; vector recall@20 >= 0.95",
        "spec_query": spec,
        "spec_query_hnsw_plan": spec_hnsw,
        "spec_query_hnsw_plan_ef_search_400": spec_hnsw_wide,
        "spec_query_long_conversations": spec_long,
        "canonical_query": {
            "file": str(CANONICAL_QUERY_FILE.relative_to(REPO)),
            **fixed,
            "partitions_scanned": partitions,
            "partitions_scanned_of_total": f"{len(partitions)}/{PARTITIONS}",
            "explain_analyze": plan,
        },
        "canonical_query_long_conversations": fixed_long,
    }


if __name__ == "__main__":
    sys.exit(main())
