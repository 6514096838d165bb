"""HTTP clients for external providers and internal services (httpx, sync and async).

One :class:`ProviderConfig` per provider (Gemini, Ximilar, ElevenLabs, the embedder, …) holds its
base URL (from settings), timeouts and :class:`RetryPolicy`. :class:`ProviderClient` /
:class:`AsyncProviderClient` retry with exponential backoff and jitter on:

- connection errors and timeouts (connect, read, write, pool),
- HTTP 429 and 503, waiting what ``Retry-After`` asks (seconds or an HTTP date) when given;
  when it asks for more than ``max_retry_after_s`` the call fails at once instead of sleeping,
- any other 5xx.

Attempts are bounded by ``max_attempts``. When they run out, or on a non-retryable 4xx, or when a
JSON body does not parse, :class:`ProviderError` is raised naming the provider, method, URL (query
secrets masked), status and attempts made.

    gemini = ProviderClient(provider_config(settings, "gemini", settings.gemini_base_url))
    data = gemini.post_json("/v1beta/models/gemini-2.5-flash:generateContent", json=body)
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, Self
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from unde_common.settings import HttpClientSettings

__all__ = [
    "AsyncProviderClient",
    "ProviderClient",
    "ProviderConfig",
    "ProviderError",
    "RetryPolicy",
    "parse_retry_after",
    "provider_config",
    "redact_url",
]

log = logging.getLogger(__name__)

_SECRET_QUERY_KEYS: Final = frozenset(
    {"key", "api_key", "apikey", "token", "access_token", "auth", "signature", "x-amz-signature", "sig"}
)


def redact_url(url: str | httpx.URL) -> str:
    """The URL with credentials and secret-looking query values replaced by ``***``."""
    parts = urlsplit(str(url))
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = urlencode(
        [(k, "***" if k.lower() in _SECRET_QUERY_KEYS else v) for k, v in parse_qsl(parts.query, True)],
        safe="*",
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date); None if absent/bad."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When and how long to retry. ``max_attempts`` counts the first try."""

    max_attempts: int = 3
    backoff_base_s: float = 0.5
    backoff_max_s: float = 8.0
    max_retry_after_s: float = 30.0
    retry_statuses: frozenset[int] = frozenset({429, 500, 502, 503, 504})
    retry_all_5xx: bool = True

    def should_retry_status(self, status: int) -> bool:
        return status in self.retry_statuses or (self.retry_all_5xx and 500 <= status <= 599)

    def backoff(self, attempt: int) -> float:
        """Delay before attempt ``attempt + 1``: exponential, capped, with "equal jitter"."""
        ceiling = min(self.backoff_max_s, self.backoff_base_s * (2.0 ** (attempt - 1)))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """One provider: name (for errors and metrics), base URL, timeouts, retries, fixed headers."""

    name: str
    base_url: str
    connect_timeout_s: float = 3.0
    read_timeout_s: float = 15.0
    write_timeout_s: float = 15.0
    pool_timeout_s: float = 5.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    headers: Mapping[str, str] = field(default_factory=dict)
    max_connections: int = 20

    def timeout(self) -> httpx.Timeout:
        return httpx.Timeout(
            connect=self.connect_timeout_s,
            read=self.read_timeout_s,
            write=self.write_timeout_s,
            pool=self.pool_timeout_s,
        )

    def with_(self, **changes: Any) -> ProviderConfig:
        return replace(self, **changes)


def provider_config(
    settings: HttpClientSettings,
    name: str,
    base_url: object,
    *,
    headers: Mapping[str, str] | None = None,
    **overrides: Any,
) -> ProviderConfig:
    """A ProviderConfig from the app's common HTTP settings; ``overrides`` replace single fields."""
    cfg = ProviderConfig(
        name=name,
        base_url=str(base_url),
        connect_timeout_s=settings.http_connect_timeout_s,
        read_timeout_s=settings.http_read_timeout_s,
        write_timeout_s=settings.http_read_timeout_s,
        retry=RetryPolicy(
            max_attempts=settings.http_max_attempts,
            backoff_base_s=settings.http_backoff_base_s,
            backoff_max_s=settings.http_backoff_max_s,
            max_retry_after_s=settings.http_max_retry_after_s,
        ),
        headers=dict(headers or {}),
    )
    return replace(cfg, **overrides) if overrides else cfg


class ProviderError(RuntimeError):
    """A provider call failed for good."""

    def __init__(
        self,
        provider: str,
        method: str,
        url: str,
        *,
        attempts: int,
        status: int | None = None,
        reason: str = "",
        body: str | None = None,
    ) -> None:
        self.provider = provider
        self.method = method
        self.url = redact_url(url)
        self.status = status
        self.attempts = attempts
        self.reason = reason
        self.body = body
        what = f"HTTP {status}" if status is not None else "no response"
        detail = f" ({reason})" if reason else ""
        super().__init__(
            f"{provider}: {method} {self.url} failed: {what}{detail} after {attempts} attempt(s)"
        )


@dataclass(slots=True)
class _Outcome:
    """What one attempt produced, and whether/how long to wait before the next one."""

    response: httpx.Response | None
    error: Exception | None
    retry: bool
    delay: float
    reason: str


def _classify(
    cfg: ProviderConfig, attempt: int, response: httpx.Response | None, error: Exception | None
) -> _Outcome:
    policy = cfg.retry
    if error is not None:
        reason = f"{error.__class__.__name__}: {error}".rstrip(": ")
        return _Outcome(None, error, True, policy.backoff(attempt), reason)
    assert response is not None
    status = response.status_code
    if status < 400:
        return _Outcome(response, None, False, 0.0, "")
    if not policy.should_retry_status(status):
        return _Outcome(response, None, False, 0.0, response.reason_phrase)
    delay = policy.backoff(attempt)
    wait = parse_retry_after(response.headers.get("retry-after")) if status in (429, 503) else None
    if wait is not None:
        if wait > policy.max_retry_after_s:
            reason = f"Retry-After {wait:.0f}s exceeds the {policy.max_retry_after_s:.0f}s limit"
            return _Outcome(response, None, False, 0.0, reason)
        delay = wait
    return _Outcome(response, None, True, delay, response.reason_phrase)


def _body_excerpt(response: httpx.Response | None) -> str | None:
    if response is None:
        return None
    try:
        return response.text[:500]
    except Exception:  # a streamed or undecodable body
        return None


def _decode_json(cfg: ProviderConfig, response: httpx.Response, attempts: int) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise ProviderError(
            cfg.name,
            response.request.method,
            str(response.request.url),
            attempts=attempts,
            status=response.status_code,
            reason=f"malformed JSON: {exc}",
            body=_body_excerpt(response),
        ) from exc


class _Base:
    def __init__(self, config: ProviderConfig) -> None:
        self.config = config

    def _fail(self, method: str, url: httpx.URL | str, attempt: int, outcome: _Outcome) -> ProviderError:
        status = outcome.response.status_code if outcome.response is not None else None
        return ProviderError(
            self.config.name,
            method,
            str(url),
            attempts=attempt,
            status=status,
            reason=outcome.reason,
            body=_body_excerpt(outcome.response),
        )

    def _settle(
        self,
        method: str,
        request: httpx.Request,
        attempt: int,
        max_attempts: int,
        response: httpx.Response | None,
        error: Exception | None,
    ) -> httpx.Response | _Outcome:
        """Judge one attempt: the response when it is usable (< 400), else the outcome to retry
        after ``outcome.delay`` (logged); ProviderError when the call failed for good."""
        outcome = _classify(self.config, attempt, response, error)
        if outcome.response is not None and outcome.response.status_code < 400:
            return outcome.response
        if not outcome.retry or attempt >= max_attempts:
            raise self._fail(method, request.url, attempt, outcome) from outcome.error
        self._log_retry(method, request.url, attempt, outcome)
        return outcome

    def _log_retry(self, method: str, url: httpx.URL | str, attempt: int, outcome: _Outcome) -> None:
        log.warning(
            "retrying provider call",
            extra={
                "provider": self.config.name,
                "method": method,
                "url": redact_url(url),
                "attempt": attempt,
                "status": outcome.response.status_code if outcome.response is not None else None,
                "reason": outcome.reason,
                "delay_s": round(outcome.delay, 3),
            },
        )


class ProviderClient(_Base):
    """Synchronous client for one provider (Celery tasks). Use as a context manager or call close()."""

    def __init__(self, config: ProviderConfig, *, transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(config)
        self._client = httpx.Client(
            base_url=config.base_url,
            timeout=config.timeout(),
            headers=dict(config.headers),
            limits=httpx.Limits(max_connections=config.max_connections),
            transport=transport,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def _try(self, request: httpx.Request) -> tuple[httpx.Response | None, Exception | None]:
        try:
            return self._client.send(request), None
        except httpx.TransportError as exc:  # connect/read/write/pool timeouts included
            return None, exc

    def _send(
        self, method: str, path: str, retry: bool, kwargs: dict[str, Any]
    ) -> tuple[httpx.Response, int]:
        request = self._client.build_request(method, path, **kwargs)
        max_attempts = self.config.retry.max_attempts if retry else 1
        attempt = 0
        while True:
            attempt += 1
            outcome = self._settle(method, request, attempt, max_attempts, *self._try(request))
            if isinstance(outcome, httpx.Response):
                return outcome, attempt
            if outcome.response is not None:
                outcome.response.close()
            time.sleep(outcome.delay)

    def request(self, method: str, path: str, *, retry: bool = True, **kwargs: Any) -> httpx.Response:
        """Send with retries; returns a < 400 response or raises ProviderError."""
        return self._send(method, path, retry, kwargs)[0]

    def get_json(self, path: str, *, retry: bool = True, **kwargs: Any) -> Any:
        """GET and decode the JSON body (ProviderError when it is not JSON)."""
        return _decode_json(self.config, *self._send("GET", path, retry, kwargs))

    def post_json(self, path: str, *, retry: bool = True, **kwargs: Any) -> Any:
        """POST and decode the JSON body (ProviderError when it is not JSON)."""
        return _decode_json(self.config, *self._send("POST", path, retry, kwargs))


class AsyncProviderClient(_Base):
    """asyncio client for one provider (FastAPI services)."""

    def __init__(self, config: ProviderConfig, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(config)
        self._client = httpx.AsyncClient(
            base_url=config.base_url,
            timeout=config.timeout(),
            headers=dict(config.headers),
            limits=httpx.Limits(max_connections=config.max_connections),
            transport=transport,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _try(self, request: httpx.Request) -> tuple[httpx.Response | None, Exception | None]:
        try:
            return await self._client.send(request), None
        except httpx.TransportError as exc:  # connect/read/write/pool timeouts included
            return None, exc

    async def _send(
        self, method: str, path: str, retry: bool, kwargs: dict[str, Any]
    ) -> tuple[httpx.Response, int]:
        request = self._client.build_request(method, path, **kwargs)
        max_attempts = self.config.retry.max_attempts if retry else 1
        attempt = 0
        while True:
            attempt += 1
            outcome = self._settle(method, request, attempt, max_attempts, *(await self._try(request)))
            if isinstance(outcome, httpx.Response):
                return outcome, attempt
            if outcome.response is not None:
                await outcome.response.aclose()
            await asyncio.sleep(outcome.delay)

    async def request(self, method: str, path: str, *, retry: bool = True, **kwargs: Any) -> httpx.Response:
        """Send with retries; returns a < 400 response or raises ProviderError."""
        return (await self._send(method, path, retry, kwargs))[0]

    async def get_json(self, path: str, *, retry: bool = True, **kwargs: Any) -> Any:
        """GET and decode the JSON body (ProviderError when it is not JSON)."""
        return _decode_json(self.config, *(await self._send("GET", path, retry, kwargs)))

    async def post_json(self, path: str, *, retry: bool = True, **kwargs: Any) -> Any:
        """POST and decode the JSON body (ProviderError when it is not JSON)."""
        return _decode_json(self.config, *(await self._send("POST", path, retry, kwargs)))
