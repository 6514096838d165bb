from __future__ import annotations

import asyncio
import threading

import pytest
from psycopg_pool import PoolTimeout
from pydantic import SecretStr

from unde_common.db import (
    DatabaseUnavailableError,
    PoolConfig,
    acheck,
    check,
    create_async_pool,
    create_pool,
    describe_dsn,
)
from unde_common.settings import DbPoolSettings
from unde_testkit.testing import PostgresHandle, free_port

pytestmark = pytest.mark.timeout(120)


def test_describe_dsn_hides_password() -> None:
    assert describe_dsn("postgresql://scraper:hunter2@10.1.0.8:6432/unde_staging") == (
        "postgresql://scraper@10.1.0.8:6432/unde_staging"
    )
    assert describe_dsn(SecretStr("postgresql://u:p@h/db")) == "postgresql://u@h/db"
    assert describe_dsn("host=x dbname=y") == "<conninfo>"


def test_pool_from_settings_checks_and_names_itself(pg: PostgresHandle) -> None:
    settings = DbPoolSettings(app_name="scraper", db_pool_min_size=2, db_pool_max_size=3)
    config = PoolConfig.from_settings(settings)
    assert (config.min_size, config.max_size, config.prepared_statements) == (2, 3, False)
    with create_pool(SecretStr(pg.dsn), app_name="scraper", config=config, wait=True) as pool:
        check(pool)
        assert pool.get_stats()["pool_size"] == 2
        with pool.connection() as conn:
            assert conn.prepare_threshold is None  # PgBouncer transaction mode
            names = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'scraper'"
            ).fetchone()
            assert names is not None and names[0] >= 2


def test_pool_is_bounded_and_times_out(pg: PostgresHandle) -> None:
    config = PoolConfig(min_size=0, max_size=1, timeout_s=0.5)
    with create_pool(pg.dsn, app_name="bounded", config=config) as pool:
        held = threading.Event()
        release = threading.Event()

        def hold() -> None:
            with pool.connection():
                held.set()
                release.wait(5)

        t = threading.Thread(target=hold)
        t.start()
        assert held.wait(5)
        try:
            with pytest.raises(PoolTimeout), pool.connection():
                pass
            with pytest.raises(DatabaseUnavailableError, match="PoolTimeout"):
                check(pool, timeout_s=0.3)
        finally:
            release.set()
            t.join()
        check(pool)


def test_check_fails_clearly_when_database_is_down() -> None:
    dsn = f"postgresql://scraper:hunter2@127.0.0.1:{free_port()}/unde_staging"
    config = PoolConfig(min_size=0, max_size=1, timeout_s=1.0, connect_timeout_s=1)
    with (
        create_pool(dsn, app_name="scraper", config=config) as pool,
        pytest.raises(DatabaseUnavailableError) as info,
    ):
        check(pool, timeout_s=1.0)
    message = str(info.value)
    assert "scraper:postgresql://scraper@127.0.0.1" in message and "hunter2" not in message


def test_async_pool(pg: PostgresHandle) -> None:
    async def main() -> tuple[str, int]:
        pool = create_async_pool(pg.dsn, app_name="mood_agent", config=PoolConfig(min_size=1, max_size=2))
        await pool.open(wait=True)
        try:
            await acheck(pool)
            async with pool.connection() as conn:
                cur = await conn.execute("SELECT current_setting('application_name'), 1")
                row = await cur.fetchone()
                assert row is not None
                return str(row[0]), int(row[1])
        finally:
            await pool.close()

    assert asyncio.run(main()) == ("mood_agent", 1)


def test_async_check_down() -> None:
    async def main() -> None:
        dsn = f"postgresql://u:p@127.0.0.1:{free_port()}/x"
        pool = create_async_pool(dsn, app_name="x", config=PoolConfig(min_size=0, connect_timeout_s=1))
        await pool.open()
        try:
            await acheck(pool, timeout_s=0.5)
        finally:
            await pool.close()

    with pytest.raises(DatabaseUnavailableError):
        asyncio.run(main())


def test_pgvector_is_available_for_later_schemas(pg: PostgresHandle) -> None:
    dsn = pg.create_database("vectors", extensions=("vector",))
    with create_pool(dsn, app_name="t", config=PoolConfig(min_size=0)) as pool, pool.connection() as conn:
        row = conn.execute("SELECT '[1,2,2]'::vector(3) <-> '[1,2,3]'::vector(3)").fetchone()
        assert row is not None and row[0] == pytest.approx(1.0)
