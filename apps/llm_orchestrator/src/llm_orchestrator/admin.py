"""``unde-llm-orchestrator-admin``: key rotation, forget and GDPR erase from the command line (and from
the llm_orchestrator role).

Databases come from the orchestrator's settings (``LlmOrchestratorSettings.load()``: the shards'
``SHARD_<n>_DB_URL``, ``PRODUCTION_DB_URL``; SCRAM and TLS as every app connection,
:func:`unde_common.db.security_params`); the master key ring from ``MASTER_KEY_FILE``.
Every command prints one JSON object on stdout with a ``changed`` boolean (Ansible's
``changed_when``); logs go to stderr. Exit status 0, 1 on a refused or failed command.

    key-status                                   {"shards": {"0": {"1": 812, "2": 4}}}
    check-ring                                   exit 1 while a DEK uses a version the ring lacks
    rotate-master-key --to-version N [--batch 500] [--max-batches K]
    erase-user --user-id UUID [--no-media] [--no-redis]
    copy-tombstones [--day YYYY-MM-DD]           default: yesterday (UTC)
    soft-forget --conversation-id UUID --message-id UUID
    hard-delete --conversation-id UUID --message-id UUID [--reason user_request]

The erase and the tombstone copy reach stores the orchestrator's own credentials may not touch, so
their credentials come from the environment of the admin run only (never the app's .env):

* ``ERASE_REDIS_URLS``: comma-separated Redis URLs, one per DB holding user keys (local-redis DBs
  9 mood, 10 voice, 13 persona, 14 api_gateway), with a user allowed SCAN, GET and DEL there;
* ``ERASE_S3_ENDPOINT``, ``ERASE_S3_REGION`` (default ``hel1``), ``ERASE_S3_ACCESS_KEY``,
  ``ERASE_S3_SECRET_KEY``, ``ERASE_S3_BUCKET`` (default ``unde-user-media``): the user-media bucket;

The daily tombstone copy (a timer of the role) reads its bucket like any setting, from the environment
or the app's .env (:class:`TombstoneCopySettings`): ``TOMBSTONE_S3_ENDPOINT``, ``TOMBSTONE_S3_REGION``
(default ``hel1``), ``TOMBSTONE_S3_ACCESS_KEY``, ``TOMBSTONE_S3_SECRET_KEY`` (required),
``TOMBSTONE_S3_BUCKET`` (default ``backups``), ``TOMBSTONE_S3_PREFIX`` (default
``tombstones/deleted_messages_registry/``).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import os
import re
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict
from typing import TYPE_CHECKING, Any
from uuid import UUID

import psycopg
from psycopg.conninfo import make_conninfo
from pydantic import HttpUrl, SecretStr

from llm_orchestrator.crypto import MasterKeyError, MasterKeyRing, UnknownKeyVersionError
from llm_orchestrator.forget import copy_registry_to_object_storage, erase_user, hard_delete, soft_forget
from llm_orchestrator.keyrotation import key_status, missing_versions, rewrap_batch
from llm_orchestrator.settings import LlmOrchestratorSettings
from unde_common.db import PoolConfig, security_params
from unde_common.settings import SettingsError, UndeSettings

if TYPE_CHECKING:
    import redis.asyncio as aioredis
    from mypy_boto3_s3 import S3Client

__all__ = ["AdminError", "TombstoneCopySettings", "main", "shard_dsns"]

log = logging.getLogger("llm_orchestrator.admin")

APP_NAME = "llm_orchestrator_admin"
_SHARD_FIELD = re.compile(r"shard_(\d+)_db_url")
#: how often a rotation retries when only rows locked by writers are left
_LOCKED_RETRIES = 5


class AdminError(RuntimeError):
    """A refused command: the message goes to stderr and into the JSON as ``error``."""


class TombstoneCopySettings(UndeSettings):
    """Where ``copy-tombstones`` writes (the backups bucket); read from the orchestrator's .env."""

    app_name: str = "llm_orchestrator"
    tombstone_s3_endpoint: HttpUrl = HttpUrl("https://hel1.your-objectstorage.com")
    tombstone_s3_region: str = "hel1"
    tombstone_s3_access_key: SecretStr
    tombstone_s3_secret_key: SecretStr
    tombstone_s3_bucket: str = "backups"
    tombstone_s3_prefix: str = "tombstones/deleted_messages_registry/"


def shard_dsns(settings: LlmOrchestratorSettings) -> dict[int, SecretStr]:
    """Every ``SHARD_<n>_DB_URL`` the settings define, by shard index."""
    found: dict[int, SecretStr] = {}
    for name in type(settings).model_fields:
        match = _SHARD_FIELD.fullmatch(name)
        if match:
            found[int(match.group(1))] = getattr(settings, name)
    return dict(sorted(found.items()))


async def _connect(dsn: SecretStr, config: PoolConfig) -> psycopg.AsyncConnection[Any]:
    raw = dsn.get_secret_value()
    return await psycopg.AsyncConnection.connect(
        make_conninfo(raw, **security_params(dsn, config)),
        autocommit=True,
        prepare_threshold=None,
        connect_timeout=config.connect_timeout_s,
        application_name=APP_NAME,
    )


class Databases:
    """Autocommit connections to the shards and production, opened on first use."""

    def __init__(self, settings: LlmOrchestratorSettings, stack: AsyncExitStack) -> None:
        self.settings = settings
        self.stack = stack
        self.config = PoolConfig.from_settings(settings)
        self._shards: dict[int, psycopg.AsyncConnection[Any]] = {}
        self._production: psycopg.AsyncConnection[Any] | None = None

    async def shards(self) -> dict[int, psycopg.AsyncConnection[Any]]:
        for index, dsn in shard_dsns(self.settings).items():
            if index not in self._shards:
                conn = await _connect(dsn, self.config)
                self.stack.push_async_callback(conn.close)
                self._shards[index] = conn
        return self._shards

    async def production(self) -> psycopg.AsyncConnection[Any]:
        if self._production is None:
            self._production = await _connect(self.settings.production_db_url, self.config)
            self.stack.push_async_callback(self._production.close)
        return self._production


def _ring(settings: LlmOrchestratorSettings) -> MasterKeyRing:
    return MasterKeyRing.load(settings.master_key_file)


async def _statuses(db: Databases) -> dict[int, dict[int, int]]:
    return {index: await key_status(conn) for index, conn in (await db.shards()).items()}


def _by_str(status: Mapping[int, Mapping[int, int]]) -> dict[str, dict[str, int]]:
    return {str(s): {str(v): n for v, n in versions.items()} for s, versions in status.items()}


async def cmd_key_status(args: argparse.Namespace, db: Databases) -> tuple[dict[str, Any], int]:
    return {"changed": False, "shards": _by_str(await _statuses(db))}, 0


async def cmd_check_ring(args: argparse.Namespace, db: Databases) -> tuple[dict[str, Any], int]:
    ring = _ring(db.settings)
    missing = {
        index: lost
        for index, status in (await _statuses(db)).items()
        if (lost := missing_versions(status, ring))
    }
    out: dict[str, Any] = {
        "changed": False,
        "ok": not missing,
        "ring": {"current": ring.current, "versions": list(ring.versions)},
        "missing": _by_str(missing),
    }
    if missing:
        detail = "; ".join(
            f"shard {s}: version {v} ({n} DEKs)"
            for s, versions in missing.items()
            for v, n in versions.items()
        )
        out["error"] = (
            f"DEKs still use master key versions the ring lacks ({detail}): run rotate-master-key "
            "before the old key is retired"
        )
        return out, 1
    return out, 0


async def cmd_rotate(args: argparse.Namespace, db: Databases) -> tuple[dict[str, Any], int]:
    ring = _ring(db.settings)
    to_version: int = args.to_version
    ring.key(to_version)
    if ring.current != to_version:
        raise AdminError(
            f"the delivered ring's current version is {ring.current}, not {to_version}: deliver the ring "
            f"with current = {to_version} first, or new DEKs keep being wrapped under the old key"
        )
    rewrapped: dict[str, int] = {}
    batches = 0
    for index, conn in (await db.shards()).items():
        done = 0
        locked_retries = 0
        while args.max_batches is None or batches < args.max_batches:
            n = await rewrap_batch(conn, ring, to_version, args.batch)
            if n:
                batches += 1
                done += n
                continue
            left = sum(v for k, v in (await key_status(conn)).items() if k != to_version)
            if not left or locked_retries >= _LOCKED_RETRIES:
                break
            locked_retries += 1  # only rows locked by writers are left: they commit within moments
            await asyncio.sleep(1)
        rewrapped[str(index)] = done
    statuses = await _statuses(db)
    remaining = {
        str(s): {str(v): n for v, n in status.items() if v != to_version} for s, status in statuses.items()
    }
    complete = not any(any(versions.values()) for versions in remaining.values())
    out: dict[str, Any] = {
        "changed": any(rewrapped.values()),
        "to_version": to_version,
        "rewrapped": rewrapped,
        "rewrapped_total": sum(rewrapped.values()),
        "batches": batches,
        "remaining": remaining,
        "complete": complete,
        "shards": _by_str(statuses),
    }
    if not complete and args.max_batches is None:
        out["error"] = "DEKs are left under older versions (locked by writers?): run rotate-master-key again"
        return out, 1
    return out, 0


def _env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, "").strip()
    if value:
        return value
    if default is not None:
        return default
    raise AdminError(f"environment variable {name} is not set")


def _s3_from_env(prefix: str, default_bucket: str) -> tuple[S3Client, str]:
    from unde_common.s3 import S3Config, s3_client

    config = S3Config(
        endpoint_url=_env(f"{prefix}_S3_ENDPOINT").rstrip("/"),
        access_key=SecretStr(_env(f"{prefix}_S3_ACCESS_KEY")),
        secret_key=SecretStr(_env(f"{prefix}_S3_SECRET_KEY")),
        bucket=_env(f"{prefix}_S3_BUCKET", default_bucket),
        region=_env(f"{prefix}_S3_REGION", "hel1"),
    )
    return s3_client(config), config.bucket


@asynccontextmanager
async def _redis_from_env() -> AsyncIterator[list[aioredis.Redis]]:
    import redis.asyncio as aioredis

    urls = [u.strip() for u in _env("ERASE_REDIS_URLS").split(",") if u.strip()]
    clients = [aioredis.Redis.from_url(url) for url in urls]
    try:
        yield clients
    finally:
        for client in clients:
            await client.aclose()


async def cmd_erase(args: argparse.Namespace, db: Databases) -> tuple[dict[str, Any], int]:
    s3, bucket = (None, "unde-user-media") if args.no_media else _s3_from_env("ERASE", "unde-user-media")
    shards = list((await db.shards()).values())
    production = await db.production()
    async with AsyncExitStack() as stack:
        clients: list[aioredis.Redis] = (
            [] if args.no_redis else await stack.enter_async_context(_redis_from_env())
        )
        report = await erase_user(
            shards, production, args.user_id, s3=s3, media_bucket=bucket, redis_clients=clients
        )
    return report.as_dict(), 0


async def cmd_copy_tombstones(args: argparse.Namespace, db: Databases) -> tuple[dict[str, Any], int]:
    from unde_common.s3 import S3Config, s3_client

    day: dt.date = args.day or (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1))
    target = TombstoneCopySettings.load()
    bucket = target.tombstone_s3_bucket
    s3 = s3_client(
        S3Config(
            endpoint_url=str(target.tombstone_s3_endpoint).rstrip("/"),
            access_key=target.tombstone_s3_access_key,
            secret_key=target.tombstone_s3_secret_key,
            bucket=bucket,
            region=target.tombstone_s3_region,
        )
    )
    copy = await copy_registry_to_object_storage(
        await db.production(), s3, bucket, target.tombstone_s3_prefix, day
    )
    return {
        "changed": copy.changed,
        "bucket": bucket,
        "key": copy.key,
        "rows": copy.rows,
        "day": day.isoformat(),
    }, 0


async def _shard_of(
    db: Databases, conversation_id: UUID
) -> tuple[int, psycopg.AsyncConnection[Any], UUID] | None:
    for index, conn in (await db.shards()).items():
        cur = await conn.execute("SELECT user_id FROM conversations WHERE id = %s", (conversation_id,))
        row = await cur.fetchone()
        if row is not None:
            return index, conn, row[0]
    return None


async def cmd_soft_forget(args: argparse.Namespace, db: Databases) -> tuple[dict[str, Any], int]:
    found = await _shard_of(db, args.conversation_id)
    if found is None:
        raise AdminError(f"conversation {args.conversation_id} is on no shard")
    index, conn, _user = found
    result = await soft_forget(conn, args.conversation_id, args.message_id)
    if not result.found:
        raise AdminError(f"message ({args.conversation_id}, {args.message_id}) does not exist")
    return {"shard": index, **asdict(result)}, 0


async def cmd_hard_delete(args: argparse.Namespace, db: Databases) -> tuple[dict[str, Any], int]:
    found = await _shard_of(db, args.conversation_id)
    if found is None:
        raise AdminError(f"conversation {args.conversation_id} is on no shard")
    index, conn, user_id = found
    result = await hard_delete(
        conn, await db.production(), args.conversation_id, args.message_id, user_id, args.reason
    )
    if not result.found:
        raise AdminError(f"message ({args.conversation_id}, {args.message_id}) does not exist")
    return {"shard": index, **asdict(result)}, 0


def _day(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {text!r}") from None


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="unde-llm-orchestrator-admin", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("key-status", help="DEK rows per master key version, per shard").set_defaults(
        run=cmd_key_status
    )
    sub.add_parser(
        "check-ring", help="exit 1 while a DEK uses a version the delivered ring lacks"
    ).set_defaults(run=cmd_check_ring)
    rot = sub.add_parser("rotate-master-key", help="re-wrap every DEK under --to-version")
    rot.add_argument("--to-version", type=_positive, required=True)
    rot.add_argument("--batch", type=_positive, default=500)
    rot.add_argument("--max-batches", type=_positive, default=None)
    rot.set_defaults(run=cmd_rotate)
    erase = sub.add_parser("erase-user", help="GDPR erase of one user")
    erase.add_argument("--user-id", type=UUID, required=True)
    erase.add_argument(
        "--no-media", action="store_true", help="leave Object Storage alone (ERASE_S3_* unset)"
    )
    erase.add_argument("--no-redis", action="store_true", help="leave Redis alone (ERASE_REDIS_URLS unset)")
    erase.set_defaults(run=cmd_erase)
    copy = sub.add_parser("copy-tombstones", help="copy one day of the tombstone registry to Object Storage")
    copy.add_argument("--day", type=_day, default=None, help="YYYY-MM-DD (UTC); default yesterday")
    copy.set_defaults(run=cmd_copy_tombstones)
    for name, run in (("soft-forget", cmd_soft_forget), ("hard-delete", cmd_hard_delete)):
        cmd = sub.add_parser(name)
        cmd.add_argument("--conversation-id", type=UUID, required=True)
        cmd.add_argument("--message-id", type=UUID, required=True)
        if name == "hard-delete":
            cmd.add_argument("--reason", default="user_request")
        cmd.set_defaults(run=run)
    return p


async def _run(args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    settings = LlmOrchestratorSettings.load()
    async with AsyncExitStack() as stack:
        db = Databases(settings, stack)
        result: tuple[dict[str, Any], int] = await args.run(args, db)
        return result


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        out, status = asyncio.run(_run(args))
    except (
        AdminError,
        MasterKeyError,
        UnknownKeyVersionError,
        SettingsError,
        psycopg.Error,
        ValueError,
    ) as exc:
        message = str(exc)
        out, status = {"changed": False, "error": message}, 1
    if status and "error" in out:
        print(out["error"], file=sys.stderr)
    print(json.dumps(out, sort_keys=True, default=str))
    return status


if __name__ == "__main__":
    sys.exit(main())
