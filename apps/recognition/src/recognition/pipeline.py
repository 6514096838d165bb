"""The recognition pipeline v5.1 (5 steps; the design is in ``apps/recognition/README.md``).

1. **detect** — ximilar-gw ``/detect``; the items are published at once (progressive loading).
   Ximilar down or nothing found → the whole photo is one item, so search still runs.
2. **retrieve** — ximilar-gw ``/search`` per item (pgvector kNN + Ximilar booster per SEARCH_BACKEND).
3. **availability** — candidates kept only if staging ``raw_availability`` has a fresh
   (``AVAILABILITY_WINDOW``) non-empty row; fewer than ``MIN_CANDIDATES`` left → one re-query with
   ``requery_top_k`` and the Ximilar booster forced, filtered again.
4. **tag** — llm-reranker ``/tag`` (style, occasion, brand_style, season) and, per
   ``TAGGING_MODE`` (always | on_demand: top score < CONFIDENCE_HIGH | off), Ximilar's attributes
   (type, color, material, pattern): a detected item already has them (ximilar-gw ``/detect``
   passes on the tags Ximilar's detect_tags gave each object), so only an item without them (the
   whole-photo fallback) costs a ximilar-gw ``/tag`` call; the calls run in parallel.
5. **rerank** — llm-reranker ``/rerank`` of the top ``rerank_top_k``; then the bands: > 0.85 exact
   (top 1), 0.5-0.85 similar (top 3-5), < 0.5 style (attribute fallback: SQL over ``products``).

Every step records its status (ok | empty | degraded | failed | skipped), timing and result in the
request's ``recognition_requests`` row. Failing providers degrade the answer, never lose it.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import redis
from celery.exceptions import SoftTimeLimitExceeded
from psycopg import Connection
from psycopg.rows import TupleRow
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from recognition.settings import RecognitionSettings
from unde_common.http import ProviderClient, ProviderError, RetryPolicy, service_config
from unde_common.metrics import AppMetrics

__all__ = ["Pipeline", "PipelineMetrics", "StepLog"]

log = logging.getLogger(__name__)
T = TypeVar("T")
Pool = ConnectionPool[Connection[TupleRow]]

AVAILABILITY_SQL = """
SELECT a.brand, a.product_id, a.store_id, a.sizes_in_stock, a.fetched_at, s.name, s.mall_name
FROM raw_availability a
LEFT JOIN raw_stores s ON s.brand = a.brand AND s.store_id = a.store_id
WHERE a.product_id = ANY(%(skus)s)
  AND a.fetched_at > now() - %(window)s::interval
  AND a.sizes_in_stock NOT IN ('[]'::jsonb, '{}'::jsonb, 'null'::jsonb)
ORDER BY a.fetched_at DESC
"""

STYLE_SQL = """
SELECT sku, brand, name, price, currency, category, colour, image_url, image_urls,
       (CASE WHEN %(cat)s::text <> '' AND category ILIKE '%%' || %(cat)s || '%%' THEN 2 ELSE 0 END
      + CASE WHEN %(colour)s::text <> '' AND colour ILIKE '%%' || %(colour)s || '%%' THEN 1 ELSE 0 END
       ) AS match
FROM products
WHERE in_stock
ORDER BY match DESC, synced_at DESC, sku
LIMIT %(limit)s
"""

INSERT_SQL = """
INSERT INTO recognition_requests (id, user_id, photo_url, status, search_backend)
VALUES (%s, %s, %s, 'processing', NULL)
"""

UPDATE_SQL = """
UPDATE recognition_requests SET
    status = %(status)s, error_message = %(error)s,
    detected_items = %(detected)s, detection_time_ms = %(t_detect)s,
    tags = %(tags)s, tagging_time_ms = %(t_tag)s,
    search_results = %(search)s, search_time_ms = %(t_retrieve)s, search_backend = %(backend)s,
    used_ximilar_booster = %(booster)s, used_ximilar_tagging = %(xtag)s,
    availability_results = %(avail)s, availability_time_ms = %(t_avail)s,
    candidates_after_availability = %(after_avail)s,
    final_matches = %(final)s, rerank_time_ms = %(t_rerank)s,
    step_timings_ms = %(timings)s, step_results = %(steps)s,
    total_time_ms = %(total)s, items_detected = %(n_items)s, items_matched = %(n_matched)s
WHERE id = %(id)s
"""


class PipelineMetrics:
    """Spec 01 §19 metrics of the orchestrator (prefix ``recognition_``)."""

    def __init__(self, metrics: AppMetrics) -> None:
        self.duration = metrics.histogram("pipeline_duration_ms", "recognize_photo wall time (ms).")
        self.requests = metrics.counter("requests", "Recognition requests by final status.", ["status"])
        self.errors = metrics.counter("orchestrator_errors", "Failed or degraded steps, by step.", ["step"])
        self.step_ms = metrics.histogram("step_duration_ms", "Time per pipeline step (ms).", ["step"])
        self.queue_size = metrics.gauge(
            "queue_size", "recognition_queue length seen by the latest task.", multiprocess_mode="mostrecent"
        )
        self.after_availability = metrics.histogram(
            "candidates_after_availability",
            "Candidates left per item after the availability filter.",
            buckets=(0, 1, 2, 3, 5, 10, 20, 50),
        )
        rate = "mostrecent"
        self.pass_rate = metrics.gauge(
            "availability_filter_pass_rate",
            "Share of candidates in stock (all workers).",
            multiprocess_mode=rate,
        )
        self.booster_rate = metrics.gauge(
            "used_ximilar_booster_rate",
            "Share of requests that used the Ximilar booster.",
            multiprocess_mode=rate,
        )
        self.tagging_rate = metrics.gauge(
            "used_ximilar_tagging_rate",
            "Share of requests that used Ximilar's fashion tags (from detection or a /tag call).",
            multiprocess_mode=rate,
        )
        self.bands = metrics.counter("matches", "Items by result band.", ["band"])


@dataclass
class StepLog:
    timings: dict[str, int] = field(default_factory=dict)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    def record(self, step: str, started: float, status: str, **detail: Any) -> None:
        self.timings[step] = round((time.perf_counter() - started) * 1000)
        self.results[step] = {"status": status, **detail}


class _Deadline:
    def __init__(self, budget_s: float) -> None:
        self.end = time.monotonic() + budget_s

    def left(self) -> float:
        return self.end - time.monotonic()


class Pipeline:
    """One per worker process (pools and clients are created after the fork)."""

    def __init__(
        self,
        settings: RecognitionSettings,
        *,
        main_db: Pool,
        staging_db: Pool,
        redis_client: redis.Redis,
        metrics: PipelineMetrics,
    ) -> None:
        self.s = settings
        self.main_db = main_db
        self.staging_db = staging_db
        self.redis = redis_client
        self.m = metrics
        no_retry = RetryPolicy(max_attempts=2, backoff_base_s=0.2, backoff_max_s=1.0, max_retry_after_s=2.0)
        self.gw = ProviderClient(
            service_config(
                settings,
                "ximilar-gw",
                settings.ximilar_gw_url,
                read_timeout_s=settings.ximilar_gw_timeout_s,
                retry=no_retry,
            )
        )
        self.llm = ProviderClient(
            service_config(
                settings,
                "llm-reranker",
                settings.llm_reranker_url,
                read_timeout_s=settings.llm_reranker_timeout_s,
                retry=no_retry,
            )
        )
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="recognition")

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.gw.close()
        self.llm.close()

    # ------------------------------------------------------------------ helpers

    def _call(self, client: ProviderClient, path: str, body: dict[str, Any], deadline: _Deadline) -> Any:
        left = deadline.left()
        if left < 0.5:
            raise TimeoutError(f"no time left for {client.config.name} {path}")
        timeout = min(left, client.config.read_timeout_s)
        return client.post_json(path, json=body, timeout=timeout)

    def _parallel(self, calls: Sequence[Callable[[], T]]) -> list[T | BaseException]:
        futures = [self.pool.submit(c) for c in calls]
        out: list[T | BaseException] = []
        for f in futures:
            try:
                out.append(f.result())
            except SoftTimeLimitExceeded:
                raise
            except Exception as exc:
                out.append(exc)
        return out

    def _publish(self, request_id: str, payload: dict[str, Any]) -> None:
        try:
            message = json.dumps({"request_id": request_id, **payload})
            pipe = self.redis.pipeline()
            if payload.get("step") == "detect":
                pipe.set(f"recognition:detection:{request_id}", message, ex=self.s.progress_ttl_s)
            pipe.publish(f"recognition:progress:{request_id}", message)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("progress not published", extra={"request_id": request_id, "error": str(exc)})

    def _stats(self, booster: bool, xtag: bool, checked: int, passed: int) -> None:
        try:
            pipe = self.redis.pipeline()
            for name, value in (
                ("requests", 1),
                ("booster", int(booster)),
                ("tagging", int(xtag)),
                ("avail_in", checked),
                ("avail_out", passed),
            ):
                pipe.hincrby("recognition:stats", name, value)
            pipe.llen("recognition_queue")
            *totals, queue = pipe.execute()
            n, boosted, tagged, a_in, a_out = (int(v) for v in totals)
            self.m.booster_rate.set(boosted / max(1, n))
            self.m.tagging_rate.set(tagged / max(1, n))
            if a_in:
                self.m.pass_rate.set(a_out / a_in)
            self.m.queue_size.set(int(queue))
        except redis.RedisError as exc:
            log.warning("stats not updated", extra={"error": str(exc)})

    # ------------------------------------------------------------------ steps

    def detect(self, photo_url: str, steps: StepLog, dl: _Deadline) -> list[dict[str, Any]]:
        t = time.perf_counter()
        try:
            items: list[dict[str, Any]] = self._call(self.gw, "/detect", {"url": photo_url}, dl)["items"]
        except ProviderError as exc:
            if exc.status is not None and 400 <= exc.status < 500 and exc.status != 429:
                steps.record("detect", t, "failed", error=_detail(exc))
                raise BadPhotoError(_detail(exc)) from None
            self.m.errors.labels("detect").inc()
            steps.record("detect", t, "failed", error=str(exc), fallback="whole photo")
            return [
                {"crop_url": photo_url, "bbox": None, "category": None, "confidence": None, "whole": True}
            ]
        except (TimeoutError, KeyError, TypeError) as exc:
            self.m.errors.labels("detect").inc()
            steps.record("detect", t, "failed", error=repr(exc), fallback="whole photo")
            return [
                {"crop_url": photo_url, "bbox": None, "category": None, "confidence": None, "whole": True}
            ]
        if not items:
            steps.record("detect", t, "empty", fallback="whole photo")
            return [
                {"crop_url": photo_url, "bbox": None, "category": None, "confidence": None, "whole": True}
            ]
        steps.record("detect", t, "ok", items=len(items))
        return items

    def _search(self, item: dict[str, Any], top_k: int, force: bool, dl: _Deadline) -> dict[str, Any]:
        body = {"crop_url": item["crop_url"], "category": item.get("category"), "top_k": top_k}
        if force:
            body["force_booster"] = True
        answer: dict[str, Any] = self._call(self.gw, "/search", body, dl)
        return answer

    def retrieve(self, items: list[dict[str, Any]], steps: StepLog, dl: _Deadline) -> list[dict[str, Any]]:
        t = time.perf_counter()
        answers = self._parallel(
            [partial(self._search, it, self.s.retrieve_top_k, False, dl) for it in items]
        )
        results: list[dict[str, Any]] = []
        failed = []
        for answer in answers:
            if isinstance(answer, BaseException):
                failed.append(str(answer)[:300])
                results.append(
                    {
                        "candidates": [],
                        "backend": None,
                        "used_ximilar_booster": False,
                        "error": str(answer)[:300],
                    }
                )
            else:
                results.append(answer)
        if failed:
            self.m.errors.labels("retrieve").inc()
        status = (
            "failed"
            if len(failed) == len(items)
            else ("degraded" if failed or any(r.get("degraded") for r in results) else "ok")
        )
        steps.record("retrieve", t, status, candidates=[len(r["candidates"]) for r in results], errors=failed)
        return results

    def _available(self, candidates: list[dict[str, Any]]) -> list[dict[str, Any]]:
        skus = sorted({str(c["sku_id"]) for c in candidates})
        if not skus:
            return []
        with self.staging_db.connection() as conn:
            rows = conn.execute(
                AVAILABILITY_SQL, {"skus": skus, "window": self.s.availability_window}
            ).fetchall()
        stock: dict[str, list[dict[str, Any]]] = {}
        for brand, product_id, store_id, sizes, fetched_at, store_name, mall in rows:
            stock.setdefault(product_id, []).append(
                {
                    "brand": brand,
                    "store_id": store_id,
                    "store": store_name,
                    "mall": mall,
                    "sizes": sizes,
                    "fetched_at": fetched_at.isoformat(),
                }
            )
        kept = []
        for cand in candidates:
            stores = [
                s
                for s in stock.get(str(cand["sku_id"]), [])
                if not cand.get("brand") or str(s["brand"]).lower() == str(cand["brand"]).lower()
            ]
            if stores:
                kept.append({**cand, "availability": stores})
        return kept

    def availability(
        self, items: list[dict[str, Any]], found: list[dict[str, Any]], steps: StepLog, dl: _Deadline
    ) -> tuple[list[list[dict[str, Any]]], int, int, bool]:
        """Per item the available candidates; (lists, checked, passed, requeried_with_booster)."""
        t = time.perf_counter()
        out: list[list[dict[str, Any]]] = []
        checked = passed = 0
        requeried: list[int] = []
        booster_on_requery = False
        try:
            for index, (item, answer) in enumerate(zip(items, found, strict=True)):
                candidates = answer.get("candidates", [])
                kept = self._available(candidates)
                checked += len(candidates)
                if len(kept) < self.s.min_candidates and dl.left() > 3:
                    try:
                        again = self._search(item, self.s.requery_top_k, True, dl)
                    except (ProviderError, TimeoutError) as exc:
                        log.warning("re-query failed", extra={"error": str(exc)})
                    else:
                        requeried.append(index)
                        booster_on_requery = booster_on_requery or bool(again.get("used_ximilar_booster"))
                        seen = {c["sku_id"] for c in candidates}
                        extra = [c for c in again.get("candidates", []) if c["sku_id"] not in seen]
                        checked += len(extra)
                        kept = sorted(kept + self._available(extra), key=lambda c: -float(c["score"]))
                passed += len(kept)
                self.m.after_availability.observe(len(kept))
                out.append(kept)
        except Exception as exc:  # staging DB down: keep the unfiltered candidates, say so
            self.m.errors.labels("availability").inc()
            steps.record("availability", t, "failed", error=f"{exc.__class__.__name__}: {exc}"[:300])
            return [a.get("candidates", []) for a in found], 0, 0, False
        status = "ok" if any(out) else "empty"
        steps.record(
            "availability",
            t,
            status,
            checked=checked,
            passed=passed,
            requeried_items=requeried,
            window_s=self.s.availability_window.total_seconds(),
        )
        return out, checked, passed, booster_on_requery

    def tag(
        self, items: list[dict[str, Any]], kept: list[list[dict[str, Any]]], steps: StepLog, dl: _Deadline
    ) -> tuple[list[dict[str, Any]], bool]:
        t = time.perf_counter()
        if dl.left() < 2:
            steps.record("tag", t, "skipped", reason="time limit")
            return [{} for _ in items], False
        mode = self.s.tagging_mode

        def wants_ximilar(cands: list[dict[str, Any]]) -> bool:
            if mode == "always":
                return True
            if mode == "off":
                return False
            return not cands or float(cands[0]["score"]) < self.s.confidence_high

        calls: list[Callable[[], Any]] = []
        plan: list[tuple[int, str]] = []
        tags: list[dict[str, Any]] = [{} for _ in items]
        used_ximilar = False
        from_detect = 0
        for i, item in enumerate(items):
            calls.append(partial(self._call, self.llm, "/tag", {"url": item["crop_url"]}, dl))
            plan.append((i, "llm"))
            if not wants_ximilar(kept[i]):
                continue
            detected = item.get("attributes")
            if isinstance(detected, dict) and any(v is not None for v in detected.values()):
                tags[i].update({k: v for k, v in detected.items() if v is not None})
                used_ximilar = True
                from_detect += 1
            else:
                calls.append(partial(self._call, self.gw, "/tag", {"url": item["crop_url"]}, dl))
                plan.append((i, "ximilar"))
        answers = self._parallel(calls)
        errors: list[str] = []
        for (i, source), answer in zip(plan, answers, strict=True):
            if isinstance(answer, BaseException):
                errors.append(f"{source}: {answer}"[:300])
                continue
            if source == "ximilar":
                used_ximilar = True
                tags[i].update({k: v for k, v in answer.items() if k != "tags" and v is not None})
            else:
                # the LLM's context tags; Ximilar's attributes (from detection) win where both name one
                tags[i] = {**{k: v for k, v in answer.items() if v is not None}, **tags[i]}
        if errors:
            self.m.errors.labels("tag").inc()
        answered = len(calls) - len(errors) + from_detect
        status = "failed" if not answered else ("degraded" if errors else "ok")
        steps.record(
            "tag",
            t,
            status,
            mode=mode,
            ximilar_calls=sum(1 for _, s in plan if s == "ximilar"),
            ximilar_from_detect=from_detect,
            errors=errors,
        )
        return tags, used_ximilar

    def rerank(
        self,
        items: list[dict[str, Any]],
        kept: list[list[dict[str, Any]]],
        tags: list[dict[str, Any]],
        steps: StepLog,
        dl: _Deadline,
    ) -> list[list[dict[str, Any]]]:
        """Per item the candidates in final order with their final score (reranked or retrieval)."""
        t = time.perf_counter()
        top = [k[: self.s.rerank_top_k] for k in kept]
        if dl.left() < 2:
            steps.record("rerank", t, "skipped", reason="time limit")
            return top
        calls = [
            partial(
                self._call, self.llm, "/rerank", {"crop_url": it["crop_url"], "candidates": c, "tags": tg}, dl
            )
            for it, c, tg in zip(items, top, tags, strict=True)
            if c
        ]
        answers = iter(self._parallel(calls))
        ordered: list[list[dict[str, Any]]] = []
        errors = []
        for cands in top:
            if not cands:
                ordered.append([])
                continue
            answer = next(answers)
            if isinstance(answer, BaseException):
                errors.append(str(answer)[:300])
                ordered.append([{**c, "retrieval_score": c["score"], "reranked": False} for c in cands])
                continue
            by_sku = {c["sku_id"]: c for c in cands}
            merged = []
            for r in answer.get("ranked", []):
                base = by_sku.get(r["sku_id"])
                if base is None:
                    continue
                merged.append(
                    {
                        **base,
                        "retrieval_score": base["score"],
                        **{k: v for k, v in r.items() if k != "sku_id"},
                    }
                )
            merged.sort(key=lambda c: -float(c["score"]))
            ordered.append(merged)
        if errors:
            self.m.errors.labels("rerank").inc()
        status = (
            "skipped"
            if not calls
            else ("failed" if len(errors) == len(calls) else ("degraded" if errors else "ok"))
        )
        steps.record("rerank", t, status, calls=len(calls), errors=errors)
        return ordered

    def style_fallback(self, item: dict[str, Any], tags: dict[str, Any]) -> list[dict[str, Any]]:
        category = _singular(str(item.get("category") or tags.get("type") or ""))
        colour = str(tags.get("color") or "").split()[0] if tags.get("color") else ""
        with self.main_db.connection() as conn:
            rows = conn.execute(
                STYLE_SQL, {"cat": category, "colour": colour, "limit": self.s.style_max}
            ).fetchall()
        out = []
        for sku, brand, name, price, currency, cat, col, image, images, match in rows:
            out.append(
                {
                    "sku_id": sku,
                    "brand": brand,
                    "score": round(int(match) / 3, 4),
                    "image_urls": list(images or []) or ([image] if image else []),
                    "metadata": {
                        "name": name,
                        "price": float(price) if price is not None else None,
                        "currency": currency,
                        "category": cat,
                        "colour": col,
                    },
                    "matched_on": {"category": category or None, "colour": colour or None},
                }
            )
        return out

    def bands(
        self,
        items: list[dict[str, Any]],
        ranked: list[list[dict[str, Any]]],
        tags: list[dict[str, Any]],
        steps: StepLog,
    ) -> list[dict[str, Any]]:
        out = []
        for item, cands, tg in zip(items, ranked, tags, strict=True):
            top = float(cands[0]["score"]) if cands else 0.0
            if cands and top > self.s.confidence_high:
                band, matches = "exact", [{"match_type": "exact", **cands[0]}]
            elif cands and top >= self.s.confidence_medium:
                band, matches = (
                    "similar",
                    [{"match_type": "similar", **c} for c in cands[: self.s.similar_max]],
                )
            else:
                band = "style"
                try:
                    matches = [{"match_type": "style", **c} for c in self.style_fallback(item, tg)]
                except Exception as exc:  # production DB down: the best retrieval results are all we have
                    self.m.errors.labels("style").inc()
                    steps.results.setdefault("style", {"status": "failed", "error": str(exc)[:300]})
                    matches = []
                if not matches:
                    matches = [{"match_type": "style", **c} for c in cands[: self.s.style_max]]
            self.m.bands.labels(band).inc()
            out.append(
                {
                    "category": item.get("category"),
                    "crop_url": item["crop_url"],
                    "bbox": item.get("bbox"),
                    "tags": tg,
                    "band": band,
                    "top_score": round(top, 4),
                    "matches": matches,
                }
            )
        return out

    # ------------------------------------------------------------------ the request

    def run(
        self,
        photo_url: str,
        user_id: str | None = None,
        request_id: str | None = None,
        *,
        budget_s: float | None = None,
    ) -> dict[str, Any]:
        start = time.perf_counter()
        rid = request_id or str(uuid.uuid4())
        dl = _Deadline(budget_s if budget_s is not None else self.s.task_soft_time_limit_s - 1.5)
        steps = StepLog()
        record: dict[str, Any] = {"id": rid, "status": "completed", "error": None}
        inserted = True
        try:
            with self.main_db.connection() as conn:
                conn.execute(INSERT_SQL, (rid, _uuid_or_none(user_id), photo_url))
        except Exception as exc:  # production DB down: the user still gets the result, the log says why
            inserted = False
            self.m.errors.labels("record").inc()
            log.error("recognition_requests row not written", extra={"request_id": rid, "error": str(exc)})
        result: dict[str, Any] = {"request_id": rid, "photo_url": photo_url, "items": []}
        items: list[dict[str, Any]] = []
        found: list[dict[str, Any]] = []
        kept: list[list[dict[str, Any]]] = []
        tags: list[dict[str, Any]] = []
        final: list[dict[str, Any]] = []
        booster = xtag = False
        checked = passed = 0
        try:
            items = self.detect(photo_url, steps, dl)
            self._publish(rid, {"step": "detect", "items": items})
            found = self.retrieve(items, steps, dl)
            booster = any(a.get("used_ximilar_booster") for a in found)
            kept, checked, passed, requery_booster = self.availability(items, found, steps, dl)
            booster = booster or requery_booster
            tags, xtag = self.tag(items, kept, steps, dl)
            ranked = self.rerank(items, kept, tags, steps, dl)
            final = self.bands(items, ranked, tags, steps)
            result["items"] = final
        except BadPhotoError as exc:
            record.update(status="failed", error=str(exc))
            result["error"] = str(exc)
        except SoftTimeLimitExceeded as exc:
            record.update(status="failed", error=f"time limit: {exc}")
            result["error"] = "time limit reached"
        total = round((time.perf_counter() - start) * 1000)
        result.update(status=record["status"], total_ms=total, steps=steps.results)
        try:
            if inserted:
                self._finish(record, steps, items, found, kept, tags, final, booster, xtag, total)
        except SoftTimeLimitExceeded:
            raise
        except Exception as exc:
            inserted = False
            self.m.errors.labels("record").inc()
            log.error("recognition_requests row not updated", extra={"request_id": rid, "error": str(exc)})
        result["recorded"] = inserted
        self._publish(rid, {"step": "done", "status": record["status"]})
        self._stats(booster, xtag, checked, passed)
        self.m.duration.observe(total)
        self.m.requests.labels(record["status"]).inc()
        for step, ms in steps.timings.items():
            self.m.step_ms.labels(step).observe(ms)
        return result

    def _finish(
        self,
        record: dict[str, Any],
        steps: StepLog,
        items: list[dict[str, Any]],
        found: list[dict[str, Any]],
        kept: list[list[dict[str, Any]]],
        tags: list[dict[str, Any]],
        final: list[dict[str, Any]],
        booster: bool,
        xtag: bool,
        total: int,
    ) -> None:
        backends = {str(a["backend"]) for a in found if a.get("backend")}
        params = {
            **record,
            "detected": Jsonb(items),
            "t_detect": steps.timings.get("detect"),
            "tags": Jsonb(tags),
            "t_tag": steps.timings.get("tag"),
            "search": Jsonb(found),
            "t_retrieve": steps.timings.get("retrieve"),
            "backend": next(iter(backends))
            if len(backends) == 1
            else (",".join(sorted(backends))[:20] or None),
            "booster": booster,
            "xtag": xtag,
            "avail": Jsonb([[c["sku_id"] for c in k] for k in kept]),
            "t_avail": steps.timings.get("availability"),
            "after_avail": sum(len(k) for k in kept) if kept else None,
            "final": Jsonb(final),
            "t_rerank": steps.timings.get("rerank"),
            "timings": Jsonb(steps.timings),
            "steps": Jsonb(steps.results),
            "total": total,
            "n_items": len(items),
            "n_matched": sum(1 for f in final if f["matches"]),
        }
        with self.main_db.connection() as conn:
            conn.execute(UPDATE_SQL, params)


class BadPhotoError(ValueError):
    """The photo itself cannot be used (bad/unreachable URL, not an image, too large)."""


def _detail(exc: ProviderError) -> str:
    if exc.body:
        try:
            return str(json.loads(exc.body).get("detail", exc.body))[:500]
        except ValueError:
            return exc.body[:500]
    return str(exc)


def _singular(word: str) -> str:
    word = word.strip().lower().replace("_", " ")
    if word.endswith("es") and word[:-2].endswith(("ss", "sh", "ch", "x")):
        return word[:-2]
    return word[:-1] if word.endswith("s") and not word.endswith("ss") else word


def _uuid_or_none(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return None
