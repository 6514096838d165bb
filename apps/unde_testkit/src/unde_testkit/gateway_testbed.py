"""The API gateway with everything behind it, real and on loopback (tests and benches; never
imported by app code)::

    with GatewayBed(pg, redis_url, work / "gw", s3=s3) as bed:
        user = bed.seed_user()
        r = httpx.post(bed.url + "/api/v1/chat", json={...}, headers=bed.headers(user))

What it brings up, on top of :class:`~unde_testkit.dialogue_testbed.DialogueBed` (shard and
production DB migrated in ``pg``, the three agents as processes, provider simulators):

- a real orchestrator worker: ``celery -A llm_orchestrator.celery_app worker -Q
  dialogue_queue,enrichment`` with :meth:`DialogueBed.env` (solo pool, ``worker_concurrency``
  processes when above 1);
- a :class:`~unde_testkit.posthog_simulator.PostHogSimulator`;
- the gateway itself: ``python -m api_gateway`` (uvicorn, one worker, a free port) with
  :meth:`GatewayBed.env` — its Redis DBs from ``group_vars`` (gateway 14, orchestrator broker 11,
  shard routing 12, recognition 6), the bed's databases, test signing keys, the S3 stand-in when
  ``s3`` is given.

:meth:`GatewayBed.settings` / :meth:`GatewayBed.app` give the same gateway in-process (for
``TestClient``); :meth:`GatewayBed.token` an access token of a user, :meth:`GatewayBed.seed_user`
a user in ``routing_table``. Processes are stopped on exit; logs are printed when the block raised.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from unde_testkit.dialogue_testbed import REDIS_DB, DialogueBed
from unde_testkit.posthog_simulator import POSTHOG_KEY, PostHogSimulator
from unde_testkit.service_auth import service_auth_env
from unde_testkit.testing import LoopbackServer, PostgresHandle, S3Handle, free_port, running_service

if TYPE_CHECKING:
    from fastapi import FastAPI

    from api_gateway.settings import ApiGatewaySettings

__all__ = [
    "GATEWAY_REDIS_DB",
    "GatewayBed",
    "ed25519_pem",
    "gateway_env",
    "gateway_settings",
    "jwt_test_keys",
]

#: group_vars/all/redis.yml unde_redis_db of the gateway's own Redis, the recognition broker
GATEWAY_REDIS_DB = 14
RECOGNITION_REDIS_DB = 6
_LOG_TAIL = 4000


def ed25519_pem(key: Ed25519PrivateKey | None = None) -> str:
    """A (new) Ed25519 private key as PKCS#8 PEM."""
    key = key or Ed25519PrivateKey.generate()
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()


@cache
def _test_key(kid: str) -> str:
    return ed25519_pem()


def jwt_test_keys(*kids: str, current: str | None = None) -> dict[str, str]:
    """``JWT_SIGNING_KEYS`` / ``JWT_CURRENT_KID`` env values: one key per kid (default ``test-1``),
    the same key for the same kid within a test session; ``current`` signs (default: the last)."""
    names = kids or ("test-1",)
    return {
        "JWT_SIGNING_KEYS": json.dumps({kid: _test_key(kid) for kid in names}),
        "JWT_CURRENT_KID": current or names[-1],
        "ANALYTICS_ID_KEY": "test-analytics-id-key",
    }


def gateway_env(main_dsn: str, shard_dsn: str, redis_url: str, **overrides: str) -> dict[str, str]:
    """The gateway's settings (env names) on the given production DB, shard 0 and Redis server
    (the DBs of group_vars: gateway 14, orchestrator broker 11, shard routing 12, recognition 6),
    test signing keys, analytics off unless ``POSTHOG_*`` are given; ``overrides`` win."""
    base = redis_url.rsplit("/", 1)[0]
    values = {
        "ENVIRONMENT": "test",
        "LOG_LEVEL": "WARNING",
        "HOST": "127.0.0.1",
        "PORT": str(free_port()),
        "WORKERS": "1",
        **{k: v for k, v in service_auth_env().items() if k == "SERVICE_MONITORING_SHA256"},
        "PRODUCTION_DB_URL": main_dsn,
        "SHARD_0_DB_URL": shard_dsn,
        "SHARD_COUNT": "1",
        "SHARD_ROUTING_REDIS_URL": f"{base}/{REDIS_DB['shard_routing']}",
        "REDIS_URL": f"{base}/{GATEWAY_REDIS_DB}",
        "DIALOGUE_BROKER_URL": f"{base}/{REDIS_DB['llm_orchestrator']}",
        "RECOGNITION_BROKER_URL": f"{base}/{RECOGNITION_REDIS_DB}",
        **jwt_test_keys(),
        "S3_USER_MEDIA_ACCESS_KEY": "test-access-key",
        "S3_USER_MEDIA_SECRET_KEY": "test-secret-key",
    }
    values.update({k.upper(): v for k, v in overrides.items()})
    return values


def gateway_settings(main_dsn: str, shard_dsn: str, redis_url: str, **overrides: str) -> ApiGatewaySettings:
    """:func:`gateway_env` as the settings object (no env file read)."""
    from api_gateway.settings import ApiGatewaySettings

    values: dict[str, Any] = {
        k.lower(): v for k, v in gateway_env(main_dsn, shard_dsn, redis_url, **overrides).items()
    }
    return ApiGatewaySettings(_env_file=None, **values)  # type: ignore[call-arg]


class GatewayBed:
    """The gateway's world on loopback (see the module docstring)."""

    def __init__(
        self,
        pg: PostgresHandle,
        redis_url: str,
        workdir: Path,
        s3: S3Handle | None = None,
        *,
        latency: Mapping[str, float] | None = None,
        worker_concurrency: int = 1,
        gateway_env: Mapping[str, str] | None = None,
        start_timeout_s: float = 90.0,
        shard_dsn: str | None = None,
        shard_members: Sequence[str] = (),
    ) -> None:
        self.workdir = Path(workdir)
        self.redis_base = redis_url.rsplit("/", 1)[0]
        self.s3 = s3
        #: ``shard_dsn`` / ``shard_members``: a shard brought by the caller (e.g. a
        #: unde_testkit.pg_replica primary + standby), as DialogueBed takes them
        self.dialogue = DialogueBed(
            pg,
            redis_url,
            self.workdir / "dialogue",
            latency=latency,
            shard_dsn=shard_dsn,
            shard_members=shard_members,
        )
        self.posthog = PostHogSimulator()
        self.posthog_url = ""
        self.worker_concurrency = worker_concurrency
        self.gateway_env = dict(gateway_env or {})
        self.start_timeout_s = start_timeout_s
        self.port = 0
        self._stack = ExitStack()

    # ------------------------------------------------------------------ life cycle

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.print_logs()
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self.print_logs()
        self.stop()

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._stack.enter_context(self.dialogue)
        self.posthog_url = self._stack.enter_context(LoopbackServer(self.posthog.app)).url
        self.start_worker()
        self.port = free_port()
        env_file = self.write_env(self.workdir / "api_gateway.env")
        self._stack.enter_context(
            running_service(
                [sys.executable, "-m", "api_gateway"],
                env_file,
                self.url + "/health/live",
                self.log_path("api_gateway"),
                timeout_s=self.start_timeout_s,
            )
        )

    def start_worker(self) -> None:
        port = free_port()
        env = self.dialogue.write_env(
            self.workdir / "llm_orchestrator.env", METRICS_ENABLED="true", METRICS_PORT=str(port)
        )
        args = [sys.executable, "-m", "celery", "-A", "llm_orchestrator.celery_app", "worker"]
        args += ["-Q", "dialogue_queue,enrichment", "--without-mingle", "--without-gossip"]
        if self.worker_concurrency > 1:
            args += ["--pool", "prefork", "-c", str(self.worker_concurrency)]
        else:
            args += ["--pool", "solo"]
        self._stack.enter_context(
            running_service(
                args,
                env,
                f"http://127.0.0.1:{port}/metrics",
                self.log_path("worker"),
                timeout_s=self.start_timeout_s,
            )
        )

    def stop(self) -> None:
        self._stack.close()

    # ------------------------------------------------------------------ logs

    def log_path(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def logs(self) -> dict[str, str]:
        out = {
            n: self.log_path(n).read_text(errors="replace")
            for n in ("api_gateway", "worker")
            if self.log_path(n).exists()
        }
        return {**out, **self.dialogue.logs()}

    def print_logs(self, tail: int = _LOG_TAIL) -> None:
        for name, text in self.logs().items():
            print(f"----- {name} log (last {tail} chars) -----\n{text[-tail:]}", file=sys.stderr)

    # ------------------------------------------------------------------ the gateway's settings

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, **overrides: str) -> dict[str, str]:
        """The gateway's settings as env names (``overrides`` win, case-insensitive)."""
        d = self.dialogue
        values = gateway_env(d.main_dsn, d.shard_dsn, self.redis_base + "/0")
        values.update(
            {
                "PORT": str(self.port or free_port()),
                "POSTHOG_HOST": self.posthog_url,
                "POSTHOG_API_KEY": POSTHOG_KEY,
                "ANALYTICS_FLUSH_INTERVAL_S": "0.2",
                # every client of the bed signs up from 127.0.0.1, the one key of the auth bucket
                "RATE_LIMITS": json.dumps({"auth": {"rate": 100, "burst": 1000}}),
            }
        )
        if d.shard_members:
            values["SHARD_MEMBERS"] = ",".join(d.shard_members)
        if self.s3 is not None:
            values.update(
                {
                    "S3_ENDPOINT": self.s3.endpoint_url,
                    "S3_REGION": self.s3.region,
                    "S3_USER_MEDIA_ACCESS_KEY": self.s3.access_key,
                    "S3_USER_MEDIA_SECRET_KEY": self.s3.secret_key,
                }
            )
        values.update({k.upper(): v for k, v in self.gateway_env.items()})
        values.update({k.upper(): v for k, v in overrides.items()})
        return values

    def write_env(self, path: Path, **overrides: str) -> Path:
        """:meth:`env` as a ``.env`` file (mode 0600) for ``UNDE_ENV_FILE``."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write("".join(f"{k}={v}\n" for k, v in self.env(**overrides).items()))
        return Path(path)

    def settings(self, **overrides: str) -> ApiGatewaySettings:
        """The settings of :meth:`env` (no env file read)."""
        from api_gateway.settings import ApiGatewaySettings

        values: dict[str, Any] = {k.lower(): v for k, v in self.env(**overrides).items()}
        return ApiGatewaySettings(_env_file=None, **values)  # type: ignore[call-arg]

    def app(self, **overrides: str) -> FastAPI:
        """The gateway app in this process on :meth:`settings` (for ``TestClient``)."""
        from api_gateway.app import create

        return create(self.settings(**overrides))

    # ------------------------------------------------------------------ users

    def seed_user(self, user_id: uuid.UUID | None = None, shard: int = 0) -> uuid.UUID:
        """A user in production ``routing_table`` on ``shard``."""
        user_id = user_id or uuid.uuid4()
        with psycopg.connect(self.dialogue.main_dsn, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO routing_table (user_id, shard_index) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (user_id, shard),
            )
        return user_id

    def token(self, user_id: uuid.UUID, shard: int = 0) -> str:
        """An access token of ``user_id`` signed with the bed's key."""
        from api_gateway.auth import issue_tokens

        return str(issue_tokens(self.settings(), user_id, shard)["access_token"])

    def headers(self, user_id: uuid.UUID, shard: int = 0) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user_id, shard)}"}
