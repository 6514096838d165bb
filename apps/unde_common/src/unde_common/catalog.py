"""The claim loop of the catalog pipeline's stages (photo_downloader, collage, ximilar_sync).

Each stage owns one status column of ``raw_products`` and works through it the same way
(:func:`work_through`):

1. claim a chunk of products (``FOR UPDATE SKIP LOCKED``, one transaction per chunk: two workers
   never take the same product, and a killed worker's chunk keeps its status and is claimed again);
   a retry run claims failed products below the stage's attempt limit, each at most once per run;
2. process the chunk (the stage's ``process``, usually on a thread pool), one :class:`Outcome` per
   product;
3. in the same transaction, mark each product done (``mark_ok`` with the outcome's parameters) or
   failed (``mark_error`` with the message), count it in the stage's products counter and log a
   failure;
4. stop at ``batch_size`` products or when nothing is left to claim, then count what is still
   waiting and set the stage's waiting and error-ratio gauges.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from prometheus_client import Counter, Gauge
from psycopg import Connection
from psycopg.rows import DictRow

__all__ = ["MAX_ERROR_CHARS", "Outcome", "StageMetrics", "Tally", "WorkQueue", "guarded", "work_through"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: the longest error message stored on a product
MAX_ERROR_CHARS = 2000


@dataclass(frozen=True, slots=True)
class WorkQueue:
    """One stage's share of ``raw_products``: its SQL and how its results are named.

    ``claim_new`` takes (limit); ``claim_retry`` (max attempts, ids already claimed in this run,
    limit); both select at least ``id``, ``brand`` and ``external_id``. ``mark_ok`` takes the
    parameters of :attr:`Outcome.mark`, ``mark_error`` (message, id). ``waiting`` counts what is
    left as column ``n``.
    """

    claim_new: str
    claim_retry: str
    mark_ok: str
    mark_error: str
    waiting: str
    #: the products counter's ``result`` label of a product done
    ok_result: str
    #: the warning logged for a failed product
    failure_message: str


@dataclass(frozen=True, slots=True)
class Outcome(Generic[T]):
    """How one claimed product ended: ``error`` None = done, and ``mark`` are the parameters of
    :attr:`WorkQueue.mark_ok`; ``value`` is what the stage keeps of it (for its summary)."""

    row: DictRow
    mark: tuple[Any, ...] = ()
    error: str | None = None
    value: T | None = None


@dataclass(frozen=True, slots=True)
class StageMetrics:
    """The three metrics every stage keeps (names differ per stage, spec 01 §19)."""

    #: products finished, labels (brand, result)
    products: Counter
    #: products still waiting after the run
    waiting: Gauge
    #: share of the run's products that failed (0..1)
    error_ratio: Gauge


@dataclass
class Tally:
    """What one run did."""

    products: int = 0
    ok: int = 0
    errors: int = 0
    waiting: int = 0
    seconds: float = 0.0


def work_through(
    connect: Callable[[], Connection[DictRow]],
    queue: WorkQueue,
    process: Callable[[Connection[DictRow], list[DictRow]], Sequence[Outcome[T]]],
    metrics: StageMetrics,
    *,
    retry: bool,
    max_attempts: int,
    batch_size: int,
    chunk_size: int,
    on_ok: Callable[[Outcome[T]], None] | None = None,
    on_error: Callable[[Outcome[T]], None] | None = None,
) -> Tally:
    """One run of a stage (see the module docstring). ``process`` gets the chunk's connection (its
    transaction is open) and rows; ``on_ok`` / ``on_error`` run after a product is marked."""
    tally = Tally()
    started = time.monotonic()
    seen: list[int] = []  # retry: a product failing again is not taken twice in one run
    with connect() as conn:
        while tally.products < batch_size:
            limit = min(chunk_size, batch_size - tally.products)
            with conn.transaction():
                if retry:
                    rows = conn.execute(queue.claim_retry, (max_attempts, seen, limit)).fetchall()
                else:
                    rows = conn.execute(queue.claim_new, (limit,)).fetchall()
                if not rows:
                    break
                seen.extend(row["id"] for row in rows)
                for outcome in process(conn, rows):
                    _finish(conn, queue, metrics, tally, outcome, on_ok, on_error)
            tally.products += len(rows)
        left = conn.execute(queue.waiting).fetchone()
        tally.waiting = int(left["n"]) if left else 0
    tally.seconds = time.monotonic() - started
    metrics.waiting.set(tally.waiting)
    if tally.products:
        metrics.error_ratio.set(tally.errors / tally.products)
    return tally


def _finish(
    conn: Connection[DictRow],
    queue: WorkQueue,
    metrics: StageMetrics,
    tally: Tally,
    outcome: Outcome[T],
    on_ok: Callable[[Outcome[T]], None] | None,
    on_error: Callable[[Outcome[T]], None] | None,
) -> None:
    row = outcome.row
    if outcome.error is None:
        conn.execute(queue.mark_ok, outcome.mark)
        tally.ok += 1
        metrics.products.labels(row["brand"], queue.ok_result).inc()
        if on_ok is not None:
            on_ok(outcome)
        return
    message = outcome.error[:MAX_ERROR_CHARS]
    conn.execute(queue.mark_error, (message, row["id"]))
    tally.errors += 1
    metrics.products.labels(row["brand"], "error").inc()
    if on_error is not None:
        on_error(outcome)
    log.warning(
        queue.failure_message,
        extra={"product_id": row["id"], "external_id": row["external_id"], "error": message},
    )


def guarded(work: Callable[[DictRow], Outcome[T]], what: str) -> Callable[[DictRow], Outcome[T]]:
    """``work`` that turns an unexpected exception into a failed outcome: a bug (or a MemoryError on
    an absurd image) must never leave a product claimed. Expected failures are ``work``'s to report."""

    def run(row: DictRow) -> Outcome[T]:
        try:
            return work(row)
        except Exception as exc:
            log.exception(f"unexpected {what} failure", extra={"product_id": row["id"]})
            return Outcome(row, error=f"unexpected {exc.__class__.__name__}: {exc}")

    return run
