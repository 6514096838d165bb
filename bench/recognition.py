"""Benchmark of the recognition pipeline v5.1 (``make bench-recognition``), JSON on stdout.

- embedder: preprocessing + inference per image with the ONNX test model (FashionCLIP 2.0's
  signature; the real weights cannot be downloaded here) on this CPU, p50/p95 (target p95 < 300 ms);
- pgvector kNN over 235,000 embeddings (47,000 SKUs x 5 photos, clustered like catalog photos) with
  the migration's HNSW index (m 16, ef_construction 64): ximilar-gw's query (LIMIT 60, ef_search
  200), p50/p95 (alert p95 > 50 ms), recall@20 against the exact scan;
- orchestrator overhead per request: the whole pipeline against zero-latency Ximilar/Gemini
  simulators, so everything measured is the orchestrator + ximilar-gw + llm-reranker + embedder +
  databases on this machine, not provider latency.

Everything runs on loopback with throwaway servers (PostgreSQL 16 + pgvector via pgserver, Redis).
``--skip-knn`` / ``--skip-pipeline`` / ``--rows N`` for quicker runs. GPU: not measured here (no
CUDA provider on this machine); on a GPU host set ONNX_PROVIDERS=CUDAExecutionProvider.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

REPO = Path(__file__).resolve().parents[1]
# Run as a script, this file's folder comes first on sys.path and its name would shadow the
# installed `recognition` package the benchmark drives: take the folder off.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
NN_SQL = "SELECT id FROM unde_ai.sku_image_embeddings ORDER BY embedding <=> %s::vector LIMIT {limit}"


def pct(values: list[float], p: float) -> float:
    return round(float(np.percentile(np.array(values), p)), 2)


def bench_embedder(workdir: Path, runs: int) -> dict[str, Any]:
    import onnxruntime as ort  # type: ignore[import-untyped]
    from embedder.model import ImageEncoder
    from unde_testkit.recognition_simulators import solid_image
    from unde_testkit.testmodel import build_test_model

    encoder = ImageEncoder(build_test_model(workdir / "m.onnx"))
    rng = np.random.default_rng(1)
    images = []
    for _ in range(16):
        r, g, b = (int(c) for c in rng.integers(0, 255, 3))
        images.append(solid_image((600, 800), (r, g, b), stripes=int(rng.integers(0, 8))))
    for img in images[:4]:
        encoder.embed([img])
    times = []
    for i in range(runs):
        t = time.perf_counter()
        encoder.embed([images[i % len(images)]])
        times.append((time.perf_counter() - t) * 1000)
    t = time.perf_counter()
    encoder.embed(images)
    batch16 = (time.perf_counter() - t) * 1000
    return {
        "model": "test ONNX model with FashionCLIP 2.0's signature (Conv16/16 -> Gemm 512)",
        "providers": encoder.providers,
        "onnxruntime": ort.__version__,
        "image": "600x800 RGB, preprocess (resize 224 bicubic, crop, normalise) + inference + L2",
        "runs": runs,
        "p50_ms": pct(times, 50),
        "p95_ms": pct(times, 95),
        "batch16_imgs_per_sec": round(16 / (batch16 / 1000), 1),
        "target_p95_ms": 300,
    }


def _copy_binary(conn: psycopg.Connection[Any], vectors: np.ndarray, per_sku: int) -> None:
    header = b"PGCOPY\n\xff\r\n\0" + struct.pack("!ii", 0, 0)
    dim = vectors.shape[1]
    with (
        conn.cursor() as cur,
        cur.copy(
            "COPY unde_ai.sku_image_embeddings (sku, brand, image_url, image_index, embedding, model_version)"
            " FROM STDIN WITH (FORMAT binary)"
        ) as copy,
    ):
        copy.write(header)
        buf = bytearray()
        for i, vec in enumerate(vectors):
            sku = f"SKU-{i // per_sku:06d}".encode()
            brand = b"zara"
            url = b"https://hel1.your-objectstorage.com/unde-images/originals/zara/x.jpg"
            emb = struct.pack("!hh", dim, 0) + vec.astype(">f4").tobytes()
            model = b"bench"
            buf += struct.pack("!h", 6)
            for field in (sku, brand, url):
                buf += struct.pack("!i", len(field)) + field
            buf += struct.pack("!ih", 2, i % per_sku)
            buf += struct.pack("!i", len(emb)) + emb
            buf += struct.pack("!i", len(model)) + model
            if len(buf) > 8_000_000:
                copy.write(bytes(buf))
                buf.clear()
        buf += struct.pack("!h", -1)
        copy.write(bytes(buf))


def bench_knn(workdir: Path, rows: int, queries: int, keep: Path | None) -> dict[str, Any]:
    from unde_testkit.recognition_testbed import migrate_database
    from unde_testkit.testing import postgres_server
    from ximilar_gw.routes.search import KNN_SQL

    per_sku = 5
    rng = np.random.default_rng(7)
    centers = rng.normal(size=(rows // per_sku, 512)).astype(np.float32)
    vectors = np.repeat(centers, per_sku, axis=0) + rng.normal(scale=0.6, size=(rows, 512)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    pgdata = (keep / f"pg-{rows}") if keep else workdir / "pg"
    built = pgdata.parent / f"pg-{rows}.json"
    with postgres_server(pgdata) as pg:
        dsn = pg.dsn_for("bench_main")
        info: dict[str, Any] = json.loads(built.read_text()) if keep and built.exists() else {}
        if not info:
            dsn = migrate_database(pg.dsn, "bench_main", "unde_main")
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("DROP INDEX unde_ai.idx_sku_image_embeddings_hnsw")
                t = time.perf_counter()
                _copy_binary(conn, vectors, per_sku)
                info["load_s"] = round(time.perf_counter() - t, 1)
                conn.execute("SET maintenance_work_mem = '1GB'")
                conn.execute("SET max_parallel_maintenance_workers = 2")
                t = time.perf_counter()
                conn.execute(
                    "CREATE INDEX idx_sku_image_embeddings_hnsw ON unde_ai.sku_image_embeddings"
                    " USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)"
                )
                info["hnsw_build_s"] = round(time.perf_counter() - t, 1)
                conn.execute("VACUUM ANALYZE unde_ai.sku_image_embeddings")
            if keep:
                built.write_text(json.dumps(info))
        with psycopg.connect(dsn, autocommit=True) as conn:
            size = conn.execute("SELECT pg_relation_size('unde_ai.idx_sku_image_embeddings_hnsw')").fetchone()
            count = conn.execute("SELECT count(*) FROM unde_ai.sku_image_embeddings").fetchone()
            version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
            picks = rng.choice(rows, size=queries, replace=False)
            qs = vectors[picks] + rng.normal(scale=0.5 / np.sqrt(512), size=(queries, 512)).astype(np.float32)
            qs /= np.linalg.norm(qs, axis=1, keepdims=True)
            literals = ["[" + ",".join(f"{v:.6g}" for v in q) + "]" for q in qs]
            for lit in literals[:20]:  # warm the index pages
                conn.execute(NN_SQL.format(limit=60), (lit,)).fetchall()
            timings: dict[int, list[float]] = {100: [], 200: []}
            top1 = 0
            recalls = []
            for i, lit in enumerate(literals):
                for ef in timings:
                    with conn.transaction():
                        conn.execute(f"SET LOCAL hnsw.ef_search = {ef}")
                        t = time.perf_counter()
                        got = conn.execute(KNN_SQL, {"q": lit, "limit": 60}).fetchall()
                        timings[ef].append((time.perf_counter() - t) * 1000)
                    assert len(got) == 60
                    if ef == 200:
                        top1 += int(got[0][0] == f"SKU-{picks[i] // per_sku:06d}")
                if i < 20:
                    with conn.transaction():
                        conn.execute("SET LOCAL enable_indexscan = off")
                        exact = conn.execute(NN_SQL.format(limit=5), (lit,)).fetchall()
                    with conn.transaction():
                        conn.execute("SET LOCAL hnsw.ef_search = 200")
                        approx = conn.execute(NN_SQL.format(limit=60), (lit,)).fetchall()
                    recalls.append(len({r[0] for r in exact} & {r[0] for r in approx}) / 5)
            plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + NN_SQL.format(limit=60), (literals[0],)))
    return {
        "rows": count[0] if count else None,
        "skus": rows // per_sku,
        "data": "47k clustered SKU centres x 5 noisy photos, unit vectors; queries = a photo + noise",
        "pgvector": version[0] if version else None,
        **info,
        "hnsw_size_bytes": size[0] if size else None,
        "queries": queries,
        "query": "ximilar-gw KNN_SQL (LIMIT 60 photos, joined with products)",
        "ef_search_200": {"p50_ms": pct(timings[200], 50), "p95_ms": pct(timings[200], 95)},
        "ef_search_100": {"p50_ms": pct(timings[100], 50), "p95_ms": pct(timings[100], 95)},
        "top1_is_source_sku": round(top1 / queries, 3),
        "recall_exact_top5_in_top60": round(float(np.mean(recalls)), 3),
        "uses_hnsw": "idx_sku_image_embeddings_hnsw" in plan,
        "alert_p95_ms": 50,
        "load_average": os.getloadavg(),
    }


def bench_pipeline(workdir: Path, requests: int) -> dict[str, Any]:
    from unde_testkit.apptests import recognition_pipeline
    from unde_testkit.recognition_testbed import recognition_bed
    from unde_testkit.testing import postgres_server, redis_server

    os.environ["UNDE_ENV_FILE"] = str(workdir / "empty.env")
    (workdir / "empty.env").write_text("")
    with (
        postgres_server(workdir / "pg2") as pg,
        redis_server(workdir / "redis") as redis_url,
        recognition_bed(pg.dsn, redis_url, workdir / "bed") as bed,
        recognition_pipeline(bed, app_name="bench") as p,
    ):
        p.run(bed.photo_url)  # warm-up
        totals: list[float] = []
        steps: dict[str, list[float]] = {}
        for _ in range(requests):
            result = p.run(bed.photo_url)
            assert result["status"] == "completed"
            totals.append(float(result["total_ms"]))
            with psycopg.connect(bed.main_dsn) as conn:
                timings = conn.execute(
                    "SELECT step_timings_ms FROM recognition_requests WHERE id = %s",
                    (result["request_id"],),
                ).fetchone()
            for step, ms in (timings[0] if timings else {}).items():
                steps.setdefault(step, []).append(float(ms))
    return {
        "requests": requests,
        "photo": "800x400, 3 items (exact / similar / style), catalog of 12 SKUs",
        "providers": "Ximilar and Gemini simulators on loopback answering at once (no provider latency)",
        "p50_ms": pct(totals, 50),
        "p95_ms": pct(totals, 95),
        "steps_p50_ms": {k: pct(v, 50) for k, v in steps.items()},
        "note": "includes ximilar-gw, llm-reranker, the embedder (3 crops), both databases",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=235_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--embed-runs", type=int, default=200)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--skip-knn", action="store_true")
    parser.add_argument("--skip-pipeline", action="store_true")
    parser.add_argument(
        "--keep",
        type=Path,
        default=REPO / ".cache" / "bench-recognition",
        help="keep the 235k-row database here and reuse it (the HNSW build takes minutes); '' = throwaway",
    )
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="unde-bench-recognition-"))
    base.chmod(0o755)
    out: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "gpu": "none (not measured)",
        },
        "embedder": bench_embedder(base, args.embed_runs),
    }
    if not args.skip_pipeline:
        out["orchestrator"] = bench_pipeline(base, args.requests)
    if not args.skip_knn:
        keep = args.keep if str(args.keep) else None
        if keep:
            keep.mkdir(parents=True, exist_ok=True)
            keep.chmod(0o755)
        out["pgvector_knn"] = bench_knn(base, args.rows, args.queries, keep)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
