"""Test support for the catalog pipeline apps (apify, photo_downloader, collage, ximilar_sync,
scraper): databases migrated with the project's own migrations and runner, least-privilege login
users as the postgresql role creates them, and loopback simulators of the providers, each able to
inject the faults the apps must survive. Used by the apps' tests and ``bench/catalog.py``; never
imported by app code.

- :func:`migrated_database` — ``files/sql/<schema>`` applied by the postgresql role's
  ``unde_sql_migrate`` runner (:func:`unde_testkit.testing_sql.migrate_database`)
- :func:`login_dsn` — a LOGIN user that is a member of the migration's group role(s)
- :class:`ApifySimulator` — Apify API v2 (actor runs, run listing, status, abort, dataset pages)
- :class:`ImageHostSimulator` — brand image CDN: ``/img/{fault}/{name}.jpg?w=&h=``
- :class:`XimilarSimulator` — the strict Ximilar simulator with the catalog tests' token/collection
- :class:`ZaraSimulator` — Inditex mobile API per-colour store stock
- :func:`apify_item` / :func:`zara_item` — dataset items in the brands' actor shapes
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import itertools
import json
import re
import subprocess
import sys
import threading
import zlib
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from unde_testkit import recognition_simulators
from unde_testkit.loaders import repo_root
from unde_testkit.testing import PostgresHandle
from unde_testkit.testing_sql import migrate_database as migrated_database

__all__ = [
    "ZARA_TEST_CAMPAIGN",
    "ApifySimulator",
    "ImageHostSimulator",
    "XimilarSimulator",
    "ZaraSimulator",
    "apify_item",
    "jpeg_bytes",
    "login_dsn",
    "migrated_database",
    "repo_root",
    "zara_item",
]


# --------------------------------------------------------------------------- databases


def _socket_dir(pg: PostgresHandle) -> str:
    match = re.search(r"host=([^&]+)", pg.dsn)
    if match is None:
        raise RuntimeError(f"test PostgreSQL DSN has no socket host: {pg.dsn}")
    return match.group(1)


def login_dsn(pg: PostgresHandle, database: str, user: str, groups: Sequence[str]) -> str:
    """A LOGIN user member of ``groups`` (what the postgresql role creates); its DSN to ``database``."""
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone()
        if exists is None:
            create = sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'test-pw'").format(sql.Identifier(user))
            with contextlib.suppress(psycopg.errors.DuplicateObject):  # a concurrent test created it
                conn.execute(create)
        for group in groups:
            conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(user)))
    return f"postgresql://{user}:test-pw@/{database}?host={_socket_dir(pg)}"


# --------------------------------------------------------------------------- images


def jpeg_bytes(width: int, height: int, seed: str = "x", *, fmt: str = "JPEG", texture: float = 0.0) -> bytes:
    """A test picture (colour from ``seed`` with a darker band); ``texture`` (0..1) blends in noise so
    the JPEG is as large as a real catalog photo (0.15 at 1200x1600 is about 300 KB)."""
    from PIL import Image, ImageDraw

    digest = hashlib.sha256(seed.encode()).digest()
    img = Image.new("RGB", (width, height), (digest[0], digest[1], digest[2]))
    ImageDraw.Draw(img).rectangle((0, height // 3, width, height // 2), fill=(digest[3] // 2, 20, 40))
    if texture > 0:
        img = Image.blend(img, Image.effect_noise((width, height), 20).convert("RGB"), texture)
    out = io.BytesIO()
    img.save(out, fmt, quality=90) if fmt == "JPEG" else img.save(out, fmt)
    return out.getvalue()


# --------------------------------------------------------------------------- simulators


class ImageHostSimulator:
    """A brand image host. ``GET /img/{fault}/{name}?w=&h=`` where ``fault`` is one of:

    ``ok`` (JPEG WxH), ``png`` (a PNG), ``404``, ``500`` (always), ``flaky`` (503 twice, then ok),
    ``ratelimited`` (429 + ``Retry-After: 1`` once, then ok), ``slow`` (answers after ``delay`` s),
    ``truncated`` (Content-Length larger than the body), ``html`` (text/html page),
    ``garbage`` (``image/jpeg`` that is not an image), ``tiny`` (a 10x10 JPEG).
    ``hits[path]`` counts requests per path."""

    def __init__(self, texture: float = 0.0) -> None:
        self.texture = texture
        self.hits: defaultdict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, int, int, str], bytes] = {}

        async def app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
            await self._asgi(scope, receive, send)

        self.app = app

    def url(self, base: str, fault: str, name: str, w: int = 400, h: int = 600, **extra: Any) -> str:
        query = "&".join([f"w={w}", f"h={h}", *(f"{k}={v}" for k, v in extra.items())])
        return f"{base}/img/{fault}/{name}?{query}"

    def _image(self, name: str, w: int, h: int, fmt: str = "JPEG") -> bytes:
        if self.texture:  # textured pictures are slow to make: eight of them serve every name
            name = f"t{hashlib.sha256(name.encode()).digest()[0] % 8}"
        key = (name, w, h, fmt)
        with self._lock:
            if key not in self._cache:
                self._cache[key] = jpeg_bytes(w, h, name, fmt=fmt, texture=self.texture)
            return self._cache[key]

    async def _asgi(
        self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]
    ) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        query = dict(p.split("=", 1) for p in scope.get("query_string", b"").decode().split("&") if "=" in p)
        with self._lock:
            self.hits[path] += 1
            count = self.hits[path]
        parts = path.strip("/").split("/")
        if len(parts) != 3 or parts[0] != "img":
            await self._send(send, 404, b"not found", "text/plain")
            return
        fault, name = parts[1], parts[2]
        w, h = int(query.get("w", 400)), int(query.get("h", 600))
        if fault == "ok":
            await self._send(send, 200, self._image(name, w, h), "image/jpeg")
        elif fault == "png":
            await self._send(send, 200, self._image(name, w, h, "PNG"), "image/png")
        elif fault == "404":
            await self._send(send, 404, b"<h1>Not Found</h1>", "text/html")
        elif fault == "500":
            await self._send(send, 500, b"<h1>Internal error</h1>", "text/html")
        elif fault == "flaky":
            if count <= 2:
                await self._send(send, 503, b"busy", "text/plain")
            else:
                await self._send(send, 200, self._image(name, w, h), "image/jpeg")
        elif fault == "ratelimited":
            if count <= 1:
                await self._send(send, 429, b"slow down", "text/plain", [(b"retry-after", b"1")])
            else:
                await self._send(send, 200, self._image(name, w, h), "image/jpeg")
        elif fault == "slow":
            await asyncio.sleep(float(query.get("delay", "5")))
            await self._send(send, 200, self._image(name, w, h), "image/jpeg")
        elif fault == "truncated":
            body = self._image(name, w, h)
            headers = [(b"content-type", b"image/jpeg"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
            raise RuntimeError("simulated connection drop")  # uvicorn closes the connection mid-body
        elif fault == "html":
            await self._send(send, 200, b"<html><body>captcha</body></html>", "text/html; charset=utf-8")
        elif fault == "garbage":
            await self._send(send, 200, b"\xff\xd8\xff\xe0" + b"\x00not a jpeg" * 50, "image/jpeg")
        elif fault == "tiny":
            await self._send(send, 200, self._image(name, 10, 10), "image/jpeg")
        else:
            await self._send(send, 400, b"unknown fault", "text/plain")

    @staticmethod
    async def _send(
        send: Callable[..., Any],
        status: int,
        body: bytes,
        ctype: str,
        extra: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        headers = [(b"content-type", ctype.encode()), (b"content-length", str(len(body)).encode()), *extra]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _apify_error(status: int, kind: str, message: str) -> JSONResponse:
    """Apify's error body: ``{"error": {"type", "message"}}`` (openapi components/responses)."""
    return JSONResponse({"error": {"type": kind, "message": message}}, status)


def _apify_number(value: str | None, what: str, *, minimum: float = 0) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"Parameter '{what}' must be a number") from None
    if number < minimum:
        raise ValueError(f"Parameter '{what}' must be at least {minimum:g}")
    return number


def _apify_flag(value: str | None) -> bool:
    return (value or "").lower() in {"1", "true"}


def _apify_now() -> str:
    moment = datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class _DroppedResponse(Response):
    """A response cut after its first bytes: the connection closes, the client never sees a status
    line's body (what a lost answer looks like to it)."""

    async def __call__(self, scope: Any, receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"4096")]
        await send({"type": "http.response.start", "status": 201, "headers": headers})
        await send({"type": "http.response.body", "body": b'{"data": {"id": "', "more_body": True})
        raise RuntimeError("simulated connection drop")  # uvicorn closes the connection mid-body


class ApifySimulator:
    """Apify API v2 (OpenAPI in github.com/apify/apify-docs, apify-api/openapi/paths/):
    ``POST /v2/acts/{actor}/runs``, ``GET /v2/acts/{actor}/runs``, ``GET /v2/actor-runs/{id}``,
    ``POST /v2/actor-runs/{id}/abort``, ``GET /v2/datasets/{id}/items``.
    ``datasets[actor]`` = the rows a run of that actor yields (``{}`` rows are empty items, keys
    starting with ``#`` hidden fields).

    Strict like the real API: ``Authorization: Bearer`` checked (401 ``invalid-token``); an actor
    with no dataset is unknown (404 ``record-not-found``); run options ``timeout`` / ``maxItems`` /
    ``memory`` (a power of 2, at least 128) and ``waitForFinish`` (at most 60) validated (400
    ``invalid-input``); the run records its options, input, ``startedAt`` and ``meta.userAgent``
    (the start request's User-Agent). Dataset pages apply ``offset``/``limit`` to the rows first and
    ``clean`` / ``skipEmpty`` / ``skipHidden`` afterwards, so a filtered page may be short or empty
    in the middle of the dataset; ``X-Apify-Pagination-Offset/-Limit/-Count/-Total`` come with it
    (``Count`` = rows scanned, apify-client-python#1058). No ``limit`` = the rest of the dataset.

    Faults (attributes): ``start_status`` (HTTP status for run starts, 0 = normal),
    ``start_fault`` (``drop``: the run starts, then the connection drops before the answer;
    ``slow``: the run starts, the answer comes after ``start_delay_s``), ``list_lag`` (run listings
    that do not show runs yet), ``final_status[actor]`` (e.g. ``FAILED``), ``running_polls``
    (status polls answered RUNNING before the final status; -1 = forever), ``page_faults`` (list
    consumed one per dataset request: ``None``, ``429``, ``500``, ``malformed``).
    ``requests`` records every request (method, path, query, json, user_agent);
    :meth:`answer_next` replays a given answer (a documented example) on a route instead."""

    def __init__(self, token: str = "apify-test-token") -> None:  # noqa: S107
        self.token = token
        self.datasets: dict[str, list[Any]] = {}
        self.final_status: dict[str, str] = {}
        self.start_status = 0
        self.start_fault = ""
        self.start_delay_s = 5.0
        self.list_lag = 0
        self.running_polls = 1
        self.page_faults: list[str | None] = []
        self.runs: dict[str, dict[str, Any]] = {}
        self.started: list[str] = []
        self.aborted: list[str] = []
        self.item_requests: list[dict[str, str]] = []
        self.requests: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._polls: defaultdict[str, int] = defaultdict(int)
        self._canned: defaultdict[str, list[tuple[int, Any, dict[str, str]]]] = defaultdict(list)
        self.app = Starlette(
            routes=[
                Route("/v2/acts/{actor}/runs", self.start, methods=["POST"]),
                Route("/v2/acts/{actor}/runs", self.list_runs, methods=["GET"]),
                Route("/v2/actor-runs/{run_id}", self.run_status),
                Route("/v2/actor-runs/{run_id}/abort", self.abort, methods=["POST"]),
                Route("/v2/datasets/{dataset_id}/items", self.items),
            ]
        )

    def answer_next(
        self, route: str, status: int, body: Any, headers: Mapping[str, str] | None = None
    ) -> None:
        """The next request on ``route`` (``start``, ``list_runs``, ``run_status``, ``abort``,
        ``items``) gets this answer (after the token check), whatever it asks."""
        self._canned[route].append((status, body, dict(headers or {})))

    def _replay(self, route: str) -> Response | None:
        if not self._canned[route]:
            return None
        status, body, headers = self._canned[route].pop(0)
        return JSONResponse(body, status, headers=headers)

    def reset(self) -> None:
        """Forget runs, requests, faults and canned answers (datasets stay)."""
        self._canned.clear()
        self.runs.clear()
        self._polls.clear()
        self.final_status.clear()
        self.page_faults.clear()
        self.start_status, self.start_fault, self.list_lag, self.running_polls = 0, "", 0, 1
        self.started.clear()
        self.aborted.clear()
        self.item_requests.clear()
        self.requests.clear()

    async def _record(self, request: Request) -> Any:
        body = await request.body()
        payload = None
        if body:
            try:
                payload = json.loads(body)
            except ValueError:
                payload = body.decode(errors="replace")
        self.requests.append(
            {
                "method": request.method,
                "path": request.url.path,
                "query": dict(request.query_params),
                "json": payload,
                "user_agent": request.headers.get("user-agent"),
            }
        )
        return payload

    def _auth(self, request: Request) -> Response | None:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return _apify_error(401, "invalid-token", "Authentication token is not valid.")
        return None

    @staticmethod
    def _short(run: dict[str, Any]) -> dict[str, Any]:
        keys = ("id", "actId", "status", "startedAt", "finishedAt", "buildId", "meta")
        return {k: run.get(k) for k in keys} | {
            "usageTotalUsd": 0.0,
            "defaultKeyValueStoreId": f"kvs-{run['id']}",
            "defaultDatasetId": run["defaultDatasetId"],
            "defaultRequestQueueId": f"rq-{run['id']}",
        }

    @staticmethod
    def _public(run: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in run.items() if k != "input"}

    async def start(self, request: Request) -> Response:
        payload = await self._record(request)
        if (denied := self._auth(request)) is not None:
            return denied
        if (canned := self._replay("start")) is not None:
            return canned
        if self.start_status:
            return _apify_error(self.start_status, "injected", "start refused")
        actor = request.path_params["actor"].replace("~", "/")
        if actor not in self.datasets:
            return _apify_error(404, "record-not-found", f"Actor {actor} was not found")
        query = request.query_params
        try:
            timeout = _apify_number(query.get("timeout"), "timeout")
            max_items = _apify_number(query.get("maxItems"), "maxItems")
            memory = _apify_number(query.get("memory"), "memory", minimum=128)
        except ValueError as exc:
            return _apify_error(400, "invalid-input", str(exc))
        if memory is not None and int(memory) & (int(memory) - 1):
            return _apify_error(400, "invalid-input", "Parameter 'memory' must be a power of 2")
        if not isinstance(payload, dict):
            return _apify_error(
                400, "invalid-input", "Invalid input: The request body contains invalid data."
            )
        run_id = f"run{next(self._ids)}"
        run = {
            "id": run_id,
            "actId": actor,
            "status": "RUNNING",
            "startedAt": _apify_now(),
            "finishedAt": None,
            "buildId": "build-test",
            "meta": {"origin": "API", "userAgent": request.headers.get("user-agent")},
            "options": {
                "build": "latest",
                "timeoutSecs": int(timeout) if timeout is not None else 3600,
                "memoryMbytes": int(memory) if memory is not None else 1024,
                "diskMbytes": 2048,
                "maxItems": int(max_items) if max_items is not None else None,
            },
            "defaultDatasetId": f"ds-{run_id}",
            "input": payload,
        }
        self.runs[run_id] = run
        self.started.append(actor)
        if self.start_fault == "drop":
            return _DroppedResponse()
        if self.start_fault == "slow":
            await asyncio.sleep(self.start_delay_s)
        return JSONResponse({"data": self._public(run)}, 201)

    async def list_runs(self, request: Request) -> Response:
        await self._record(request)
        if (denied := self._auth(request)) is not None:
            return denied
        if (canned := self._replay("list_runs")) is not None:
            return canned
        actor = request.path_params["actor"].replace("~", "/")
        if actor not in self.datasets:
            return _apify_error(404, "record-not-found", f"Actor {actor} was not found")
        query = request.query_params
        try:
            offset = int(_apify_number(query.get("offset"), "offset") or 0)
            limit = int(_apify_number(query.get("limit"), "limit", minimum=1) or 1000)
        except ValueError as exc:
            return _apify_error(400, "invalid-input", str(exc))
        runs = [r for r in self.runs.values() if r["actId"] == actor]
        if self.list_lag > 0:
            self.list_lag -= 1
            runs = []
        if after := query.get("startedAfter"):
            runs = [r for r in runs if r["startedAt"] >= after]
        if before := query.get("startedBefore"):
            runs = [r for r in runs if r["startedAt"] <= before]
        if status := query.get("status"):
            runs = [r for r in runs if r["status"] in status.split(",")]
        desc = _apify_flag(query.get("desc"))
        runs.sort(key=lambda r: (r["startedAt"], r["id"]), reverse=desc)
        page = [self._short(r) for r in runs[offset : offset + min(limit, 1000)]]
        data = {"total": len(runs), "offset": offset, "limit": limit, "desc": desc, "count": len(page)}
        return JSONResponse({"data": {**data, "items": page}})

    async def run_status(self, request: Request) -> Response:
        await self._record(request)
        if (denied := self._auth(request)) is not None:
            return denied
        if (canned := self._replay("run_status")) is not None:
            return canned
        run = self.runs.get(request.path_params["run_id"])
        if run is None:
            return _apify_error(404, "record-not-found", "Actor run was not found")
        try:
            wait = _apify_number(request.query_params.get("waitForFinish"), "waitForFinish")
        except ValueError as exc:
            return _apify_error(400, "invalid-input", str(exc))
        if wait is not None and wait > 60:
            return _apify_error(400, "invalid-input", "Parameter 'waitForFinish' must be at most 60")
        self._polls[run["id"]] += 1
        if run["status"] == "RUNNING" and 0 <= self.running_polls < self._polls[run["id"]]:
            run["status"] = self.final_status.get(run["actId"], "SUCCEEDED")
            run["finishedAt"] = _apify_now()
        data = self._public(run)
        if run["status"] == "FAILED":
            data["statusMessage"] = "The actor crashed (injected)"
        return JSONResponse({"data": data})

    async def abort(self, request: Request) -> Response:
        await self._record(request)
        if (denied := self._auth(request)) is not None:
            return denied
        if (canned := self._replay("abort")) is not None:
            return canned
        run = self.runs.get(request.path_params["run_id"])
        if run is None:
            return _apify_error(404, "record-not-found", "Actor run was not found")
        if run["status"] not in {"SUCCEEDED", "FAILED", "TIMED-OUT", "ABORTED"}:
            run["status"], run["finishedAt"] = "ABORTED", _apify_now()
            run["statusMessage"] = "Actor was aborted"
            self.aborted.append(run["id"])
        return JSONResponse({"data": self._public(run)})

    async def items(self, request: Request) -> Response:
        await self._record(request)
        if (denied := self._auth(request)) is not None:
            return denied
        if (canned := self._replay("items")) is not None:
            return canned
        self.item_requests.append(dict(request.query_params))
        fault = self.page_faults.pop(0) if self.page_faults else None
        if fault == "429":
            return JSONResponse(
                {"error": {"type": "rate-limit-exceeded", "message": "You have exceeded the rate limit."}},
                429,
                headers={"Retry-After": "1"},
            )
        if fault == "500":
            return _apify_error(500, "internal-server-error", "Internal server error")
        if fault == "malformed":
            return Response(b'[{"id": 1, "name": "trunc', media_type="application/json")
        dataset_id = request.path_params["dataset_id"]
        run = next((r for r in self.runs.values() if r["defaultDatasetId"] == dataset_id), None)
        if run is None:
            return _apify_error(404, "record-not-found", "Dataset was not found")
        query = request.query_params
        if query.get("format", "json") != "json":
            return _apify_error(400, "invalid-input", "Only format=json is simulated")
        try:
            offset = int(_apify_number(query.get("offset"), "offset") or 0)
            limit_value = _apify_number(query.get("limit"), "limit")
        except ValueError as exc:
            return _apify_error(400, "invalid-input", str(exc))
        rows = self.datasets.get(run["actId"], [])
        window = rows[offset:] if limit_value is None else rows[offset : offset + int(limit_value)]
        clean = _apify_flag(query.get("clean"))
        skip_hidden = clean or _apify_flag(query.get("skipHidden"))
        skip_empty = clean or _apify_flag(query.get("skipEmpty"))
        page = []
        for row in window:  # the filters run after offset/limit, as Apify's do
            if skip_hidden and isinstance(row, dict):
                row = {k: v for k, v in row.items() if not str(k).startswith("#")}
            if skip_empty and (row == {} or row is None):
                continue
            page.append(row)
        headers = {
            "X-Apify-Pagination-Offset": str(offset),
            "X-Apify-Pagination-Limit": str(int(limit_value) if limit_value is not None else len(window)),
            "X-Apify-Pagination-Count": str(len(window)),
            "X-Apify-Pagination-Total": str(len(rows)),
        }
        return JSONResponse(page, headers=headers)


class XimilarSimulator(recognition_simulators.XimilarSimulator):
    """The strict Ximilar simulator (:class:`unde_testkit.recognition_simulators.XimilarSimulator`:
    collection insert / delete / visualKNN / allRecords of one service, tagging) with the token and
    collection the catalog tests use. ``records[_id]`` holds what was inserted;
    ``record_faults[sku]`` makes an insert carrying that sku fail."""

    def __init__(self, token: str = "ximilar-test-token", collection: str = "coll-test") -> None:  # noqa: S107
        super().__init__(token=token, collection_id=collection)


#: the campaign of the Zara test items (``V`` spring/summer, ``I`` autumn/winter, then the year)
ZARA_TEST_CAMPAIGN = "V2026"
_ZARA_REFERENCE = re.compile(r"^(\d{8})-([A-Z]\d{4})$")


class ZaraSimulator:
    """Inditex mobile API per-store stock (the unofficial ``itxrest`` endpoint public store-stock
    scrapers call)::

        GET /LOMOServiciosRESTCommerce-ws/common/1/stock/campaign/{campaign}/product/part-number/
            {reference}?physicalStoreId=a,b&ajaxCall=true
        → {"stocks": [{"physicalStoreId": 6643, "sizeStocks": [{"sizeId", "size", "quantity"}]}]}

    keyed by the 11-digit colour reference (model, quality, colour: ``05584361800``) and the
    campaign of that reference (``V2024``). ``stock[reference] = {store_id: {size: quantity}}``,
    ``campaigns[reference]`` (default :data:`ZARA_TEST_CAMPAIGN`). Strict: a part number that is not
    11 digits (a 9-digit product id, a 13-digit size reference), an unknown reference or another
    campaign answer 404; no ``physicalStoreId`` answers 400.
    ``faults[reference]``: ``500``, ``429`` (once), ``malformed``, ``404``, ``badshape``.
    ``requests`` records ``(campaign, part number, physicalStoreId)``, ``calls`` each request's
    method, path, query and headers; ``canned`` answers (status, JSON) replace the next answers."""

    def __init__(self) -> None:
        self.stock: dict[str, Mapping[int, Mapping[str, int]]] = {}
        self.canned: list[tuple[int, Any]] = []
        self.calls: list[dict[str, Any]] = []
        self.campaigns: dict[str, str] = {}
        self.faults: dict[str, str] = {}
        self.requests: list[tuple[str, str, str]] = []
        self._seen_429: set[str] = set()
        path = "/LOMOServiciosRESTCommerce-ws/common/1/stock/campaign/{campaign}/product/part-number/{pn}"
        self.app = Starlette(routes=[Route(path, self.stock_of)])

    def reset(self) -> None:
        self.canned.clear()
        self.calls.clear()
        self.stock.clear()
        self.campaigns.clear()
        self.faults.clear()
        self.requests.clear()
        self._seen_429.clear()

    def stock_item(
        self, item: Mapping[str, Any], stock: Mapping[str, Mapping[int, Mapping[str, int]]]
    ) -> None:
        """Stock a Zara dataset item (:func:`apify_item`): ``stock[colour id] = {store: {size: qty}}``;
        the item's other colours are known with no stock."""
        match = _ZARA_REFERENCE.match(str(item["reference"]))
        assert match is not None, item["reference"]
        for colour in item["colorsSizesImagesJSON"]:
            reference = match.group(1) + str(colour["id"]).zfill(3)
            self.stock[reference] = stock.get(str(colour["id"]), {})
            self.campaigns[reference] = match.group(2)

    async def stock_of(self, request: Request) -> Response:
        pn = request.path_params["pn"]
        campaign = request.path_params["campaign"]
        stores = request.query_params.get("physicalStoreId")
        self.requests.append((campaign, pn, stores or ""))
        self.calls.append(
            {
                "method": request.method,
                "path": request.url.path,
                "query": dict(request.query_params),
                "headers": {k: request.headers.get(k) for k in ("user-agent", "accept")},
            }
        )
        if self.canned:
            status, body = self.canned.pop(0)
            return JSONResponse(body, status)
        if not stores:
            return JSONResponse({"error": "physicalStoreId is required"}, 400)
        fault = self.faults.get(pn)
        if fault == "500":
            return JSONResponse({"error": "internal"}, 500)
        known = re.fullmatch(r"\d{11}", pn) and pn in self.stock
        if fault == "404" or not known or self.campaigns.get(pn, ZARA_TEST_CAMPAIGN) != campaign:
            return JSONResponse({"error": "not found"}, 404)
        if fault == "429" and pn not in self._seen_429:
            self._seen_429.add(pn)
            return JSONResponse({"error": "throttled"}, 429, headers={"Retry-After": "1"})
        if fault == "malformed":
            return Response(b'{"stocks": [', media_type="application/json")
        if fault == "badshape":
            return JSONResponse({"stocks": [{"physicalStoreId": 6643}]})
        wanted = {int(x) for x in stores.split(",") if x.strip().isdigit()}
        stocks = [
            {
                "physicalStoreId": store,
                "sizeStocks": [
                    {"sizeId": i + 1, "size": size, "quantity": qty}
                    for i, (size, qty) in enumerate(sizes.items())
                ],
            }
            for store, sizes in self.stock[pn].items()
            if store in wanted
        ]
        return JSONResponse({"stocks": stocks})


def run_worker_process(args: Sequence[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """Start ``python <args>`` with ``env`` (used to kill a worker mid-batch)."""
    return subprocess.Popen([sys.executable, *args], env=dict(env))


def zara_item(
    external_id: str,
    images: Sequence[str],
    colours: Sequence[tuple[str, str]] = (("800", "BLACK"), ("401", "NAVY")),
    campaign: str = ZARA_TEST_CAMPAIGN,
) -> dict[str, Any]:
    """A ``datasaurus/zara`` dataset item: the fields of the actor's output (``id``, ``reference``,
    ``price`` in minor units, ``colorsSizesImagesJSON`` per colour with ``xmedia`` URLs and
    ``sizes``). ``images`` are the first colour's photos; ``reference`` is ``0`` + seven digits
    taken from ``external_id`` (its trailing digits, else a checksum) + ``-`` + ``campaign``."""
    digits = re.sub(r"\D", "", external_id)
    model = (digits[-7:] if digits else f"{zlib.crc32(external_id.encode()) % 10**7}").zfill(7)
    entries = []
    for n, (colour_id, name) in enumerate(colours):
        photos = list(images) if n == 0 else [f"{u}&colour={colour_id}" for u in images]
        entries.append(
            {
                "id": colour_id,
                "name": name,
                "productId": f"{external_id}{n + 1}",
                "xmedia": photos,
                "sizes": [
                    {
                        "name": size,
                        "sku": f"{external_id}{n + 1}{i}",
                        "availability": "in_stock",
                        "price": 1599000,
                    }
                    for i, size in enumerate(("S", "M"), 1)
                ],
            }
        )
    return {
        "id": external_id,
        "reference": f"0{model}-{campaign}",
        "displayReference": f"{model[:4]}/{model[4:]}",
        "brand": "Zara",
        "name": f"Dress {external_id}",
        "description": "Midi dress",
        "price": 1599000,  # tiyn
        "category": "woman-dresses",
        "colors": ", ".join(name for _, name in colours),
        "sizes": "S, M",
        "detailedComposition": {
            "parts": [
                {"description": "OUTER SHELL", "components": [{"material": "linen", "percentage": "100%"}]}
            ]
        },
        "colorsSizesImagesJSON": entries,
        "productPage": f"https://www.zara.com/kz/en/dress-p{model}.html",
    }


def apify_item(brand: str, external_id: str, images: Sequence[str], **overrides: Any) -> dict[str, Any]:
    """A dataset item in the shape the brand's Apify actor returns (see ``apify.collectors``)."""
    item: dict[str, Any]
    if brand == "zara":
        item = zara_item(external_id, images)
    elif brand == "massimodutti":
        item = {
            "reference": external_id,
            "title": f"Blazer {external_id}",
            "price": {"value": "89 990", "currency": "KZT"},
            "breadcrumbs": ["Women", "Blazers"],
            "colour": {"name": "Navy"},
            "availableSizes": ["36", "38"],
            "imageUrls": list(images),
        }
    else:
        item = {
            "id": external_id,
            "name": f"Top {external_id}",
            "price": "7990.00",
            "currency": "KZT",
            "category": "TOPS",
            "color": "WHITE",
            "sizes": ["XS", "S"],
            "images": list(images),
        }
    item.update(overrides)
    return item
