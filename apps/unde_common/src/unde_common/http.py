"""HTTP clients for external providers and internal services (httpx, sync and async).

One :class:`ProviderConfig` per provider (Gemini, Ximilar, ElevenLabs, the embedder, …) holds its
base URL (from settings), timeouts, :class:`RetryPolicy`, overall deadline and the optional
concurrency cap / circuit breaker. :class:`ProviderClient` / :class:`AsyncProviderClient` send
one *logical call* as one or more attempts.

Retries, only for a call that may be repeated: ``idempotent=None`` (the default) retries GET, HEAD,
PUT, DELETE and OPTIONS and never POST or PATCH (a lost answer to a POST may have started a paid
run or billed an LLM call); ``idempotent=True`` / ``False`` overrides per call, and
``retry_refused=True`` retries a call that is not idempotent only after an answer that refused it
before any work was done (429, 503, 529: nothing generated, nothing billed), never after no answer.
A call that may be retried is retried with exponential backoff and jitter on

- connection errors and timeouts (connect, read, write, pool),
- HTTP 429 and any 5xx (Anthropic's 529 ``overloaded_error`` included), waiting what the provider
  asks (:func:`parse_retry_hint`: ``retry-after-ms`` / ``Retry-After`` headers, or Google's
  ``google.rpc.RetryInfo.retryDelay`` in the JSON error body); when it asks for more than
  ``max_retry_after_s`` the call fails at once instead of sleeping, and a Google ``QuotaFailure``
  on a per-day quota fails at once ("daily quota"): waiting minutes cannot bring it back.

``deadline_s`` bounds the whole logical call: attempts, sleeps between them, the wait for a
concurrency slot, and the reading of each response body: a server that trickles bytes (each one
resets httpx's per-read timeout) is cut at the deadline. Attempts are bounded by
``max_attempts``. When the call fails for good :class:`ProviderError` is raised naming the
provider, method, URL (query secrets masked), status and attempts made.

    gemini = ProviderClient(provider_config(settings, "gemini", settings.gemini_base_url))
    gw = ProviderClient(service_config(settings, "ximilar-gw", settings.ximilar_gw_url))  # UNDE: + bearer
    data = gemini.post_json(path, json=body)                    # one attempt
    hits = ximilar.post_json(path, json=query, idempotent=True)  # a search: retried

:meth:`AsyncProviderClient.stream` sends one streamed call (an LLM's server-sent events): one
attempt, never retried (a fallback chain decides what happens next), an error status or no answer
raised as :class:`ProviderError` before the body is handed over, the whole call (connect, headers,
every body read) bounded by ``deadline_s``::

    async with llm.stream("POST", "/chat/completions", json=body, deadline_s=8.0) as response:
        async for line in response.aiter_lines():
            ...
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import random
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, Self
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from unde_common.auth import bearer_headers
from unde_common.settings import HttpClientSettings

__all__ = [
    "IDEMPOTENT_METHODS",
    "REFUSAL_STATUSES",
    "AsyncProviderClient",
    "CircuitBreaker",
    "ProviderClient",
    "ProviderConfig",
    "ProviderError",
    "RetryHint",
    "RetryPolicy",
    "is_idempotent",
    "parse_retry_after",
    "parse_retry_hint",
    "provider_config",
    "redact_url",
    "service_config",
]

log = logging.getLogger(__name__)

_SECRET_QUERY_KEYS: Final = frozenset(
    {"key", "api_key", "apikey", "token", "access_token", "auth", "signature", "x-amz-signature", "sig"}
)

#: methods whose repeat is harmless by HTTP's definition (RFC 9110 §9.2.2), retried by default
IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


#: answers that refuse a request before the provider does any work (rate limit, overloaded):
#: ``retry_refused=True`` retries a call that is not idempotent only after one of these
REFUSAL_STATUSES: Final = frozenset({429, 503, 529})


def is_idempotent(method: str, idempotent: bool | None = None) -> bool:
    """Whether a call may be repeated: the caller's word, else the method's (POST/PATCH: no)."""
    return idempotent if idempotent is not None else method.upper() in IDEMPOTENT_METHODS


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


# ----------------------------------------------------------------------------- retry hints

#: ``google.protobuf.Duration`` in proto3 JSON is a decimal number of seconds with an ``s`` suffix
#: ("30s", "1.5s", "34.074824224s"); gemini-cli also accepts "900ms"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s)\s*$")
_RPC_TYPE = "type.googleapis.com/google.rpc."
#: bodies longer than this are not searched for hints (an error body is small)
_HINT_BODY_LIMIT: Final = 64 * 1024


@dataclass(frozen=True, slots=True)
class RetryHint:
    """What a failed response says about retrying: wait ``delay_s`` (None: not said), or never
    (``fatal`` names why)."""

    delay_s: float | None = None
    fatal: str = ""


def _duration_s(value: object) -> float | None:
    if isinstance(value, Mapping):  # the binary form rendered as an object
        try:
            return float(value.get("seconds", 0) or 0) + float(value.get("nanos", 0) or 0) / 1e9
        except (TypeError, ValueError):
            return None
    if not isinstance(value, str):
        return None
    match = _DURATION.match(value)
    if match is None:
        return None
    amount = float(match.group(1))
    return amount / 1000 if match.group(2) == "ms" else amount


def _google_details(response: httpx.Response) -> list[Mapping[str, Any]]:
    """``error.details`` of a Google API error body (https://google.aip.dev/193), else []."""
    content = response.content
    if not content or len(content) > _HINT_BODY_LIMIT or not content.lstrip().startswith((b"{", b"[")):
        return []
    try:
        body = json.loads(content)
    except ValueError:
        return []
    if isinstance(body, list) and body:  # some Google front ends wrap the error in a list
        body = body[0]
    error = body.get("error") if isinstance(body, Mapping) else None
    details = error.get("details") if isinstance(error, Mapping) else None
    return [d for d in details if isinstance(d, Mapping)] if isinstance(details, list) else []


def parse_retry_hint(response: httpx.Response) -> RetryHint:
    """The provider's retry hint in a failed response, from (first match wins):

    - ``retry-after-ms`` then ``Retry-After`` headers (Anthropic's SDK reads both, in this order:
      anthropic-sdk-python ``_base_client.py`` ``_parse_retry_after_header``),
    - a Google error body: ``google.rpc.QuotaFailure`` whose violation's ``quotaId`` names a
      per-day quota ("...PerDay...", "...Daily...") is fatal; ``google.rpc.RetryInfo.retryDelay``
      is the wait (googleapis ``google/rpc/error_details.proto``; the same rules as gemini-cli
      ``packages/core/src/utils/googleQuotaErrors.ts``).
    """
    ms = response.headers.get("retry-after-ms")
    if ms is not None:
        try:
            return RetryHint(delay_s=max(0.0, float(ms) / 1000))
        except ValueError:
            pass
    header = parse_retry_after(response.headers.get("retry-after"))
    details = _google_details(response)
    for detail in details:
        if str(detail.get("@type", "")) != _RPC_TYPE + "QuotaFailure":
            continue
        violations = detail.get("violations")
        for violation in violations if isinstance(violations, list) else []:
            quota_id = str(violation.get("quotaId", "")) if isinstance(violation, Mapping) else ""
            if "PerDay" in quota_id or "Daily" in quota_id:
                return RetryHint(delay_s=header, fatal=f"daily quota exhausted ({quota_id})")
    if header is not None:
        return RetryHint(delay_s=header)
    for detail in details:
        if str(detail.get("@type", "")) == _RPC_TYPE + "RetryInfo":
            delay = _duration_s(detail.get("retryDelay"))
            if delay is not None:
                return RetryHint(delay_s=max(0.0, delay))
    return RetryHint()


# ----------------------------------------------------------------------------- configuration


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When and how long to retry. ``max_attempts`` counts the first try."""

    max_attempts: int = 3
    backoff_base_s: float = 0.5
    backoff_max_s: float = 8.0
    max_retry_after_s: float = 30.0
    retry_statuses: frozenset[int] = frozenset({429, 500, 502, 503, 504, 529})
    retry_all_5xx: bool = True

    def should_retry_status(self, status: int) -> bool:
        return status in self.retry_statuses or (self.retry_all_5xx and 500 <= status <= 599)

    def backoff(self, attempt: int) -> float:
        """Delay before attempt ``attempt + 1``: exponential, capped, with "equal jitter"."""
        ceiling = min(self.backoff_max_s, self.backoff_base_s * (2.0 ** (attempt - 1)))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """One provider: name (for errors and metrics), base URL, timeouts, retries, fixed headers.

    ``deadline_s``: the most one logical call may take, all attempts, sleeps and body reads
    included (None: bounded only by attempts x timeouts). ``max_concurrency``: calls in flight
    at once through one client (None: no cap beyond ``max_connections``). ``breaker_failures``:
    after that many consecutive calls failed for good (no answer, 5xx, 429, deadline) calls fail
    fast for ``breaker_open_s``, then one trial call decides (0: no breaker).
    """

    name: str
    base_url: str
    connect_timeout_s: float = 3.0
    read_timeout_s: float = 15.0
    write_timeout_s: float = 15.0
    pool_timeout_s: float = 5.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    headers: Mapping[str, str] = field(default_factory=dict)
    max_connections: int = 20
    deadline_s: float | None = None
    max_concurrency: int | None = None
    breaker_failures: int = 0
    breaker_open_s: float = 30.0

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
        deadline_s=settings.http_deadline_s,
    )
    return replace(cfg, **overrides) if overrides else cfg


def service_config(
    settings: HttpClientSettings,
    name: str,
    base_url: object,
    *,
    headers: Mapping[str, str] | None = None,
    **overrides: Any,
) -> ProviderConfig:
    """:func:`provider_config` for another UNDE service: every call carries this app's
    ``settings.service_token`` as ``Authorization: Bearer`` (see :mod:`unde_common.auth`). Only
    for UNDE services: an external provider must never see the token. Without a token the calls
    go out bare and the service answers 401 (logged here once, at construction)."""
    auth = bearer_headers(settings.service_token)
    if not auth:
        log.warning(
            "SERVICE_TOKEN is not set: calls to this UNDE service will be refused (401)",
            extra={"provider": name},
        )
    return provider_config(settings, name, base_url, headers={**(headers or {}), **auth}, **overrides)


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


# ----------------------------------------------------------------------------- circuit breaker


class CircuitBreaker:
    """Closed → open after ``failures`` consecutive failed calls → after ``open_s`` half-open: one
    trial call; its success closes the breaker, its failure opens it again. Thread-safe; no
    awaits inside, so one instance serves an asyncio client too."""

    def __init__(self, failures: int, open_s: float, *, clock: Any = time.monotonic) -> None:
        self.failures = failures
        self.open_s = open_s
        self._clock = clock
        self._lock = threading.Lock()
        self._consecutive = 0
        self._open_until: float | None = None
        self._trial = False

    @property
    def state(self) -> str:
        with self._lock:
            if self._open_until is None:
                return "closed"
            return "open" if self._clock() < self._open_until else "half-open"

    def admit(self) -> tuple[str | None, bool]:
        """``(refusal, trial)``: a refusal reason when the call must fail fast; ``trial`` when
        this call is the half-open probe (it must be settled with :meth:`settle`)."""
        with self._lock:
            if self._open_until is None:
                return None, False
            left = self._open_until - self._clock()
            if left > 0:
                return f"circuit open after {self._consecutive} consecutive failures, {left:.1f}s left", False
            if self._trial:
                return "circuit half-open, a trial call is in flight", False
            self._trial = True
            return None, True

    def settle(self, ok: bool | None, *, trial: bool) -> None:
        """Record a call's end: ok, failed, or None (cancelled: counts neither way)."""
        with self._lock:
            if trial:
                self._trial = False
            if ok is None:
                return
            if ok:
                self._consecutive = 0
                self._open_until = None
                return
            self._consecutive += 1
            if trial or self._consecutive >= self.failures:
                self._open_until = self._clock() + self.open_s


# ----------------------------------------------------------------------------- one logical call


class _Deadline:
    """The end of a logical call on the monotonic clock (``at is None``: no deadline)."""

    __slots__ = ("at", "total_s")

    def __init__(self, total_s: float | None) -> None:
        self.total_s = total_s
        self.at = None if total_s is None else time.monotonic() + total_s

    def left(self) -> float | None:
        return None if self.at is None else self.at - time.monotonic()

    def expired(self) -> bool:
        left = self.left()
        return left is not None and left <= 0

    def describe(self) -> str:
        return f"deadline {self.total_s:g}s exceeded"


class _DeadlineExceededError(Exception):
    """An attempt ran into the logical call's deadline (``response``: the headers came)."""

    def __init__(self, response: httpx.Response | None) -> None:
        super().__init__("deadline")
        self.response = response


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
    hint = parse_retry_hint(response)
    if hint.fatal:
        return _Outcome(response, None, False, 0.0, f"{response.reason_phrase}: {hint.fatal}")
    delay = policy.backoff(attempt)
    if hint.delay_s is not None:
        if hint.delay_s > policy.max_retry_after_s:
            reason = f"Retry-After {hint.delay_s:.0f}s exceeds the {policy.max_retry_after_s:.0f}s limit"
            return _Outcome(response, None, False, 0.0, reason)
        delay = hint.delay_s
    return _Outcome(response, None, True, delay, response.reason_phrase)


def _refusal_reason(response: httpx.Response) -> str:
    """The reason phrase of an error answer, with the wait the provider asks for when it says."""
    hint = parse_retry_hint(response)
    if hint.fatal:
        return f"{response.reason_phrase}: {hint.fatal}"
    if hint.delay_s is not None:
        return f"{response.reason_phrase}; retry after {hint.delay_s:g}s"
    return response.reason_phrase


def _failed_for_provider(outcome: _Outcome) -> bool:
    """Whether an outcome speaks of the provider's health (breaker): no answer, 5xx, 429."""
    if outcome.response is None:
        return True
    return outcome.response.status_code == 429 or outcome.response.status_code >= 500


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


def _bounded_timeouts(base: Mapping[str, float | None], left: float | None) -> dict[str, float | None]:
    """httpx's per-phase timeouts, none longer than what is left of the deadline."""
    if left is None:
        return dict(base)
    left = max(left, 0.001)
    return {k: left if v is None else min(v, left) for k, v in base.items()}


class _SocketCutter:
    """Shuts the socket under a streaming response down from a timer thread at the deadline:
    a blocked ``recv`` then returns at once, which no per-read timeout guarantees."""

    def __init__(self, response: httpx.Response) -> None:
        stream = response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        self._sock: socket.socket | None = sock if isinstance(sock, socket.socket) else None
        self._lock = threading.Lock()
        self._done = False
        self.fired = False

    @property
    def usable(self) -> bool:
        return self._sock is not None

    def fire(self) -> None:
        with self._lock:
            if self._done or self._sock is None:
                return
            self.fired = True
            # the plain socket's shutdown also for TLS: SSLSocket.shutdown drops its SSL
            # object under the reading thread's feet
            with contextlib.suppress(OSError):
                socket.socket.shutdown(self._sock, socket.SHUT_RDWR)

    def finish(self) -> None:
        with self._lock:
            self._done = True


class _Base:
    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self.breaker = (
            CircuitBreaker(config.breaker_failures, config.breaker_open_s)
            if config.breaker_failures > 0
            else None
        )

    def _error(
        self,
        method: str,
        url: httpx.URL | str,
        attempt: int,
        reason: str,
        response: httpx.Response | None = None,
    ) -> ProviderError:
        return ProviderError(
            self.config.name,
            method,
            str(url),
            attempts=attempt,
            status=response.status_code if response is not None else None,
            reason=reason,
            body=_body_excerpt(response) if response is not None and response.is_stream_consumed else None,
        )

    def _fail(self, method: str, url: httpx.URL | str, attempt: int, outcome: _Outcome) -> ProviderError:
        return self._error(method, url, attempt, outcome.reason, outcome.response)

    def _prepare(
        self,
        method: str,
        idempotent: bool | None,
        retry: bool,
        deadline_s: float | None,
        build: Any,
        retry_refused: bool = False,
    ) -> tuple[httpx.Request, int, _Deadline, dict[str, float | None]]:
        request: httpx.Request = build()
        may_repeat = is_idempotent(method, idempotent) or retry_refused
        max_attempts = self.config.retry.max_attempts if retry and may_repeat else 1
        deadline = _Deadline(deadline_s if deadline_s is not None else self.config.deadline_s)
        base_timeouts: dict[str, float | None] = dict(request.extensions.get("timeout", {}))
        return request, max_attempts, deadline, base_timeouts

    def _admit(self, method: str, url: httpx.URL) -> bool:
        """Ask the breaker; ProviderError when it is open. Returns whether this is its trial call."""
        if self.breaker is None:
            return False
        refusal, trial = self.breaker.admit()
        if refusal is not None:
            raise self._error(method, url, 0, refusal)
        return trial

    def _settle(
        self,
        method: str,
        request: httpx.Request,
        attempt: int,
        max_attempts: int,
        deadline: _Deadline,
        response: httpx.Response | None,
        error: Exception | None,
        refused_only: bool = False,
    ) -> httpx.Response | _Outcome:
        """Judge one attempt: the response when it is usable (< 400), else the outcome to retry
        after ``outcome.delay`` (logged); ProviderError when the call failed for good.
        ``refused_only``: a call that is not idempotent is retried only after an answer that
        refused it (:data:`REFUSAL_STATUSES`), never after no answer or another error."""
        if isinstance(error, _DeadlineExceededError):
            outcome = _Outcome(error.response, None, False, 0.0, deadline.describe())
            raise self._fail(method, request.url, attempt, outcome)
        outcome = _classify(self.config, attempt, response, error)
        if (
            refused_only
            and outcome.retry
            and (outcome.response is None or outcome.response.status_code not in REFUSAL_STATUSES)
        ):
            outcome.retry = False
        if outcome.response is not None and outcome.response.status_code < 400:
            return outcome.response
        if not outcome.retry or attempt >= max_attempts:
            raise self._fail(method, request.url, attempt, outcome) from outcome.error
        left = deadline.left()
        if left is not None and outcome.delay >= left:
            outcome.reason += (
                f"; a retry in {outcome.delay:.1f}s would pass the {deadline.total_s:g}s deadline"
            )
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


def _breaker_verdict(exc: BaseException | None) -> bool | None:
    """How a logical call's end counts for the breaker: True ok, False failed, None neither."""
    if exc is None:
        return True
    if isinstance(exc, ProviderError):
        if exc.attempts == 0:  # refused by the breaker or no slot: not the provider's answer
            return None
        if exc.reason.startswith("deadline"):
            return False
        return not (exc.status is None or exc.status == 429 or exc.status >= 500)
    return None


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
        self._slots = threading.BoundedSemaphore(config.max_concurrency) if config.max_concurrency else None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    @contextlib.contextmanager
    def _slot(self, method: str, url: httpx.URL, deadline: _Deadline) -> Iterator[None]:
        if self._slots is None:
            yield
            return
        left = deadline.left()
        if not self._slots.acquire(timeout=None if left is None else max(left, 0.0)):
            raise self._error(
                method, url, 0, f"no free slot of {self.config.max_concurrency} within the deadline"
            )
        try:
            yield
        finally:
            self._slots.release()

    def _try(
        self, request: httpx.Request, deadline: _Deadline, base: Mapping[str, float | None]
    ) -> tuple[httpx.Response | None, Exception | None]:
        if deadline.expired():
            return None, _DeadlineExceededError(None)
        request.extensions["timeout"] = _bounded_timeouts(base, deadline.left())
        try:
            response = self._client.send(request, stream=True)
        except httpx.TransportError as exc:  # connect/read/write/pool timeouts included
            return None, _DeadlineExceededError(None) if deadline.expired() else exc
        cutter = _SocketCutter(response)
        left = deadline.left()
        timer = None
        if left is not None and cutter.usable:
            timer = threading.Timer(max(left, 0.0), cutter.fire)
            timer.daemon = True
            timer.start()
        try:
            response.read()
        except httpx.TransportError as exc:
            response.close()
            return None, _DeadlineExceededError(response) if cutter.fired or deadline.expired() else exc
        finally:
            cutter.finish()
            if timer is not None:
                timer.cancel()
        return response, None

    def _send(
        self,
        method: str,
        path: str,
        idempotent: bool | None,
        retry: bool,
        deadline_s: float | None,
        kwargs: dict[str, Any],
        retry_refused: bool = False,
    ) -> tuple[httpx.Response, int]:
        request, max_attempts, deadline, base = self._prepare(
            method,
            idempotent,
            retry,
            deadline_s,
            lambda: self._client.build_request(method, path, **kwargs),
            retry_refused,
        )
        refused_only = retry_refused and not is_idempotent(method, idempotent)
        trial = self._admit(method, request.url)
        failure: BaseException | None = None
        try:
            with self._slot(method, request.url, deadline):
                attempt = 0
                while True:
                    attempt += 1
                    outcome = self._settle(
                        method,
                        request,
                        attempt,
                        max_attempts,
                        deadline,
                        *self._try(request, deadline, base),
                        refused_only=refused_only,
                    )
                    if isinstance(outcome, httpx.Response):
                        return outcome, attempt
                    if outcome.response is not None:
                        outcome.response.close()
                    time.sleep(outcome.delay)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            if self.breaker is not None:
                self.breaker.settle(_breaker_verdict(failure), trial=trial)

    def request(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool | None = None,
        retry: bool = True,
        deadline_s: float | None = None,
        retry_refused: bool = False,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send (retrying only an idempotent call); returns a < 400 response with its body read,
        or raises ProviderError. ``retry=False``: one attempt whatever the method."""
        return self._send(method, path, idempotent, retry, deadline_s, kwargs, retry_refused)[0]

    def get_json(
        self,
        path: str,
        *,
        idempotent: bool | None = None,
        retry: bool = True,
        deadline_s: float | None = None,
        retry_refused: bool = False,
        **kwargs: Any,
    ) -> Any:
        """GET (retried) and decode the JSON body (ProviderError when it is not JSON)."""
        return _decode_json(
            self.config, *self._send("GET", path, idempotent, retry, deadline_s, kwargs, retry_refused)
        )

    def post_json(
        self,
        path: str,
        *,
        idempotent: bool | None = None,
        retry: bool = True,
        deadline_s: float | None = None,
        retry_refused: bool = False,
        **kwargs: Any,
    ) -> Any:
        """POST (one attempt unless ``idempotent=True``) and decode the JSON body."""
        return _decode_json(
            self.config, *self._send("POST", path, idempotent, retry, deadline_s, kwargs, retry_refused)
        )


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
        self._slots = asyncio.BoundedSemaphore(config.max_concurrency) if config.max_concurrency else None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _acquire(self, method: str, url: httpx.URL, deadline: _Deadline) -> bool:
        if self._slots is None:
            return False
        try:
            async with asyncio.timeout(deadline.left()):
                await self._slots.acquire()
        except TimeoutError:
            raise self._error(
                method, url, 0, f"no free slot of {self.config.max_concurrency} within the deadline"
            ) from None
        return True

    async def _try(
        self, request: httpx.Request, deadline: _Deadline, base: Mapping[str, float | None]
    ) -> tuple[httpx.Response | None, Exception | None]:
        if deadline.expired():
            return None, _DeadlineExceededError(None)
        request.extensions["timeout"] = _bounded_timeouts(base, deadline.left())
        response: httpx.Response | None = None
        try:
            async with asyncio.timeout(deadline.left()):
                response = await self._client.send(request, stream=True)
                await response.aread()
        except TimeoutError:
            if response is not None:
                await response.aclose()
            return None, _DeadlineExceededError(response)
        except httpx.TransportError as exc:  # connect/read/write/pool timeouts included
            if response is not None:
                await response.aclose()
            return None, _DeadlineExceededError(response) if deadline.expired() else exc
        return response, None

    async def _send(
        self,
        method: str,
        path: str,
        idempotent: bool | None,
        retry: bool,
        deadline_s: float | None,
        kwargs: dict[str, Any],
        retry_refused: bool = False,
    ) -> tuple[httpx.Response, int]:
        request, max_attempts, deadline, base = self._prepare(
            method,
            idempotent,
            retry,
            deadline_s,
            lambda: self._client.build_request(method, path, **kwargs),
            retry_refused,
        )
        refused_only = retry_refused and not is_idempotent(method, idempotent)
        trial = self._admit(method, request.url)
        failure: BaseException | None = None
        slot = False
        try:
            slot = await self._acquire(method, request.url, deadline)
            attempt = 0
            while True:
                attempt += 1
                response, error = await self._try(request, deadline, base)
                outcome = self._settle(
                    method, request, attempt, max_attempts, deadline, response, error, refused_only
                )
                if isinstance(outcome, httpx.Response):
                    return outcome, attempt
                if outcome.response is not None:
                    await outcome.response.aclose()
                await asyncio.sleep(outcome.delay)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            if slot and self._slots is not None:
                self._slots.release()
            if self.breaker is not None:
                self.breaker.settle(_breaker_verdict(failure), trial=trial)

    @contextlib.asynccontextmanager
    async def stream(
        self, method: str, path: str, *, deadline_s: float | None = None, **kwargs: Any
    ) -> AsyncIterator[httpx.Response]:
        """One streamed attempt (never retried): yields the < 400 response with its body unread,
        for the caller to consume (``aiter_lines`` / ``aiter_bytes``) inside the ``async with``.

        Raises :class:`ProviderError` for no answer (connect error, timeout), an answer >= 400
        (its body read, reason and body excerpt in the error, :func:`parse_retry_hint`'s wait
        named), a transport error while the caller reads the body, and the deadline
        (``deadline_s``, default the config's) passing anywhere: connect, headers, or any read;
        the caller's own exceptions (and its own ``asyncio.timeout``) pass through unchanged.
        The concurrency cap applies; the circuit breaker does not (a streamed call's failure may
        be the caller's first-byte verdict, which this client cannot see)."""
        request = self._client.build_request(method, path, **kwargs)
        deadline = _Deadline(deadline_s if deadline_s is not None else self.config.deadline_s)
        base: dict[str, float | None] = dict(request.extensions.get("timeout", {}))
        request.extensions["timeout"] = _bounded_timeouts(base, deadline.left())
        response: httpx.Response | None = None
        scope = asyncio.timeout(deadline.left())
        slot = False
        try:
            async with scope:
                slot = await self._acquire(method, request.url, deadline)
                try:
                    response = await self._client.send(request, stream=True)
                except httpx.TransportError as exc:
                    reason = f"{exc.__class__.__name__}: {exc}".rstrip(": ")
                    raise self._error(method, request.url, 1, reason) from exc
                if response.status_code >= 400:
                    await response.aread()
                    raise self._error(method, request.url, 1, _refusal_reason(response), response)
                try:
                    yield response
                except httpx.TransportError as exc:
                    reason = f"{exc.__class__.__name__} while reading the stream: {exc}".rstrip(": ")
                    raise self._error(method, request.url, 1, reason) from exc
        except TimeoutError as exc:
            if not scope.expired():
                raise  # the caller's own timeout
            raise self._error(method, request.url, 1, deadline.describe()) from exc
        finally:
            if response is not None:
                await response.aclose()
            if slot and self._slots is not None:
                self._slots.release()

    async def request(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool | None = None,
        retry: bool = True,
        deadline_s: float | None = None,
        retry_refused: bool = False,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send (retrying only an idempotent call); returns a < 400 response with its body read,
        or raises ProviderError. ``retry=False``: one attempt whatever the method."""
        return (await self._send(method, path, idempotent, retry, deadline_s, kwargs, retry_refused))[0]

    async def get_json(
        self,
        path: str,
        *,
        idempotent: bool | None = None,
        retry: bool = True,
        deadline_s: float | None = None,
        retry_refused: bool = False,
        **kwargs: Any,
    ) -> Any:
        """GET (retried) and decode the JSON body (ProviderError when it is not JSON)."""
        return _decode_json(
            self.config,
            *(await self._send("GET", path, idempotent, retry, deadline_s, kwargs, retry_refused)),
        )

    async def post_json(
        self,
        path: str,
        *,
        idempotent: bool | None = None,
        retry: bool = True,
        deadline_s: float | None = None,
        retry_refused: bool = False,
        **kwargs: Any,
    ) -> Any:
        """POST (one attempt unless ``idempotent=True``) and decode the JSON body."""
        return _decode_json(
            self.config,
            *(await self._send("POST", path, idempotent, retry, deadline_s, kwargs, retry_refused)),
        )
