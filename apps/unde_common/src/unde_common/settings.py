"""Settings shared by every UNDE app.

Each app subclasses :class:`UndeSettings` (or one of the role mixins below) and loads it with
``MySettings.load()``. Values come from, highest priority first:

1. keyword arguments given to ``load()``,
2. process environment variables (what a systemd ``EnvironmentFile=`` sets),
3. the app's ``.env`` file: ``$UNDE_ENV_FILE`` if set (it must exist), else
   ``/opt/unde/<app_name>/.env`` if it exists, else ``./.env`` if it exists,
4. the field defaults.

Names are case-insensitive (``REDIS_URL`` and ``redis_url`` are the same setting). Secrets are
``SecretStr`` (DSNs included, since they carry passwords), so they never show in ``repr`` or logs.
A bad value raises :class:`SettingsError`, whose message names every offending field by the
environment variable that sets it, without echoing the value.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = [
    "DEFAULT_ENV_DIR",
    "ENV_FILE_VAR",
    "CeleryWorkerSettings",
    "CommaIntList",
    "CommaList",
    "DbPoolSettings",
    "Duration",
    "HttpClientSettings",
    "HttpServiceSettings",
    "ImageFetchSettings",
    "LogLevel",
    "PostgresDsn",
    "RedisDsn",
    "SettingsError",
    "UndeSettings",
    "redis_db",
    "resolve_env_file",
]

ENV_FILE_VAR = "UNDE_ENV_FILE"
DEFAULT_ENV_DIR = Path("/opt/unde")

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


# --------------------------------------------------------------------------- secret DSNs


def _dsn_validator(
    kind: str, schemes: tuple[str, ...], *, need_host: bool
) -> Callable[[SecretStr], SecretStr]:
    def check(value: SecretStr) -> SecretStr:
        raw = value.get_secret_value().strip()
        try:
            parts = urlsplit(raw)
            parts.port  # noqa: B018  (raises ValueError on a non-numeric port)
        except ValueError as exc:
            raise ValueError(f"not a valid {kind} URL ({exc.__class__.__name__})") from None
        if parts.scheme not in schemes:
            raise ValueError(f"{kind} URL scheme must be one of {', '.join(schemes)}; got {parts.scheme!r}")
        socket_host = "host=" in parts.query  # libpq: postgresql://user@/db?host=/run/postgresql
        if need_host and not parts.hostname and not socket_host and parts.scheme != "unix":
            raise ValueError(f"{kind} URL has no host")
        return SecretStr(raw)

    return check


#: A PostgreSQL connection URL (``postgresql://user:pass@host:port/db``), kept secret.
PostgresDsn = Annotated[
    SecretStr, AfterValidator(_dsn_validator("PostgreSQL", ("postgresql", "postgres"), need_host=True))
]
#: A Redis URL (``redis://:pass@host:port/7``), kept secret.
RedisDsn = Annotated[
    SecretStr, AfterValidator(_dsn_validator("Redis", ("redis", "rediss", "unix"), need_host=True))
]


def redis_db(url: SecretStr | str) -> int:
    """The database number of a Redis URL (``/7`` → 7; none → 0)."""
    raw = url.get_secret_value() if isinstance(url, SecretStr) else url
    path = urlsplit(raw).path.strip("/")
    return int(path) if path else 0


# --------------------------------------------------------------------------- other types


def _split_commas(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


#: A list of strings read from a comma-separated environment value (``a,b,c``), not JSON.
CommaList = Annotated[list[str], NoDecode, BeforeValidator(_split_commas)]
#: A list of integers read from a comma-separated environment value (``6643,9204``).
CommaIntList = Annotated[list[int], NoDecode, BeforeValidator(_split_commas)]

_DURATION_RE = re.compile(
    r"^\s*(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?|d|days?)?\s*$",
    re.IGNORECASE,
)
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _parse_duration(value: Any) -> Any:
    if isinstance(value, str):
        match = _DURATION_RE.match(value)
        if match is None:
            return value  # let pydantic try ISO 8601 and report the error
        unit = (match["unit"] or "s").lower()
        key = "ms" if unit == "ms" else unit[0]
        return timedelta(seconds=float(match["num"]) * _UNIT_SECONDS[key])
    return value


#: A duration: ``24h``, ``24 hours``, ``30m``, ``90`` (seconds), ``500ms`` or ISO 8601 ``PT24H``.
Duration = Annotated[timedelta, BeforeValidator(_parse_duration)]


_DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
_CALLER_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def _check_digest(value: str) -> str:
    digest = value.strip().lower()
    if digest and not _DIGEST_RE.fullmatch(digest):
        raise ValueError("must be the SHA-256 of a token as 64 hex digits (or empty)")
    return digest


def _check_callers(value: dict[str, str]) -> dict[str, str]:
    callers: dict[str, str] = {}
    for name, digest in value.items():
        if not _CALLER_RE.fullmatch(name):
            raise ValueError(f"caller name {name[:40]!r} must be lower-case letters, digits and _")
        if name == "monitoring":
            raise ValueError("'monitoring' may call /health and /metrics only: it is not a caller here")
        if not _DIGEST_RE.fullmatch(digest.strip().lower()):
            raise ValueError(f"caller {name!r}: the value must be the SHA-256 of its token as 64 hex digits")
        callers[name] = digest.strip().lower()
    return callers


# --------------------------------------------------------------------------- errors


class SettingsError(ValueError):
    """Invalid configuration. ``problems`` maps each environment variable name to its error."""

    def __init__(self, app: str, env_file: Path | None, problems: dict[str, str]) -> None:
        self.app = app
        self.env_file = env_file
        self.problems = problems
        source = f" (env file {env_file})" if env_file else " (no env file)"
        lines = "; ".join(f"{name}: {msg}" for name, msg in problems.items())
        super().__init__(f"invalid settings for {app}{source}: {lines}")


def _env_names(model: type[BaseSettings], loc: tuple[int | str, ...]) -> str:
    """The environment variable name(s) behind a validation error location."""
    if not loc:
        return "<settings>"
    head = str(loc[0])
    names = [head]
    for field_name, field in model.model_fields.items():
        alias = field.validation_alias
        aliases = [str(c) for c in getattr(alias, "choices", [alias])] if alias is not None else []
        if head == field_name or head in aliases:
            names = aliases or [field_name]
            break
    env = " / ".join(n.upper() for n in names)
    rest = "".join(f"[{part}]" for part in loc[1:])
    return env + rest


# --------------------------------------------------------------------------- base settings


def resolve_env_file(app_name: str) -> Path | None:
    """Which ``.env`` file an app reads (see module doc). ``None`` when there is none."""
    explicit = os.environ.get(ENV_FILE_VAR)
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise SettingsError(app_name, path, {ENV_FILE_VAR: f"file {path} does not exist"})
        return path
    for candidate in (DEFAULT_ENV_DIR / app_name / ".env", Path.cwd() / ".env"):
        if candidate.is_file():
            return candidate
    return None


class UndeSettings(BaseSettings):
    """Fields every app has. Subclasses set ``app_name``'s default to the app's name."""

    model_config = SettingsConfigDict(
        case_sensitive=False,
        extra="ignore",
        env_file_encoding="utf-8",
        validate_default=True,
        populate_by_name=True,
        frozen=True,
    )

    #: the variable that names the env file; kept here so apps can document it
    ENV_FILE_VAR: ClassVar[str] = ENV_FILE_VAR

    app_name: str = "unde"
    environment: Literal["production", "staging", "lab", "dev", "test"] = "production"
    log_level: LogLevel = "INFO"

    metrics_enabled: bool = True
    #: where a Celery worker serves /metrics (HTTP services serve it on their own port); the port is
    #: unde_services.catalog_worker_metrics (group_vars/all/services.yml, tests/test_one_fact.py)
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9808, ge=1, le=65535)
    #: node_exporter textfile collector file written by short-lived processes (beat, one-shot jobs)
    metrics_textfile: Path | None = None
    metrics_textfile_interval_s: float = Field(default=15.0, gt=0)
    #: SHA-256 (hex) of the monitoring caller's bearer token: /health and /metrics (HTTP services)
    #: and a worker's metrics server answer only it; empty: they refuse every caller
    #: (``unde_common.auth``; the token itself stays in the vault and on the monitoring server)
    service_monitoring_sha256: Annotated[str, AfterValidator(_check_digest)] = ""

    @classmethod
    def load(cls, **overrides: Any) -> Self:
        """Read the settings (env file + environment + ``overrides``) or raise SettingsError."""
        app = str(overrides.get("app_name") or cls.model_fields["app_name"].default)
        env_file = resolve_env_file(app)
        try:
            return cls(_env_file=env_file, **overrides)  # type: ignore[call-arg]
        except ValidationError as exc:
            problems: dict[str, str] = {}
            for err in exc.errors(include_input=False, include_url=False):
                name = _env_names(cls, tuple(err["loc"]))
                problems[name] = err["msg"] if name not in problems else f"{problems[name]}; {err['msg']}"
            raise SettingsError(app, env_file, problems) from None


class HttpServiceSettings(UndeSettings):
    """An HTTP service run by uvicorn (``HOST``/``PORT``/``WORKERS``)."""

    host: str = "127.0.0.1"
    #: every service sets its own default: its port in group_vars/all/services.yml (tests/test_one_fact.py)
    port: int = Field(ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    #: seconds a /health dependency check may take before it counts as failed
    health_check_timeout_s: float = Field(default=2.0, gt=0)
    #: request bodies larger than this are refused with 413 (routes may set their own limit)
    max_request_bytes: int = Field(default=1024 * 1024, ge=1)
    #: the Retry-After (seconds) of the 503 answered while a backing store (Redis, PostgreSQL) is down
    store_retry_after_s: int = Field(default=1, ge=1)
    #: the UNDE services that may call the business routes: caller name → SHA-256 (hex) of its bearer
    #: token, JSON (``{"recognition": "<64 hex>"}``). Empty: every business call is refused
    #: (``unde_common.auth``); the monitoring caller is never one of them
    service_callers: Annotated[dict[str, str], AfterValidator(_check_callers)] = Field(default_factory=dict)


class DbPoolSettings(UndeSettings):
    """Sizing and timeouts of the app's PostgreSQL pools (PgBouncer in front, transaction mode)."""

    db_pool_min_size: int = Field(default=1, ge=0)
    db_pool_max_size: int = Field(default=10, ge=1)
    #: seconds to wait for a free connection from the pool
    db_pool_timeout_s: float = Field(default=10.0, gt=0)
    #: seconds a new server connection may take
    db_connect_timeout_s: int = Field(default=5, ge=1)
    #: PgBouncer in transaction mode cannot keep server-side prepared statements
    db_prepared_statements: bool = False
    #: libpq sslmode of every PostgreSQL connection: ``verify-full`` where the hop crosses sites
    #: (shard ↔ replica, apps ↔ production-db over the tunnel), ``prefer`` on loopback
    db_sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = "prefer"
    #: CA bundle that verifies the servers' certificates (verify-ca / verify-full); "" = libpq's default
    db_sslrootcert: str = ""


class HttpClientSettings(UndeSettings):
    """Defaults for outgoing provider HTTP clients (each provider may override)."""

    http_connect_timeout_s: float = Field(default=3.0, gt=0)
    http_read_timeout_s: float = Field(default=15.0, gt=0)
    http_max_attempts: int = Field(default=3, ge=1, le=10)
    http_backoff_base_s: float = Field(default=0.5, ge=0)
    http_backoff_max_s: float = Field(default=8.0, ge=0)
    #: a 429/503 whose Retry-After asks for longer than this is not retried
    http_max_retry_after_s: float = Field(default=30.0, ge=0)
    #: one logical provider call (all attempts, the sleeps between them, each body read) ends
    #: after this many seconds; a server trickling bytes cannot stretch it
    http_deadline_s: float = Field(default=60.0, gt=0)
    #: this app's own bearer token as a caller of other UNDE services (``Authorization: Bearer``,
    #: sent only by clients made with ``unde_common.http.service_config``, never to a provider)
    service_token: SecretStr | None = None


def _check_schemes(value: list[str]) -> list[str]:
    schemes = [v.lower() for v in value]
    unknown = sorted(set(schemes) - {"http", "https"})
    if unknown or not schemes:
        raise ValueError(f"image URL schemes must be http and/or https; got {unknown or 'none'}")
    return schemes


def _check_networks(value: list[str]) -> list[str]:
    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(f"{item!r} is not an IP network (CIDR such as 127.0.0.1/32)") from None
    return value


def _check_hosts(value: list[str]) -> list[str]:
    hosts = [v.lower().rstrip(".").removeprefix("[").removesuffix("]") for v in value]
    for host in hosts:
        try:
            ipaddress.ip_address(host)
            continue
        except ValueError:
            pass
        if not re.fullmatch(r"(\*\.)?[a-z0-9_-]+(\.[a-z0-9_-]+)*", host):
            raise ValueError(f"{host!r} is not a host name, *.suffix or IP address (no port, no path)")
    return hosts


class ImageFetchSettings(UndeSettings):
    """Where the image fetcher (``unde_common.images.FetchPolicy``) may download from, and how large
    an image may be. Production allows only https URLs on Object Storage and the brands' CDNs whose
    addresses are public; loopback, private, link-local and other non-public addresses are refused
    after DNS resolution unless ``IMAGE_FETCH_ALLOW_NETWORKS`` names them (tests, the lab)."""

    #: hosts an image URL may name (Object Storage, the brands' CDNs); ``*.example.com`` allows
    #: every subdomain of example.com. Any other host is refused before DNS is asked.
    image_fetch_hosts: Annotated[CommaList, AfterValidator(_check_hosts)] = Field(
        default_factory=lambda: ["hel1.your-objectstorage.com"]
    )
    #: URL schemes allowed (``https``; ``http`` only where the hop stays inside a test or lab network)
    image_fetch_schemes: Annotated[CommaList, AfterValidator(_check_schemes)] = Field(
        default_factory=lambda: ["https"]
    )
    #: non-public networks (CIDRs) an allowed host may resolve into; empty in production
    image_fetch_allow_networks: Annotated[CommaList, AfterValidator(_check_networks)] = Field(
        default_factory=list
    )
    #: redirects followed per image, each hop checked like the first URL
    image_fetch_max_redirects: int = Field(default=3, ge=0, le=10)
    #: bytes downloaded per image (the body is streamed and cut off beyond this)
    max_image_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    #: pixels (width x height from the header) an image may have before it is decoded: a 64 MP
    #: limit is far beyond any catalog or phone photo and refuses decompression bombs
    max_image_pixels: int = Field(default=64_000_000, ge=1)


class CeleryWorkerSettings(UndeSettings):
    """A Celery worker + beat."""

    celery_timezone: str = "UTC"
    celery_concurrency: int = Field(default=2, ge=1, le=64)
    #: recycle a worker child after this many tasks (leaks, native libs)
    celery_max_tasks_per_child: int = Field(default=200, ge=1)
