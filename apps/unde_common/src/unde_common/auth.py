"""Service-to-service authentication: a bearer token per caller, checked by every UNDE HTTP API.

Why bearer tokens and not mTLS: the callers are few and fixed (the port registry's ``clients`` of
each service), the services are plain uvicorn processes behind no proxy, and a token per caller
names who called in the refusal log. The internal CA stays for the database hops.

- Each caller has one token in the vault (``unde_service_tokens``: ``monitoring``, ``recognition``,
  ``ximilar_gw``, ``scraper``, ``api_gateway``, ``llm_orchestrator``). A calling app gets its own
  plaintext token as ``SERVICE_TOKEN`` (``HttpClientSettings.service_token``) and its clients made
  with :func:`unde_common.http.service_config` send ``Authorization: Bearer <token>``; external
  providers never see it.
- A service never holds its callers' tokens, only their SHA-256 (hex): ``SERVICE_CALLERS``
  (``{"recognition": "<sha256>", ...}``, the registry entry's ``clients`` groups minus
  ``monitoring_server``, each without ``_app``) and ``SERVICE_MONITORING_SHA256``. The roles render
  both from the registry (roles/unde_app); a copy of the .env does not let anyone call anything.
- :class:`ServiceAuth` (pure ASGI middleware, installed by :func:`unde_common.health.create_app`):
  no ``Authorization: Bearer`` or an unknown token → 401 with ``WWW-Authenticate: Bearer``; a known
  caller on a route it may not use → 403. ``/health``, ``/health/*`` and ``/metrics`` accept only the
  monitoring caller; every other route (``/openapi.json`` and ``/docs`` included) only the
  configured callers, never monitoring. Digests are compared with :func:`hmac.compare_digest`
  against every known digest (no early exit). Fail closed: no callers configured → every business
  call is refused, no monitoring digest → every /health and /metrics call is refused; both are said
  at startup in the log. Each refusal is logged with the caller's name (or ``unknown``), the path
  and the status, never the token.
- ``business=False`` (the API gateway: its business routes are the public API behind nginx, users
  authenticate there): only /health and /metrics are checked.
- :func:`start_metrics_server`: a Celery worker's /metrics server with the same monitoring-only rule.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import SecretStr

__all__ = [
    "MONITORING",
    "ServiceAuth",
    "bearer_headers",
    "identify",
    "is_ops_path",
    "log_auth_config",
    "start_metrics_server",
    "token_digest",
]

log = logging.getLogger("unde_common.auth")

#: the caller name of the monitoring server (Prometheus, the health probes)
MONITORING = "monitoring"
_REALM = 'Bearer realm="unde"'


def token_digest(token: str) -> str:
    """SHA-256 (hex) of a token: what a service holds in SERVICE_CALLERS / SERVICE_MONITORING_SHA256."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def bearer_headers(token: SecretStr | str | None) -> dict[str, str]:
    """``{"Authorization": "Bearer <token>"}`` (empty when there is no token)."""
    raw = token.get_secret_value() if isinstance(token, SecretStr) else token
    return {"Authorization": f"Bearer {raw}"} if raw else {}


def is_ops_path(path: str) -> bool:
    """/health, /health/… and /metrics: the routes only the monitoring caller may use."""
    return path in ("/health", "/metrics") or path.startswith("/health/")


def _bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def identify(authorization: str | None, known: Mapping[str, str]) -> tuple[str | None, bool]:
    """The caller (name in ``known``: name → SHA-256 hex) an ``Authorization`` header names, and
    whether a bearer token was given at all. Every digest is compared (constant time each)."""
    token = _bearer_token(authorization)
    if token is None:
        return None, False
    digest = token_digest(token).encode()
    found: str | None = None
    for name, expected in known.items():
        if hmac.compare_digest(digest, expected.encode()) and found is None:
            found = name
    return found, True


def _known(callers: Mapping[str, str], monitoring_sha256: str) -> dict[str, str]:
    known = {name: digest for name, digest in callers.items() if name != MONITORING and digest}
    if monitoring_sha256:
        known[MONITORING] = monitoring_sha256
    return known


def _verdict(caller: str | None, given: bool, path: str, *, business: bool) -> tuple[int, str] | None:
    """None when the call may go on, else (status, reason)."""
    ops = is_ops_path(path)
    if not ops and not business:
        return None
    if caller is None:
        return (401, "unknown token") if given else (401, "no bearer token")
    if ops and caller != MONITORING:
        return 403, "only monitoring may call /health and /metrics"
    if not ops and caller == MONITORING:
        return 403, "monitoring may call /health and /metrics only"
    return None


class ServiceAuth:
    """Pure ASGI middleware: the caller rules of the module doc. ``callers``: name → SHA-256 hex of
    its token; ``monitoring_sha256``: the monitoring caller's; ``business=False``: leave the
    business routes to the app (the API gateway's public API)."""

    def __init__(
        self,
        app: Any,
        *,
        callers: Mapping[str, str],
        monitoring_sha256: str,
        app_name: str = "unde",
        business: bool = True,
    ) -> None:
        self.app = app
        self.known = _known(callers, monitoring_sha256)
        self.business = business
        self.app_name = app_name

    async def _refuse_http(self, send: Any, status: int, reason: str, given: bool) -> None:
        payload = json.dumps({"error": "unauthorized" if status == 401 else "forbidden", "detail": reason})
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        if status == 401:
            challenge = _REALM + (', error="invalid_token"' if given else "")
            headers.append((b"www-authenticate", challenge.encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload.encode()})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        authorization: str | None = None
        for key, value in scope["headers"]:
            if key == b"authorization":
                authorization = value.decode("latin-1")
                break
        caller, given = identify(authorization, self.known)
        verdict = _verdict(caller, given, path, business=self.business)
        if verdict is None:
            if caller is not None:
                scope.setdefault("state", {})["service_caller"] = caller
            await self.app(scope, receive, send)
            return
        status, reason = verdict
        log.warning(
            "service call refused",
            extra={"caller": caller or "unknown", "path": path[:200], "status": status, "reason": reason},
        )
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008})
            return
        await self._refuse_http(send, status, reason, given)


def log_auth_config(
    app_name: str, callers: Mapping[str, str], monitoring_sha256: str, *, business: bool
) -> None:
    """Say at startup who may call the service, and what is refused for want of configuration."""
    if business and not callers:
        log.warning(
            "no service callers configured (SERVICE_CALLERS): every business call is refused",
            extra={"service": app_name},
        )
    if not monitoring_sha256:
        log.warning(
            "SERVICE_MONITORING_SHA256 is not set: /health and /metrics refuse every caller",
            extra={"service": app_name},
        )
    log.info(
        "service callers",
        extra={
            "service": app_name,
            "callers": sorted(callers) if business else "public",
            "monitoring": bool(monitoring_sha256),
        },
    )


# --------------------------------------------------------------------------- worker /metrics


def _guard_wsgi(
    app: Callable[..., Iterable[bytes]], known: Mapping[str, str]
) -> Callable[..., Iterable[bytes]]:
    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "") or "/"
        caller, given = identify(environ.get("HTTP_AUTHORIZATION"), known)
        # every path of this server is /metrics (prometheus_client answers any path with it)
        verdict = _verdict(caller, given, "/metrics", business=False)
        if verdict is None:
            return app(environ, start_response)
        status, reason = verdict
        log.warning(
            "service call refused",
            extra={"caller": caller or "unknown", "path": path[:200], "status": status, "reason": reason},
        )
        body = json.dumps(
            {"error": "unauthorized" if status == 401 else "forbidden", "detail": reason}
        ).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        if status == 401:
            headers.append(("WWW-Authenticate", _REALM + (', error="invalid_token"' if given else "")))
        start_response("401 Unauthorized" if status == 401 else "403 Forbidden", headers)
        return [body]

    return guarded


def start_metrics_server(
    registry: Any, port: int, addr: str, monitoring_sha256: str
) -> tuple[Any, threading.Thread]:
    """Serve ``registry`` on ``addr:port`` from a daemon thread (a Celery worker's main process),
    answering only the monitoring caller (no digest configured: every call is refused)."""
    from wsgiref.simple_server import make_server

    from prometheus_client import make_wsgi_app
    from prometheus_client.exposition import ThreadingWSGIServer, _get_best_family, _SilentHandler

    class Server(ThreadingWSGIServer):
        """ThreadingWSGIServer with the address family of ``addr``."""

    if not monitoring_sha256:
        log.warning("SERVICE_MONITORING_SHA256 is not set: the metrics server refuses every caller")
    Server.address_family, host = _get_best_family(addr, port)  # type: ignore[no-untyped-call]
    guarded = _guard_wsgi(make_wsgi_app(registry), _known({}, monitoring_sha256))
    httpd = make_server(host, port, guarded, Server, handler_class=_SilentHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True, name="metrics-server")
    thread.start()
    return httpd, thread
