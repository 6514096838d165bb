"""Embedding jobs: which photos to embed, embedding them in batches, and the job state in Redis.

A job has a scope:

- ``all`` / ``new``: every SKU of ``products`` (``brand:<name>``: one brand), photos 0 ..
  ``images_per_sku`` - 1 (the weekly ``embedding_batch_sync``);
- ``progressive``: SKUs that ``recognition_requests.final_matches`` shows matched with a score
  below ``progressive_score_max`` in the last ``progressive_lookback``, all their photos up to
  ``progressive_images_max`` (``embedding_progressive``).

Only photos without an embedding of the current ``model_version`` are worked on, so a job is
idempotent and resumable: after a crash the same job simply continues with what is left (the
worker re-enqueues a job whose heartbeat went stale when it starts). Writes are
``INSERT ... ON CONFLICT (sku, image_index) DO UPDATE`` (a new model version re-embeds in place).

State: Redis hash ``embed_batch:job:<id>`` (scope, batch_size, state queued|running|done|failed,
total, done, errors, skipped, started_at, finished_at, heartbeat, rate), list
``embed_batch:job:<id>:errors`` (the last 50), ``embed_batch:current`` (the latest job id).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis
from psycopg import Connection
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool

from embed_batch.settings import EmbedBatchSettings
from embedder.model import ImageEncoder, preprocess
from unde_common.images import ImageError, decode_image
from unde_common.s3 import ObjectStorageError, ObjectStore

__all__ = ["JobStore", "Photo", "ScopeError", "pending_photos", "run_job", "validate_scope"]

log = logging.getLogger(__name__)
Pool = ConnectionPool[Connection[TupleRow]]

_SCOPE = re.compile(r"^(all|new|progressive|brand:[A-Za-z0-9_.\- ]{1,50})$")

PENDING_SQL = """
WITH wanted AS (
    SELECT p.sku, p.brand, p.image_urls, i.idx
    FROM products p
    CROSS JOIN LATERAL generate_series(
        0, LEAST(GREATEST(COALESCE(jsonb_array_length(p.image_urls), 1), 1), %(per_sku)s) - 1
    ) AS i(idx)
    WHERE (%(brand)s::text IS NULL OR p.brand = %(brand)s)
      AND (%(skus)s::text[] IS NULL OR p.sku = ANY(%(skus)s))
)
SELECT w.sku, w.brand, w.idx, w.image_urls ->> w.idx
FROM wanted w
LEFT JOIN unde_ai.sku_image_embeddings e
       ON e.sku = w.sku AND e.image_index = w.idx AND e.model_version = %(model)s
WHERE e.id IS NULL
ORDER BY w.sku, w.idx
"""

LOW_SCORE_SQL = """
SELECT DISTINCT m ->> 'sku_id'
FROM recognition_requests r,
     jsonb_array_elements(COALESCE(r.final_matches, '[]'::jsonb)) item,
     jsonb_array_elements(COALESCE(item -> 'matches', '[]'::jsonb)) m
WHERE r.created_at > now() - %(lookback)s::interval
  AND item ->> 'band' <> 'exact'
  AND m ->> 'match_type' <> 'style'
  AND (m ->> 'score')::float < %(max_score)s
  AND m ->> 'sku_id' IS NOT NULL
"""

UPSERT_SQL = """
INSERT INTO unde_ai.sku_image_embeddings (sku, brand, image_url, image_index, embedding, model_version)
VALUES (%s, %s, %s, %s, %s::vector, %s)
ON CONFLICT (sku, image_index) DO UPDATE
SET embedding = EXCLUDED.embedding, model_version = EXCLUDED.model_version,
    image_url = EXCLUDED.image_url, brand = EXCLUDED.brand
"""


class ScopeError(ValueError):
    """A scope this service does not know."""


def validate_scope(scope: str) -> str:
    if not _SCOPE.match(scope):
        raise ScopeError(f"scope {scope[:60]!r} must be all, new, progressive or brand:<name>")
    return scope


@dataclass(frozen=True)
class Photo:
    sku: str
    brand: str
    index: int
    url: str | None

    def key(self, template: str) -> str:
        return template.format(brand=self.brand, sku=self.sku, n=self.index + 1, index=self.index)


def pending_photos(db: Pool, settings: EmbedBatchSettings, scope: str) -> list[Photo]:
    brand = scope.split(":", 1)[1] if scope.startswith("brand:") else None
    skus: list[str] | None = None
    per_sku = settings.images_per_sku
    with db.connection() as conn:
        if scope == "progressive":
            rows = conn.execute(
                LOW_SCORE_SQL,
                {"lookback": settings.progressive_lookback, "max_score": settings.progressive_score_max},
            ).fetchall()
            skus = sorted(str(r[0]) for r in rows)
            per_sku = settings.progressive_images_max
            if not skus:
                return []
        rows = conn.execute(
            PENDING_SQL,
            {"per_sku": per_sku, "brand": brand, "skus": skus, "model": settings.model_version},
        ).fetchall()
    return [Photo(sku, b, int(idx), url) for sku, b, idx, url in rows]


class JobStore:
    """Job state in Redis."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    @staticmethod
    def key(job_id: str) -> str:
        return f"embed_batch:job:{job_id}"

    def create(self, scope: str, batch_size: int) -> str:
        job_id = uuid.uuid4().hex[:16]
        now = time.time()
        self.r.hset(
            self.key(job_id),
            mapping={
                "id": job_id,
                "scope": scope,
                "batch_size": batch_size,
                "state": "queued",
                "total": 0,
                "done": 0,
                "errors": 0,
                "created_at": now,
            },
        )
        self.r.set("embed_batch:current", job_id)
        return job_id

    def get(self, job_id: str | None = None) -> dict[str, Any] | None:
        job_id = job_id or _text(self.r.get("embed_batch:current"))
        if not job_id:
            return None
        raw = self.r.hgetall(self.key(job_id))
        if not raw:
            return None
        job: dict[str, Any] = {_text(k): _text(v) for k, v in raw.items()}
        for name in ("batch_size", "total", "done", "errors"):
            job[name] = int(job.get(name) or 0)
        for name in ("created_at", "started_at", "finished_at", "heartbeat", "rate"):
            if job.get(name) not in (None, ""):
                job[name] = float(job[name])
        job["last_errors"] = [_text(e) for e in self.r.lrange(self.key(job_id) + ":errors", 0, 9)]
        return job

    def update(self, job_id: str, **fields: Any) -> None:
        self.r.hset(self.key(job_id), mapping={k: v for k, v in fields.items()})

    def error(self, job_id: str, message: str) -> None:
        pipe = self.r.pipeline()
        pipe.hincrby(self.key(job_id), "errors", 1)
        pipe.lpush(self.key(job_id) + ":errors", message[:300])
        pipe.ltrim(self.key(job_id) + ":errors", 0, 49)
        pipe.execute()

    def claim(self, job_id: str, owner: str, ttl_s: int) -> bool:
        """One runner per job: a lock refreshed with every batch."""
        key = f"embed_batch:lock:{job_id}"
        if self.r.set(key, owner, nx=True, ex=ttl_s):
            return True
        if _text(self.r.get(key)) == owner:
            self.r.expire(key, ttl_s)
            return True
        return False

    def release(self, job_id: str, owner: str) -> None:
        key = f"embed_batch:lock:{job_id}"
        if _text(self.r.get(key)) == owner:
            self.r.delete(key)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else ("" if value is None else str(value))


@dataclass
class JobResult:
    job_id: str
    total: int
    done: int
    errors: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0


def run_job(
    job_id: str,
    *,
    settings: EmbedBatchSettings,
    db: Pool,
    store: ObjectStore,
    encoder: ImageEncoder,
    jobs: JobStore,
    on_batch: Any = None,
) -> JobResult | None:
    """Embed every pending photo of the job's scope; None if another runner holds the job."""
    job = jobs.get(job_id)
    if job is None:
        raise KeyError(f"no embedding job {job_id}")
    owner = uuid.uuid4().hex
    if not jobs.claim(job_id, owner, settings.job_stale_after_s):
        log.info("job already running elsewhere", extra={"job_id": job_id})
        return None
    start = time.monotonic()
    started_at = job.get("started_at") or time.time()
    try:
        photos = pending_photos(db, settings, str(job["scope"]))
        done_before = int(job["done"])
        total = done_before + len(photos)
        jobs.update(job_id, state="running", started_at=started_at, total=total, heartbeat=time.time())
        done = 0
        batch_size = int(job["batch_size"]) or settings.batch_size
        for offset in range(0, len(photos), batch_size):
            batch = photos[offset : offset + batch_size]
            arrays, ready = [], []
            for photo in batch:
                key = photo.key(settings.originals_key)
                try:
                    data = store.get_bytes(key)
                    if len(data) > settings.max_image_bytes:
                        raise ImageError(413, f"{key} is {len(data)} bytes")
                    arrays.append(preprocess(decode_image(data, key)))
                    ready.append((photo, photo.url or store.url(key)))
                except (ObjectStorageError, ImageError) as exc:
                    jobs.error(job_id, f"{photo.sku}/{photo.index}: {exc}")
            if arrays:
                vectors = encoder.embed_batch(np.stack(arrays))
                with db.connection() as conn:
                    for (photo, url), vec in zip(ready, vectors, strict=True):
                        literal = "[" + ",".join(f"{float(v):.7g}" for v in vec) + "]"
                        conn.execute(
                            UPSERT_SQL,
                            (photo.sku, photo.brand, url, photo.index, literal, settings.model_version),
                        )
                done += len(ready)
            elapsed = time.monotonic() - start
            jobs.update(
                job_id,
                done=done_before + done,
                heartbeat=time.time(),
                rate=round(done / max(elapsed, 1e-6), 3),
            )
            jobs.claim(job_id, owner, settings.job_stale_after_s)
            if on_batch is not None:
                on_batch(len(ready), len(batch) - len(ready))
        seconds = time.monotonic() - start
        final = jobs.get(job_id) or {}
        jobs.update(job_id, state="done", finished_at=time.time(), rate=round(done / max(seconds, 1e-6), 3))
        return JobResult(job_id, total, done_before + done, int(final.get("errors", 0)), seconds)
    except Exception as exc:
        jobs.update(job_id, state="failed", finished_at=time.time(), failure=str(exc)[:300])
        raise
    finally:
        jobs.release(job_id, owner)
