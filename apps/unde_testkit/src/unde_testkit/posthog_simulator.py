"""PostHog's public capture endpoints simulated on loopback for the gateway's analytics tests
(https://posthog.com/docs/api/capture): ``POST /batch/`` (``{"api_key", "batch": [...]}``),
``POST /i/v0/e/`` and ``POST /capture/`` (one event: ``{"api_key", "event", "distinct_id",
"properties"?, "timestamp"?}``).

Strict like PostHog: a body that is not a JSON object, a missing or unknown ``api_key`` (401), an
event without ``event`` or ``distinct_id`` (top level or ``properties.distinct_id``), non-object
``properties`` or a ``timestamp`` that is not ISO 8601 → 400 naming the problem, and nothing of
that request is kept. Accepted events land in :attr:`PostHogSimulator.events`.

Faults (:attr:`mode`): ``ok`` | ``error5xx`` (503 to everything) | ``slow`` (answers after
:attr:`delay_s`) ; PostHog *down* is a host nobody listens on (:func:`unde_testkit.testing.free_port`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
from typing import Any, Final

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

__all__ = ["POSTHOG_KEY", "PostHogSimulator"]

POSTHOG_KEY: Final = "phc_unde_test_project_key"


def _problem(item: Any, where: str) -> str | None:
    if not isinstance(item, dict):
        return f"{where} is not an object"
    if not isinstance(item.get("event"), str) or not item["event"]:
        return f"{where}.event is required"
    props = item.get("properties", {})
    if not isinstance(props, dict):
        return f"{where}.properties must be an object"
    distinct = item.get("distinct_id", props.get("distinct_id"))
    if not isinstance(distinct, str | int) or distinct == "":
        return f"{where}.distinct_id is required"
    stamp = item.get("timestamp")
    if stamp is not None:
        try:
            dt.datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
        except ValueError:
            return f"{where}.timestamp is not ISO 8601"
    return None


class PostHogSimulator:
    """PostHog's capture API on loopback (see the module docstring)."""

    def __init__(self, api_key: str = POSTHOG_KEY) -> None:
        self.api_key = api_key
        self.mode = "ok"
        self.delay_s = 10.0
        self.events: list[dict[str, Any]] = []
        self.requests = 0
        self.refused: list[str] = []
        self._lock = threading.Lock()
        self.app = Starlette(
            routes=[
                Route("/batch/", self._batch, methods=["POST"]),
                Route("/batch", self._batch, methods=["POST"]),
                Route("/i/v0/e/", self._single, methods=["POST"]),
                Route("/capture/", self._single, methods=["POST"]),
            ]
        )

    def reset(self) -> None:
        with self._lock:
            self.mode, self.events, self.requests, self.refused = "ok", [], 0, []

    def events_named(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if e["event"] == name]

    async def _body(self, request: Request) -> tuple[dict[str, Any] | None, JSONResponse | None]:
        with self._lock:
            self.requests += 1
        if self.mode == "error5xx":
            return None, JSONResponse({"type": "server_error", "detail": "unavailable"}, status_code=503)
        if self.mode == "slow":
            await asyncio.sleep(self.delay_s)
        try:
            body = json.loads(await request.body())
        except ValueError:
            return None, self._refuse(400, "body is not JSON")
        if not isinstance(body, dict):
            return None, self._refuse(400, "body is not a JSON object")
        key = body.get("api_key") or body.get("token")
        if not key:
            return None, self._refuse(401, "api_key is required")
        if key != self.api_key:
            return None, self._refuse(401, "api_key is not a project API key")
        return body, None

    def _refuse(self, status: int, detail: str) -> JSONResponse:
        with self._lock:
            self.refused.append(detail)
        kind = "authentication_error" if status == 401 else "validation_error"
        return JSONResponse({"type": kind, "code": "invalid", "detail": detail}, status_code=status)

    def _keep(self, items: list[dict[str, Any]]) -> None:
        with self._lock:
            for item in items:
                props = dict(item.get("properties") or {})
                self.events.append(
                    {
                        "event": item["event"],
                        "distinct_id": str(item.get("distinct_id", props.get("distinct_id"))),
                        "properties": props,
                        "timestamp": item.get("timestamp"),
                    }
                )

    async def _batch(self, request: Request) -> JSONResponse:
        body, error = await self._body(request)
        if error is not None:
            return error
        assert body is not None
        batch = body.get("batch")
        if not isinstance(batch, list) or not batch:
            return self._refuse(400, "batch must be a non-empty list")
        for n, item in enumerate(batch):
            problem = _problem(item, f"batch[{n}]")
            if problem:
                return self._refuse(400, problem)
        self._keep(batch)
        return JSONResponse({"status": 1})

    async def _single(self, request: Request) -> JSONResponse:
        body, error = await self._body(request)
        if error is not None:
            return error
        assert body is not None
        problem = _problem(body, "event")
        if problem:
            return self._refuse(400, problem)
        self._keep([body])
        return JSONResponse({"status": 1})


def main() -> None:  # pragma: no cover - run by the lab scenario (molecule/entry/prepare.yml)
    """``python -m unde_testkit.posthog_simulator --host H --port P`` (the lab scenario names
    both): PostHog's capture API with the lab project key (:data:`POSTHOG_KEY`)."""
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description="UNDE PostHog capture simulator (lab only)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(PostHogSimulator().app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":  # pragma: no cover
    main()
