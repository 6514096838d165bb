"""Test support for the catalog pipeline apps (apify, photo_downloader, collage, ximilar_sync,
scraper): databases migrated with the project's own migrations and runner, least-privilege login
users as the postgresql role creates them, and loopback simulators of the providers, each able to
inject the faults the apps must survive. Used by the apps' tests and ``bench/catalog.py``; never
imported by app code.

- :func:`migrated_database` — ``files/sql/<schema>`` applied by the postgresql role's
  ``unde_sql_migrate`` runner (:func:`unde_testkit.testing_sql.migrate_database`)
- :func:`login_dsn` — a LOGIN user that is a member of the migration's group role(s)
- :class:`ApifySimulator` — Apify API v2 (actor runs, run status, dataset pages)
- :class:`ImageHostSimulator` — brand image CDN: ``/img/{fault}/{name}.jpg?w=&h=``
- :class:`XimilarSimulator` — Ximilar collection insert
- :class:`ZaraSimulator` — Inditex mobile API per-product store stock
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import itertools
import re
import subprocess
import sys
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import psycopg
from psycopg import sql
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from unde_testkit.loaders import repo_root
from unde_testkit.testing import PostgresHandle
from unde_testkit.testing_sql import migrate_database as migrated_database

__all__ = [
    "ApifySimulator",
    "ImageHostSimulator",
    "XimilarSimulator",
    "ZaraSimulator",
    "jpeg_bytes",
    "login_dsn",
    "migrated_database",
    "repo_root",
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


class ApifySimulator:
    """Apify API v2: ``POST /v2/acts/{actor}/runs``, ``GET /v2/actor-runs/{id}``,
    ``GET /v2/datasets/{id}/items``. ``datasets[actor]`` = the items a run of that actor yields.

    Faults (attributes): ``start_status`` (HTTP status for run starts, 0 = normal),
    ``final_status[actor]`` (e.g. ``FAILED``), ``running_polls`` (status polls answered RUNNING
    before the final status), ``page_faults`` (list consumed one per dataset request: ``None``,
    ``429``, ``500``, ``malformed``)."""

    def __init__(self, token: str = "apify-test-token") -> None:  # noqa: S107
        self.token = token
        self.datasets: dict[str, list[Any]] = {}
        self.final_status: dict[str, str] = {}
        self.start_status = 0
        self.running_polls = 1
        self.page_faults: list[str | None] = []
        self.runs: dict[str, dict[str, Any]] = {}
        self.started: list[str] = []
        self.item_requests: list[dict[str, str]] = []
        self._ids = itertools.count(1)
        self._polls: defaultdict[str, int] = defaultdict(int)
        self.app = Starlette(
            routes=[
                Route("/v2/acts/{actor}/runs", self.start, methods=["POST"]),
                Route("/v2/actor-runs/{run_id}", self.run_status),
                Route("/v2/datasets/{dataset_id}/items", self.items),
            ]
        )

    def _auth(self, request: Request) -> Response | None:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"error": {"type": "token-not-valid", "message": "bad token"}}, 401)
        return None

    async def start(self, request: Request) -> Response:
        if (denied := self._auth(request)) is not None:
            return denied
        if self.start_status:
            return JSONResponse(
                {"error": {"type": "injected", "message": "start refused"}}, self.start_status
            )
        actor = request.path_params["actor"].replace("~", "/")
        body = await request.json()
        run_id = f"run{next(self._ids)}"
        run = {
            "id": run_id,
            "actId": actor,
            "status": "RUNNING",
            "defaultDatasetId": f"ds-{run_id}",
            "input": body,
        }
        self.runs[run_id] = run
        self.started.append(actor)
        return JSONResponse({"data": {k: v for k, v in run.items() if k != "input"}}, 201)

    async def run_status(self, request: Request) -> Response:
        if (denied := self._auth(request)) is not None:
            return denied
        run = self.runs.get(request.path_params["run_id"])
        if run is None:
            return JSONResponse({"error": {"type": "record-not-found"}}, 404)
        self._polls[run["id"]] += 1
        if self._polls[run["id"]] > self.running_polls:
            run["status"] = self.final_status.get(run["actId"], "SUCCEEDED")
        data = {k: v for k, v in run.items() if k != "input"}
        if run["status"] == "FAILED":
            data["statusMessage"] = "The actor crashed (injected)"
        return JSONResponse({"data": data})

    async def items(self, request: Request) -> Response:
        if (denied := self._auth(request)) is not None:
            return denied
        self.item_requests.append(dict(request.query_params))
        fault = self.page_faults.pop(0) if self.page_faults else None
        if fault == "429":
            return JSONResponse({"error": {"type": "rate-limit-exceeded"}}, 429, headers={"Retry-After": "1"})
        if fault == "500":
            return JSONResponse({"error": {"type": "internal"}}, 500)
        if fault == "malformed":
            return Response(b'[{"id": 1, "name": "trunc', media_type="application/json")
        dataset_id = request.path_params["dataset_id"]
        run = next((r for r in self.runs.values() if r["defaultDatasetId"] == dataset_id), None)
        if run is None:
            return JSONResponse({"error": {"type": "record-not-found"}}, 404)
        items = self.datasets.get(run["actId"], [])
        offset = int(request.query_params.get("offset", 0))
        limit = int(request.query_params.get("limit", 1000))
        page = items[offset : offset + limit]
        headers = {"X-Apify-Pagination-Total": str(len(items)), "X-Apify-Pagination-Offset": str(offset)}
        return JSONResponse(page, headers=headers)


class XimilarSimulator:
    """Ximilar collection API: ``POST {insert_path}`` with ``Authorization: Token`` and
    ``collection-id``. ``records[_id]`` holds what was inserted. ``faults[sku]`` makes requests
    carrying that sku fail: ``500``, ``429`` (once, Retry-After 1), ``malformed``, ``refuse`` (the
    first record answered 400), ``slow`` (answers after 3 s)."""

    def __init__(self, token: str = "ximilar-test-token", collection: str = "coll-test") -> None:  # noqa: S107
        self.token = token
        self.collection = collection
        self.records: dict[str, dict[str, Any]] = {}
        self.faults: dict[str, str] = {}
        self.requests = 0
        self._seen_429: set[str] = set()
        self._lock = threading.Lock()
        self.app = Starlette(routes=[Route("/similarity/photos/v2/insert", self.insert, methods=["POST"])])

    async def insert(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Token {self.token}":
            return JSONResponse({"detail": "Invalid token."}, 401)
        if request.headers.get("collection-id") != self.collection:
            return JSONResponse({"detail": "Unknown collection."}, 400)
        body = await request.json()
        records = body.get("records") or []
        with self._lock:
            self.requests += 1
        sku = records[0].get("sku_id") if records else None
        fault = self.faults.get(str(sku))
        if fault == "500":
            return JSONResponse({"status": {"code": 500, "text": "Internal Server Error"}}, 500)
        if fault == "429" and sku not in self._seen_429:
            self._seen_429.add(str(sku))
            return JSONResponse({"detail": "Request was throttled."}, 429, headers={"Retry-After": "1"})
        if fault == "malformed":
            return Response(b'{"records": [{"_id"', media_type="application/json")
        if fault == "slow":
            await asyncio.sleep(3)
        out = []
        for i, rec in enumerate(records):
            if fault == "refuse" and i == 0:
                out.append(
                    {"_id": rec.get("_id"), "_status": {"code": 400, "text": "Image could not be downloaded"}}
                )
                continue
            with self._lock:
                self.records[str(rec["_id"])] = rec
            out.append({"_id": rec["_id"], "_status": {"code": 201, "text": "CREATED"}})
        return JSONResponse({"records": out, "status": {"code": 200, "text": "OK"}, "statistics": {}})


class ZaraSimulator:
    """Inditex mobile API stock: ``GET /LOMOServiciosRESTCommerce-ws/common/1/stock/campaign/{c}/
    product/part-number/{pn}?physicalStoreId=a,b``. ``stock[pn] = {store_id: {size: quantity}}``;
    ``faults[pn]``: ``500``, ``429`` (once), ``malformed``, ``404``, ``badshape``."""

    def __init__(self) -> None:
        self.stock: dict[str, Mapping[int, Mapping[str, int]]] = {}
        self.faults: dict[str, str] = {}
        self.requests: list[tuple[str, str, str]] = []
        self._seen_429: set[str] = set()
        path = "/LOMOServiciosRESTCommerce-ws/common/1/stock/campaign/{campaign}/product/part-number/{pn}"
        self.app = Starlette(routes=[Route(path, self.stock_of)])

    async def stock_of(self, request: Request) -> Response:
        pn = request.path_params["pn"]
        stores = request.query_params.get("physicalStoreId", "")
        self.requests.append((request.path_params["campaign"], pn, stores))
        fault = self.faults.get(pn)
        if fault == "500":
            return JSONResponse({"error": "internal"}, 500)
        if fault == "404":
            return JSONResponse({"error": "not found"}, 404)
        if fault == "429" and pn not in self._seen_429:
            self._seen_429.add(pn)
            return JSONResponse({"error": "throttled"}, 429, headers={"Retry-After": "1"})
        if fault == "malformed":
            return Response(b'{"stocks": [', media_type="application/json")
        if fault == "badshape":
            return JSONResponse({"stocks": [{"physicalStoreId": 6643}]})
        wanted = {int(x) for x in stores.split(",") if x}
        stocks = [
            {
                "physicalStoreId": store,
                "sizeStocks": [
                    {"sizeId": i + 1, "size": size, "quantity": qty}
                    for i, (size, qty) in enumerate(sizes.items())
                ],
            }
            for store, sizes in self.stock.get(pn, {}).items()
            if store in wanted
        ]
        return JSONResponse({"stocks": stocks, "productId": pn})


def run_worker_process(args: Sequence[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """Start ``python <args>`` with ``env`` (used to kill a worker mid-batch)."""
    return subprocess.Popen([sys.executable, *args], env=dict(env))


def apify_item(brand: str, external_id: str, images: Sequence[str], **overrides: Any) -> dict[str, Any]:
    """A dataset item in the shape the brand's Apify actor returns (see ``apify.collectors``)."""
    item: dict[str, Any]
    if brand == "zara":
        item = {
            "productId": external_id,
            "name": f"Dress {external_id}",
            "description": "Midi dress",
            "price": 1599000,  # tiyn
            "currency": "KZT",
            "familyName": "DRESSES",
            "composition": "100% linen",
            "detail": {
                "colors": [
                    {
                        "name": "BLACK",
                        "sizes": [{"name": "S"}, {"name": "M"}],
                        "xmedia": [{"url": u} for u in images],
                    }
                ]
            },
        }
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
