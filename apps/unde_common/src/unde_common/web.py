"""The request edge every UNDE FastAPI app shares (installed by :func:`unde_common.health.create_app`).

- :class:`RequestBodyGuard` (pure ASGI middleware): reads the request body itself, refusing it with
  413 as soon as it passes the route's limit (``Content-Length`` first, then while it streams — a
  64 MB body is never read whole), and refuses bodies that are not strict JSON before any handler
  sees them: bytes that are not UTF-8 → 400; ``NaN``/``Infinity``/``-Infinity``, a number that
  overflows to infinity (``1e400``), a lone UTF-16 surrogate (``"\\ud800"``), nesting too deep →
  422, each naming the problem. The body is then replayed to the app unchanged.
- :func:`install_error_handlers`: a store that cannot answer (Redis connection/timeout errors,
  :class:`unde_common.db.DatabaseUnavailableError`, psycopg operational errors, a pool timeout) →
  503 with ``Retry-After``; any other unhandled exception → a neutral 500 body (logged with its
  traceback, never answered with it or with an internal address).
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping
from typing import Annotated, Any

import psycopg
import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout
from pydantic import StringConstraints

from unde_common.db import DatabaseUnavailableError

__all__ = [
    "DEFAULT_MAX_REQUEST_BYTES",
    "SAFE_ID_PATTERN",
    "STORE_ERRORS",
    "BodyProblemError",
    "RequestBodyGuard",
    "SafeId",
    "check_json",
    "install_error_handlers",
]

log = logging.getLogger("unde_common.web")

DEFAULT_MAX_REQUEST_BYTES = 1024 * 1024
#: the alphabet of ids a client names (exchange ids, frame ids, mall ids…): letters, digits, ``._:-``;
#: no NUL, control or space characters, which PostgreSQL text or Redis key patterns would trip on
SAFE_ID_PATTERN = r"^[A-Za-z0-9._:-]+$"
#: an id from a request body: 1-100 characters of :data:`SAFE_ID_PATTERN`
SafeId = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=SAFE_ID_PATTERN)]
#: exceptions meaning "a backing store cannot answer now": 503 + Retry-After, not 500
STORE_ERRORS: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    DatabaseUnavailableError,
    psycopg.OperationalError,
    PoolTimeout,
)
#: content types whose bodies are not JSON (size-limited only)
_NOT_JSON = ("multipart/", "application/x-www-form-urlencoded", "application/octet-stream", "image/")
#: a body can only hold a non-finite number or a lone surrogate if it has one of these: the strict
#: parse runs only then (one regex scan instead of a second parse on the hot path). ``\d{309}``:
#: the shortest integer part that overflows a float; ``[eE][+-]?\d{3}``: a three-digit exponent.
_SUSPECT = re.compile(rb"NaN|Infinity|\\u|\d{309}|[eE][+-]?\d{3}")
_METHODS_WITH_BODY = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class BodyProblemError(ValueError):
    """A request body that is not strict JSON; ``status`` is 400 (encoding) or 422 (a value)."""

    def __init__(self, status: int, kind: str, msg: str) -> None:
        super().__init__(msg)
        self.status = status
        self.kind = kind
        self.msg = msg


def _reject_constant(token: str) -> Any:
    raise BodyProblemError(
        422, "json_non_finite", f"{token} is not a JSON number (non-finite numbers are refused)"
    )


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise BodyProblemError(422, "json_non_finite", f"number {text[:40]} overflows to infinity")
    return value


def _check_strings(value: Any) -> None:
    """Raise on any string (key or value) with a lone surrogate: it cannot be encoded as UTF-8."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            items: list[Any] = [item]
        elif isinstance(item, dict):
            stack.extend(item.values())
            items = list(item)
        elif isinstance(item, list):
            stack.extend(item)
            continue
        else:
            continue
        for text in items:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise BodyProblemError(
                    422, "json_lone_surrogate", f"string holds a lone UTF-16 surrogate at offset {exc.start}"
                ) from None


def check_json(raw: bytes) -> None:
    """Raise :class:`BodyProblemError` if ``raw`` is not UTF-8 or holds non-finite numbers or lone
    surrogates. Syntax errors are left to the app (FastAPI's usual 422)."""
    if not raw.isascii():
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BodyProblemError(
                400, "body_not_utf8", f"request body is not UTF-8: invalid byte at offset {exc.start}"
            ) from None
    if _SUSPECT.search(raw) is None:
        return
    try:
        parsed = json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
    except BodyProblemError:
        raise
    except RecursionError:
        raise BodyProblemError(422, "json_too_deep", "JSON nested too deeply") from None
    except ValueError:  # a syntax error, an integer too long to convert: the app's 422
        return
    _check_strings(parsed)


def _problem_body(problem: BodyProblemError) -> dict[str, Any]:
    if problem.status == 422:
        return {"detail": [{"loc": ["body"], "msg": problem.msg, "type": problem.kind}]}
    return {"detail": problem.msg}


class RequestBodyGuard:
    """Pure ASGI middleware: body size limit per route (``limits``: path → bytes, else ``default``)
    and strict JSON (see the module doc)."""

    def __init__(
        self, app: Any, *, default: int = DEFAULT_MAX_REQUEST_BYTES, limits: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.default = default
        self.limits = dict(limits or {})

    async def _answer(
        self, send: Any, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        payload = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    *(headers or []),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in _METHODS_WITH_BODY:
            await self.app(scope, receive, send)
            return
        limit = self.limits.get(scope["path"], self.default)
        content_type = ""
        declared: int | None = None
        for key, value in scope["headers"]:
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await self._answer(send, 400, {"detail": "Content-Length is not a number"})
                    return
            elif key == b"content-type":
                content_type = value.decode("latin-1").lower()
        too_large = {"detail": f"request body larger than {limit} bytes"}
        if declared is not None and declared > limit:
            await self._answer(send, 413, too_large, [(b"connection", b"close")])
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._answer(send, 413, too_large, [(b"connection", b"close")])
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        raw = b"".join(chunks)
        if raw and not content_type.startswith(_NOT_JSON):
            try:
                check_json(raw)
            except BodyProblemError as problem:
                await self._answer(send, problem.status, _problem_body(problem))
                return
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": raw, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def install_error_handlers(app: FastAPI, *, retry_after_s: int = 1) -> None:
    """503 + ``Retry-After`` for :data:`STORE_ERRORS`, a neutral 500 for anything else unhandled."""

    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        store = "redis" if isinstance(exc, redis.exceptions.RedisError) else "database"
        log.warning(
            "store unavailable",
            extra={"method": request.method, "path": request.url.path, "exc_type": type(exc).__name__},
        )
        return JSONResponse(
            {"error": f"{store}_unavailable", "detail": f"{store} unavailable: {type(exc).__name__}; retry"},
            status_code=503,
            headers={"Retry-After": str(retry_after_s)},
        )

    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.error(
            "unhandled exception",
            exc_info=exc,
            extra={"method": request.method, "path": request.url.path},
        )
        return JSONResponse({"error": "internal_error", "detail": "internal error"}, status_code=500)

    for cls in STORE_ERRORS:
        app.add_exception_handler(cls, unavailable)
    app.add_exception_handler(Exception, internal)
