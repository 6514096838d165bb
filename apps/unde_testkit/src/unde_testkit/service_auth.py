"""Service tokens for tests: every app under test runs its real :class:`unde_common.auth.ServiceAuth`
with test tokens, and the tests' clients send them.

- :data:`TEST_SERVICE_TOKENS`: one token per caller name of the vault's ``unde_service_tokens``.
- :func:`service_auth_env`: ``SERVICE_CALLERS`` (every caller but monitoring, as SHA-256),
  ``SERVICE_MONITORING_SHA256`` and ``SERVICE_TOKEN`` (the :data:`TEST_CALLER`'s token). The pytest
  plugin puts them into the environment at start-up (where a variable is not set already), and
  :class:`~unde_testkit.testing.EnvWriter` writes them into each test's .env, so an app built in a
  test accepts the test callers and its own clients send a known token.
- :func:`service_client` (``service_client(app)`` instead of ``TestClient(app)``) and
  :class:`ServiceTokenAuth` (``httpx.post(url, auth=ServiceTokenAuth())``): the monitoring token on
  /health and /metrics, the caller's token elsewhere; :func:`caller_headers` and
  :func:`monitoring_headers` for a single request.
"""

from __future__ import annotations

import json
import os
from collections.abc import Generator, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

import httpx

from unde_common.auth import MONITORING, bearer_headers, is_ops_path, token_digest

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

__all__ = [
    "TEST_CALLER",
    "TEST_SERVICE_TOKENS",
    "ServiceTokenAuth",
    "caller_headers",
    "install_service_auth_env",
    "monitoring_headers",
    "service_auth_env",
    "service_client",
]

#: a test token per caller (the names of the vault's ``unde_service_tokens``)
TEST_SERVICE_TOKENS: Final[Mapping[str, str]] = {
    name: f"test-service-token-{name}"
    for name in (MONITORING, "recognition", "ximilar_gw", "scraper", "api_gateway", "llm_orchestrator")
}
#: the caller whose token the test clients (and the apps' own clients, SERVICE_TOKEN) send
TEST_CALLER: Final = "recognition"


def service_auth_env(
    callers: Iterable[str] | None = None, *, token_of: str | None = TEST_CALLER
) -> dict[str, str]:
    """The service-auth settings of a test app: ``callers`` (default: every test caller but
    monitoring) may call it, monitoring may call /health and /metrics, and its own clients send
    ``token_of``'s token (None: no SERVICE_TOKEN)."""
    names = [n for n in TEST_SERVICE_TOKENS if n != MONITORING] if callers is None else list(callers)
    values = {
        "SERVICE_CALLERS": json.dumps({n: token_digest(TEST_SERVICE_TOKENS[n]) for n in names}),
        "SERVICE_MONITORING_SHA256": token_digest(TEST_SERVICE_TOKENS[MONITORING]),
    }
    if token_of is not None:
        values["SERVICE_TOKEN"] = TEST_SERVICE_TOKENS[token_of]
    return values


def install_service_auth_env() -> None:
    """Put :func:`service_auth_env` into ``os.environ`` where a variable is not set (the plugin)."""
    for name, value in service_auth_env().items():
        os.environ.setdefault(name, value)


def caller_headers(caller: str = TEST_CALLER) -> dict[str, str]:
    """``Authorization: Bearer`` of a test caller (the business routes)."""
    return bearer_headers(TEST_SERVICE_TOKENS[caller])


def monitoring_headers() -> dict[str, str]:
    """``Authorization: Bearer`` of the monitoring caller (/health, /health/live, /metrics)."""
    return bearer_headers(TEST_SERVICE_TOKENS[MONITORING])


class ServiceTokenAuth(httpx.Auth):
    """httpx auth of a test client: the monitoring token on /health, /health/… and /metrics, the
    ``caller``'s token on every other path; a request with its own ``Authorization`` keeps it."""

    def __init__(self, caller: str = TEST_CALLER) -> None:
        self.caller = caller

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if "authorization" not in request.headers:
            who = MONITORING if is_ops_path(request.url.path) else self.caller
            request.headers["Authorization"] = f"Bearer {TEST_SERVICE_TOKENS[who]}"
        yield request


def service_client(app: Any, *, caller: str = TEST_CALLER, **kwargs: Any) -> TestClient:
    """A :class:`~fastapi.testclient.TestClient` of ``app`` whose requests carry the test tokens
    (:class:`ServiceTokenAuth`): the app's real caller checks run, and pass."""
    from fastapi.testclient import TestClient

    client = TestClient(app, **kwargs)
    client.auth = ServiceTokenAuth(caller)
    return client
