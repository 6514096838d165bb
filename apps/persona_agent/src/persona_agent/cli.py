"""``unde-persona-cleanup`` (``python -m persona_agent.cli cleanup``): the daily 04:00 job —
expired temporary blocks, daily deltas older than 7 days, inactivity stage downgrades. Prints a
JSON report; run by the ``unde-persona-cleanup.timer`` systemd timer."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime

from persona_agent.db import PersonaStore
from persona_agent.settings import PersonaAgentSettings
from unde_common.db import create_async_pool
from unde_common.logging import configure_logging


async def _cleanup(settings: PersonaAgentSettings, now: datetime) -> dict[str, int]:
    pool = create_async_pool(settings.shard_0_db_url, app_name=f"{settings.app_name}:cleanup")
    await pool.open(wait=True, timeout=settings.db_pool_timeout_s)
    try:
        report = await PersonaStore(pool).cleanup(now)
    finally:
        await pool.close()
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
