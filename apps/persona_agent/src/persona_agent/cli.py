"""``unde-persona-cleanup`` (``python -m persona_agent.cli cleanup``): the daily 04:00 job —
expired temporary blocks, daily deltas older than 7 days, inactivity stage downgrades. Prints a
JSON report; run by the ``unde-persona-cleanup.timer`` systemd timer."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime

import redis.asyncio as aioredis

from persona_agent.db import PersonaStore
from persona_agent.settings import PersonaAgentSettings
from unde_common.db import PoolConfig
from unde_common.logging import configure_logging
from unde_common.shard_router import router_from_settings


async def _cleanup(settings: PersonaAgentSettings, now: datetime) -> dict[str, int]:
    """Every shard's current primary, found like the service finds it (routing cache, DB 12)."""
    routing = aioredis.Redis.from_url(
        settings.shard_routing_redis_url.get_secret_value(), socket_connect_timeout=1.0, socket_timeout=1.0
    )
    router = router_from_settings(
        settings,
        routing,
        app_name=f"{settings.app_name}:cleanup",
        pool_config=PoolConfig(min_size=0, max_size=1, timeout_s=settings.db_pool_timeout_s),
        routing_timeout_s=1.0,
    )
    try:
        report = await PersonaStore(router).cleanup(now, timeout_s=settings.db_pool_timeout_s)
    finally:
        await router.close()
        await routing.aclose()
    return report.as_dict()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="unde-persona-cleanup", description=__doc__)
    parser.add_argument("command", choices=["cleanup"], nargs="?", default="cleanup")
    parser.add_argument("--now", help="ISO timestamp to clean up as of (tests, catch-up runs)")
    args = parser.parse_args(argv)
    settings = PersonaAgentSettings.load()
    configure_logging(f"{settings.app_name}-cleanup", settings.log_level)
    now = datetime.fromisoformat(args.now) if args.now else datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    report = asyncio.run(_cleanup(settings, now))
    json.dump({"job": "persona_cleanup", "at": now.isoformat(), **report}, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
