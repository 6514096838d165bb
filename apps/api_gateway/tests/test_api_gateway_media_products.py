"""Catalog pages from a real migrated unde_main (pgserver) with the real gateway Redis cache."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import psycopg
import pytest
import redis
import redis.asyncio as aioredis
from psycopg.types.json import Jsonb
from psycopg_pool import PoolTimeout

from api_gateway.media_products import CACHE_PREFIX, Catalog, ProductQuery, split_values
from api_gateway.media_settings import MediaSettings
from unde_common.db import AsyncPools, DatabaseUnavailableError, PoolConfig
from unde_common.metrics import AppMetrics
from unde_testkit.recognition_testbed import migrate_database
from unde_testkit.testing import PostgresHandle, free_port

T = TypeVar("T")

SETTINGS = MediaSettings.load(s3_user_media_access_key="k", s3_user_media_secret_key="s")


@pytest.fixture(scope="module")
def main_dsn(pg: PostgresHandle) -> str:
    dsn = migrate_database(pg.dsn, "gw_media_main", "unde_main")
    with psycopg.connect(dsn) as conn:
        conn.execute("TRUNCATE products RESTART IDENTITY CASCADE")
        for i in range(25):
            brand = ("zara", "mango", "bershka")[i % 3]
            conn.execute(
                "INSERT INTO products (sku, brand, name, price, category, colour, image_url, image_urls,"
                " collage_url, in_stock) VALUES (%s, %s, %s, 49.90, %s, 'red', %s, %s, %s, %s)",
                (
                    f"SKU-{i:02}",
                    brand,
                    f"Item {i}",
                    "Jackets" if i % 2 else "Tops",
                    f"https://cdn.example/originals/{i}.jpg",
                    Jsonb([f"https://cdn.example/originals/{i}.jpg"]),
                    f"https://cdn.example/collages/{i}.jpg",
                    i % 5 != 0,
                ),
            )
    return dsn


@pytest.fixture
def cache_url(redis_url: str) -> Iterator[str]:
    url = redis_url.rsplit("/", 1)[0] + "/14"
    client = redis.Redis.from_url(url)
    for key in client.scan_iter(f"{CACHE_PREFIX}*"):
        client.delete(key)
    yield url
    client.close()


def run(
    dsn: str, cache_url: str, body: Callable[[Catalog], Awaitable[T]], metrics: AppMetrics | None = None
) -> T:
    async def main() -> T:
        pools = AsyncPools(
            "api_gateway", {"production_db": dsn}, PoolConfig(timeout_s=1, connect_timeout_s=1)
        )
        await pools.open()
        cache = aioredis.Redis.from_url(cache_url)
        try:
            catalog = Catalog(SETTINGS, pools["production_db"], cache, metrics or AppMetrics("api_gateway"))
            return await body(catalog)
        finally:
            await cache.aclose()
            await pools.close()

    return asyncio.run(main())


def sample(metrics: AppMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_a_page_carries_image_and_collage_urls_and_pages_on(main_dsn: str, cache_url: str) -> None:
    async def body(catalog: Catalog) -> list[dict[str, Any]]:
        first, _ = await catalog.page(ProductQuery(limit=10))
        second, _ = await catalog.page(ProductQuery(limit=10, after=first["next_after"]))
        third, _ = await catalog.page(ProductQuery(limit=10, after=second["next_after"]))
        assert third["next_after"] is None and len(third["items"]) == 5
        return [*first["items"], *second["items"], *third["items"]]

    items = run(main_dsn, cache_url, body)
    assert [i["sku"] for i in items] == [f"SKU-{i:02}" for i in range(25)]
    assert items[3]["image_url"] == "https://cdn.example/originals/3.jpg"
    assert items[3]["collage_url"] == "https://cdn.example/collages/3.jpg"
    assert items[3]["price"] == "49.90" and items[3]["currency"] == "KZT"


def test_filters_combine(main_dsn: str, cache_url: str) -> None:
    async def body(catalog: Catalog) -> dict[str, Any]:
        page, _ = await catalog.page(
            ProductQuery(brands=("zara", "mango"), categories=("Jackets",), in_stock=True, limit=50)
        )
        return page

    items = run(main_dsn, cache_url, body)["items"]
    expected = [i for i in range(25) if i % 3 in (0, 1) and i % 2 and i % 5 != 0]
    assert [i["sku"] for i in items] == [f"SKU-{i:02}" for i in expected]
    assert split_values(["zara, mango", "bershka", ""]) == ("zara", "mango", "bershka")


def test_second_lookup_is_a_cache_hit_and_the_ratio_says_so(main_dsn: str, cache_url: str) -> None:
    metrics = AppMetrics("api_gateway", process_collectors=False)

    async def body(catalog: Catalog) -> tuple[str, str, str]:
        query = ProductQuery(brands=("zara",), limit=5)
        first, where1 = await catalog.page(query)
        second, where2 = await catalog.page(ProductQuery(brands=("zara", "zara"), limit=5))
        assert first == second
        _, where3 = await catalog.page(ProductQuery(brands=("mango",), limit=5))
        return where1, where2, where3

    assert run(main_dsn, cache_url, body, metrics) == ("miss", "hit", "miss")
    name = "api_gateway_products_cache_requests_total"
    assert sample(metrics, name, result="hit") == 1
    assert sample(metrics, name, result="miss") == 2
    assert sample(metrics, name, result="stale") == 0
    assert sample(metrics, "api_gateway_products_cache_hit_ratio") == pytest.approx(1 / 3)
    keys = redis.Redis.from_url(cache_url).keys(f"{CACHE_PREFIX}*")
    assert len(keys) == 4  # two pages, each with its stale copy


def test_database_down_serves_the_stale_copy_else_raises(main_dsn: str, cache_url: str) -> None:
    query = ProductQuery(categories=("Tops",), limit=3)

    async def warm(catalog: Catalog) -> dict[str, Any]:
        page, _ = await catalog.page(query)
        return page

    fresh = run(main_dsn, cache_url, warm)
    redis.Redis.from_url(cache_url).delete(query.cache_key())  # the short-lived copy expired
    dead = f"postgresql://nobody@127.0.0.1:{free_port()}/unde_main"
    metrics = AppMetrics("api_gateway", process_collectors=False)

    async def down(catalog: Catalog) -> tuple[tuple[dict[str, Any], str], str]:
        stale = await catalog.page(query)
        # the DB failed a moment ago: the next page not in the cache is refused without asking it
        with pytest.raises(DatabaseUnavailableError) as refused:
            await catalog.page(ProductQuery(categories=("Coats",)))
        return stale, str(refused.value)

    (page, where), refused = run(dead, cache_url, down, metrics)
    assert (page, where) == (fresh, "stale")
    assert "PRODUCTS_DB_BACKOFF_S" in refused
    assert sample(metrics, "api_gateway_products_cache_requests_total", result="stale") == 1

    async def never_cached(catalog: Catalog) -> tuple[dict[str, Any], str]:
        return await catalog.page(ProductQuery(categories=("Coats",)))

    with pytest.raises(PoolTimeout):
        run(dead, cache_url, never_cached)


def test_redis_down_still_answers_from_the_database(main_dsn: str) -> None:
    dead_cache = f"redis://127.0.0.1:{free_port()}/14"

    async def body(catalog: Catalog) -> tuple[dict[str, Any], str]:
        return await catalog.page(ProductQuery(skus=("SKU-07",)))

    page, where = run(main_dsn, dead_cache, body)
    assert where == "miss" and [i["sku"] for i in page["items"]] == ["SKU-07"]
