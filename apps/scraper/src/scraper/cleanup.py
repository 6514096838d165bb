"""Daily staging cleanup (spec 01 §18 ``cleanup_old_data`` 04:00): rows older than
``CLEANUP_RETENTION_DAYS`` are deleted in chunks (short transactions, no long table locks):
availability by ``fetched_at``, run logs by ``started_at``, products by ``scraped_at`` (not seen by
any Apify run for that long, i.e. gone from the brand's catalog)."""

from __future__ import annotations

import logging
import time
from typing import Any, Final

from psycopg import sql

from scraper.runtime import Runtime

log = logging.getLogger(__name__)

TABLES: Final = (
    ("raw_availability", "fetched_at"),
    ("scraper_logs", "started_at"),
    ("raw_products", "scraped_at"),
)


def run(rt: Runtime) -> dict[str, Any]:
    s = rt.settings
    deleted: dict[str, int] = {}
    t0 = time.monotonic()
    with rt.connect() as conn:
        for table, column in TABLES:
            query = sql.SQL(
                "DELETE FROM {t} WHERE id IN (SELECT id FROM {t} "
                "WHERE {c} < now() - make_interval(days => %s) LIMIT %s FOR UPDATE SKIP LOCKED)"
            ).format(t=sql.Identifier(table), c=sql.Identifier(column))
            total = 0
            while True:
                with conn.transaction():
                    n = conn.execute(query, (s.cleanup_retention_days, s.cleanup_chunk_size)).rowcount
                total += n
                if n < s.cleanup_chunk_size:
                    break
            deleted[table] = total
            rt.metrics.cleanup_rows.labels(table).inc(total)
    result = {"deleted": deleted, "seconds": round(time.monotonic() - t0, 3)}
    log.info("cleanup_old_data finished", extra=result)
    return result
