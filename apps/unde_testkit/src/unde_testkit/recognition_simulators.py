"""Stand-ins for the external providers of the recognition pipeline, for tests, the lab scenario
and the benchmark (never imported by app code): a Ximilar API, a Gemini API and an image host.

They speak the providers' wire formats (what the real clients in ximilar_gw and llm_reranker send
and parse) and inject faults per route:

    sim = XimilarSimulator(token="t", collection_id="c")
    sim.fault("search", "503", times=2)          # 503 twice, then normal answers
    sim.fault("detect", "timeout", delay_s=5)    # every call sleeps 5 s (until cleared)
    sim.fault("tag", "down")                     # always 503
    sim.fault("tag", None)                       # clear

Kinds: ``429`` (with ``Retry-After``), ``500``, ``503``, ``timeout``, ``malformed`` (truncated
JSON), ``down``. ``POST /_sim/fault {"route", "kind", "times", "delay_s"}`` does the same over HTTP
(the lab scenario). ``hits[route]`` counts calls.

Behaviour (deterministic, computed from the pixels it is sent):

- Ximilar detection answers the objects registered for a photo (:meth:`XimilarSimulator.add_photo`),
  each with the tags of its own box (``detect_tags`` tags every object it finds);
- Ximilar tagging answers the dominant colour of the image from a small palette, a plain/stripe
  pattern, the category given by ``tag_category``;
- Ximilar visual search scores the query against the collection (records inserted through the
  collection API or registered with :meth:`XimilarSimulator.add_record`) by :func:`pixel_similarity`;
  the collection lives in one service (:data:`XIMILAR_SERVICE`) and answers only the
  ``fields_to_return`` asked for, as the real one does;
- Gemini tagging (one image) answers ``context_tags``; Gemini rerank (two images) answers
  ``{"visual": s, "semantic": s}`` with s the pixel similarity of the two images; the Gemini API
  checks (model ids, key, thinkingConfig, error bodies) are module functions that other Gemini
  stand-ins in tests reuse.

Run both on one port for the lab: ``python -m unde_testkit.recognition_simulators --host 198.18.0.1
--port 18080 --images DIR`` (Ximilar under ``/ximilar``, Gemini under ``/gemini``, images under ``/img``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route

__all__ = [
    "GEMINI_MODELS",
    "XIMILAR_DEFAULT_FIELDS",
    "XIMILAR_MAX_RECORDS",
    "XIMILAR_SERVICE",
    "GeminiModel",
    "GeminiSimulator",
    "ImageHost",
    "XimilarSimulator",
    "pixel_similarity",
    "solid_image",
]

PALETTE: dict[str, tuple[int, int, int]] = {
    "black": (20, 20, 20),
    "white": (240, 240, 240),
    "red": (200, 30, 40),
    "blue": (30, 60, 190),
    "green": (40, 150, 60),
    "khaki": (189, 183, 107),
    "yellow": (230, 210, 40),
    "grey": (128, 128, 128),
}


def _thumb(image: Image.Image) -> np.ndarray[Any, np.dtype[np.float32]]:
    return np.asarray(image.convert("RGB").resize((16, 16), Image.Resampling.BILINEAR), dtype=np.float32)


def pixel_similarity(a: Image.Image, b: Image.Image) -> float:
    """1 - (mean absolute difference of 16x16 thumbnails) / 80, clipped to [0, 1]: 1 = the same
    picture, 0 = a mean channel difference of 80 or more."""
    return round(max(0.0, float(1.0 - np.abs(_thumb(a) - _thumb(b)).mean() / 80.0)), 4)


def dominant_colour(image: Image.Image) -> str:
    mean = _thumb(image).reshape(-1, 3).mean(axis=0)
    return min(PALETTE, key=lambda name: float(np.sum((mean - np.array(PALETTE[name])) ** 2)))


def solid_image(size: tuple[int, int], colour: tuple[int, int, int], *, stripes: int = 0) -> Image.Image:
    """A test picture: a colour, optionally with ``stripes`` dark vertical stripes (texture)."""
    image = Image.new("RGB", size, colour)
    if stripes:
        pixels = np.asarray(image).copy()
        step = max(1, size[0] // (2 * stripes))
        for i in range(0, size[0], 2 * step):
            pixels[:, i : i + step] = pixels[:, i : i + step] // 3
        image = Image.fromarray(pixels)
    return image


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@dataclass
class _Fault:
    kind: str
    times: int | None
    delay_s: float


Handler = Callable[[Request], Awaitable[Response]]


class _FaultySimulator:
    """Fault bookkeeping shared by the simulators."""

    def __init__(self) -> None:
        self.hits: defaultdict[str, int] = defaultdict(int)
        self.faults: dict[str, _Fault] = {}
        self.requests: list[tuple[str, dict[str, Any]]] = []

    def fault(self, route: str, kind: str | None, *, times: int | None = None, delay_s: float = 5.0) -> None:
        if kind is None:
            self.faults.pop(route, None)
        else:
            if kind not in ("429", "500", "503", "timeout", "malformed", "down"):
                raise ValueError(f"unknown fault kind {kind!r}")
            self.faults[route] = _Fault(kind, times, delay_s)

    def clear(self) -> None:
        self.faults.clear()
        self.hits.clear()
        self.requests.clear()

    async def _injected(self, route: str) -> Response | None:
        self.hits[route] += 1
        fault = self.faults.get(route)
        if fault is None:
            return None
        if fault.times is not None:
            if fault.times <= 0:
                self.faults.pop(route, None)
                return None
            fault.times -= 1
        if fault.kind == "timeout":
            await asyncio.sleep(fault.delay_s)
            return None
        if fault.kind == "429":
            return JSONResponse({"error": "rate limited"}, status_code=429, headers={"Retry-After": "1"})
        if fault.kind == "malformed":
            return Response(b'{"records": [{"_objects": [', media_type="application/json")
        status = 500 if fault.kind == "500" else 503
        return JSONResponse({"error": f"injected {fault.kind}"}, status_code=status)

    async def set_fault(self, request: Request) -> Response:
        body = await request.json()
        self.fault(body["route"], body.get("kind"), times=body.get("times"), delay_s=body.get("delay_s", 5.0))
        return JSONResponse({"ok": True, "faults": sorted(self.faults)})


#: The Ximilar visual-search service whose collection this simulator keeps: Fashion Search
#: (https://docs.ximilar.com/visual-search/overview, "Endpoints": each collection type has its own
#: endpoint). A collection belongs to one service, so a call to another service's path is answered
#: 404 here.
XIMILAR_SERVICE = "/similarity/fashion-new/v2"
#: Records per insert request (https://docs.ximilar.com/services/fashion_search, "Things to note":
#: "maximum of 10 records per request/batch size in records"); also the tagging batch
#: (https://docs.ximilar.com/tagging/generic: "A batch of json records (max 10)").
XIMILAR_MAX_RECORDS = 10
#: The fields of each answer record when a search names no ``fields_to_return``
#: (https://docs.ximilar.com/generated-snippets/visualRankRecords/request-fields): the metadata
#: stored with a record is not returned unless asked for.
XIMILAR_DEFAULT_FIELDS = ("_id", "_url", "_file")
#: Ximilar's API is a Django REST framework service: its 401 bodies
_NO_TOKEN = {"detail": "Authentication credentials were not provided."}
_BAD_TOKEN = {"detail": "Invalid token."}


def _decode_base64_image(data: str) -> Image.Image:
    """``_base64`` with or without a ``data:image/...;base64,`` prefix (the docs' insert example)."""
    payload = data.split(",", 1)[1] if data.startswith("data:") else data
    return Image.open(io.BytesIO(base64.b64decode(payload))).convert("RGB")


async def _image_from_record(record: dict[str, Any], client: httpx.AsyncClient | None = None) -> Image.Image:
    if "_base64" in record:
        return _decode_base64_image(record["_base64"])
    if "_url" in record:
        async with httpx.AsyncClient(timeout=10) as c:
            response = await (client or c).get(record["_url"])
            response.raise_for_status()
            return Image.open(io.BytesIO(response.content)).convert("RGB")
    raise ValueError("record has neither _base64 nor _url")


def _pattern(image: Image.Image) -> str:
    """``stripe`` when the columns of the picture alternate dark and light, else ``plain``."""
    columns = _thumb(image).mean(axis=(0, 2))
    return "stripe" if float(columns.std()) > 15.0 else "plain"


def _validation_error(field: str, message: str) -> Response:
    """A 400 in Django REST framework's field-error shape."""
    return JSONResponse({field: [message]}, status_code=400)


_OK = {"code": 200, "text": "OK"}
#: a tagging record and its picture (None when it could not be loaded)
_Tagged = tuple[dict[str, Any], Image.Image | None]


class XimilarSimulator(_FaultySimulator):
    """The Ximilar API ximilar_gw and ximilar_sync use, strict about what the real one rejects.

    - Fashion Tagging ``POST /tagging/fashion/v2/detect_tags`` (route ``detect``): the objects
      registered for the photo (:meth:`add_photo`), each with its own ``_tags`` computed from the
      pixels of its box; ``POST /tagging/fashion/v2/tags`` (route ``tag``): tags of the image.
    - One collection of the :data:`XIMILAR_SERVICE` service (header ``collection-id``):
      ``insert`` (route ``insert``; at most :data:`XIMILAR_MAX_RECORDS` records, each with ``_id``
      and ``_url`` / ``_base64``; the same ``_id`` again replaces the record), ``delete``
      (``delete``), ``visualKNN`` (``search``; the answer records carry only ``fields_to_return``,
      :data:`XIMILAR_DEFAULT_FIELDS` when it is missing), ``allRecords`` (``all_records``; pages
      ``size`` / ``page``).
    - ``Authorization: Token <token>`` or 401; an unknown ``collection-id`` 404; a path of any
      other service 404; a batch over the limit or a malformed body 400.

    ``records`` (``_id`` → record as inserted, metadata included) is the collection;
    :meth:`add_record` puts a catalog picture in directly. ``received`` keeps every API request
    (method, path, query, headers without the token, JSON body). ``record_faults[sku_id]`` makes
    an insert whose first record carries that sku fail: ``500``, ``429`` (once, Retry-After 1),
    ``malformed``, ``refuse`` (its first record answered 400), ``slow`` (answers after 3 s).
    """

    def __init__(
        self,
        *,
        token: str = "test-token",  # noqa: S107
        collection_id: str = "test-collection",
        service: str = XIMILAR_SERVICE,
    ) -> None:
        super().__init__()
        self.token = token
        self.collection_id = collection_id
        self.service = service
        self.detections: list[tuple[Image.Image, list[dict[str, Any]]]] = []
        self.records: dict[str, dict[str, Any]] = {}
        self.images: dict[str, Image.Image] = {}
        self.record_faults: dict[str, str] = {}
        self.received: list[dict[str, Any]] = []
        self.tag_category = "Jackets"
        self._seen_429: set[str] = set()
        self.app = Starlette(
            routes=[
                Route("/tagging/fashion/v2/detect_tags", self.detect, methods=["POST"]),
                Route("/tagging/fashion/v2/tags", self.tag, methods=["POST"]),
                Route(f"{service}/insert", self.insert, methods=["POST"]),
                Route(f"{service}/delete", self.delete, methods=["POST"]),
                Route(f"{service}/visualKNN", self.search, methods=["POST"]),
                Route(f"{service}/allRecords", self.all_records, methods=["POST"]),
                Route("/_sim/fault", self.set_fault, methods=["POST"]),
                Route("/{path:path}", self.not_found, methods=["GET", "POST", "PUT", "DELETE"]),
            ]
        )

    # ------------------------------------------------------------------ set-up and bookkeeping

    def add_photo(
        self, photo: Image.Image, objects: list[tuple[str, tuple[int, int, int, int], float]]
    ) -> None:
        """Objects Ximilar detects on ``photo`` (recognised by its pixels): (name, (x1, y1, x2, y2), prob)."""
        found = [{"name": name, "bound_box": list(box), "prob": prob} for name, box, prob in objects]
        self.detections.append((photo.convert("RGB"), found))

    def _objects_of(self, image: Image.Image) -> list[dict[str, Any]]:
        for photo, objects in self.detections:
            if photo.size == image.size and pixel_similarity(photo, image) > 0.97:
                return objects
        return []

    def add_record(self, image: Image.Image, **meta: Any) -> None:
        """A catalog photo in the collection with its metadata (sku_id, brand, ...)."""
        record_id = str(meta.pop("_id", None) or f"rec-{len(self.records)}")
        self.records[record_id] = {"_id": record_id, **meta}
        self.images[record_id] = image.convert("RGB")

    def clear(self) -> None:
        """Faults, counters and the request log (the collection stays)."""
        super().clear()
        self.received.clear()
        self.record_faults.clear()
        self._seen_429.clear()

    def _log(self, request: Request, route: str, body: Any) -> None:
        root = request.scope.get("root_path", "")
        path = request.url.path
        headers = {k: v for k, v in request.headers.items() if k in ("content-type", "collection-id")}
        if "authorization" in request.headers:
            headers["authorization"] = request.headers["authorization"].split(" ", 1)[0] + " ***"
        self.received.append(
            {
                "route": route,
                "method": request.method,
                "path": path[len(root) :] if root and path.startswith(root) else path,
                "query": dict(request.query_params),
                "headers": headers,
                "json": body,
            }
        )

    def _auth(self, request: Request, *, collection: bool = False) -> Response | None:
        given = request.headers.get("authorization")
        if not given:
            return JSONResponse(_NO_TOKEN, status_code=401)
        if given != f"Token {self.token}":
            return JSONResponse(_BAD_TOKEN, status_code=401)
        if collection and request.headers.get("collection-id") != self.collection_id:
            return JSONResponse({"detail": "Collection not found."}, status_code=404)
        return None

    async def _open(self, request: Request, route: str, *, collection: bool) -> tuple[Any, Response | None]:
        """Auth, injected fault, JSON body (logged): (body, None) or (None, the answer to give)."""
        if (denied := self._auth(request, collection=collection)) is not None:
            return None, denied
        if (injected := await self._injected(route)) is not None:
            return None, injected
        try:
            body = await request.json()
        except ValueError as exc:
            return None, JSONResponse({"detail": f"JSON parse error - {exc}"}, status_code=400)
        self._log(request, route, body)
        if not isinstance(body, dict):
            return None, JSONResponse({"detail": "Invalid data. Expected a dictionary."}, status_code=400)
        return body, None

    @staticmethod
    def _batch(body: dict[str, Any]) -> list[Any] | Response:
        records = body.get("records")
        if not isinstance(records, list) or not records:
            return _validation_error("records", "This field is required.")
        if len(records) > XIMILAR_MAX_RECORDS:
            return _validation_error(
                "records", f"Ensure this field has no more than {XIMILAR_MAX_RECORDS} elements."
            )
        return records

    @staticmethod
    def _fields(body: dict[str, Any], default: tuple[str, ...]) -> list[str] | Response:
        fields = body.get("fields_to_return", list(default))
        if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
            return _validation_error("fields_to_return", "Expected a list of field names.")
        return fields

    async def _image_of(self, record_id: str) -> Image.Image | None:
        """A collection record's picture (its ``_url`` downloaded once); None when it cannot be had."""
        if record_id in self.images:
            return self.images[record_id]
        record = self.records.get(record_id) or {}
        try:
            image = await _image_from_record(record)
        except (httpx.HTTPError, ValueError, OSError):
            return None
        self.images[record_id] = image
        return image

    async def not_found(self, request: Request) -> Response:
        return JSONResponse({"detail": "Not found."}, status_code=404)

    # ------------------------------------------------------------------ Fashion Tagging

    def _tags_of(self, image: Image.Image, category: str) -> tuple[dict[str, Any], list[str]]:
        colour, pattern = dominant_colour(image), _pattern(image)
        tags = {
            "Category": [{"name": category, "prob": 0.93}],
            "Color": [{"name": colour, "prob": 0.88}],
            "Pattern and Material": [{"name": pattern, "prob": 0.8}],
        }
        return tags, [category, colour, pattern]

    async def _tagging_records(self, body: dict[str, Any]) -> list[_Tagged] | Response:
        records = self._batch(body)
        if isinstance(records, Response):
            return records
        out: list[_Tagged] = []
        for record in records:
            if not isinstance(record, dict):
                return _validation_error("records", "Each record must be an object.")
            try:
                out.append((record, await _image_from_record(record)))
            except (httpx.HTTPError, ValueError, OSError):
                out.append((record, None))
        return out

    async def detect(self, request: Request) -> Response:
        body, answer = await self._open(request, "detect", collection=False)
        if answer is not None:
            return answer
        self.requests.append(("detect", body))
        records = await self._tagging_records(body)
        if isinstance(records, Response):
            return records
        out = []
        for record, image in records:
            echo = {k: v for k, v in record.items() if k != "_base64"}
            if image is None:
                out.append({**echo, "_status": {"code": 400, "text": "Image could not be loaded."}})
                continue
            objects = []
            for obj in self._objects_of(image):
                x1, y1, x2, y2 = obj["bound_box"]
                tags, simple = self._tags_of(image.crop((x1, y1, x2, y2)), obj["name"])
                top = {"name": "Clothing", "prob": 0.99}
                objects.append({**obj, "Top Category": [top], "_tags": tags, "_tags_simple": simple})
            out.append({**echo, "_objects": objects, "_status": dict(_OK)})
        return JSONResponse({"records": out, "status": dict(_OK), "statistics": {"processing time": 0.01}})

    async def tag(self, request: Request) -> Response:
        body, answer = await self._open(request, "tag", collection=False)
        if answer is not None:
            return answer
        records = await self._tagging_records(body)
        if isinstance(records, Response):
            return records
        self.requests.append(("tag", {"records": len(records)}))
        out = []
        for record, image in records:
            echo = {k: v for k, v in record.items() if k != "_base64"}
            if image is None:
                out.append({**echo, "_status": {"code": 400, "text": "Image could not be loaded."}})
                continue
            tags, simple = self._tags_of(image, self.tag_category)
            out.append({**echo, "_tags": tags, "_tags_simple": simple, "_status": dict(_OK)})
        return JSONResponse({"records": out, "status": dict(_OK), "statistics": {"processing time": 0.01}})

    # ------------------------------------------------------------------ the collection

    async def insert(self, request: Request) -> Response:
        body, answer = await self._open(request, "insert", collection=True)
        if answer is not None:
            return answer
        records = self._batch(body)
        if isinstance(records, Response):
            return records
        fields = self._fields(body, ("_id",))
        if isinstance(fields, Response):
            return fields
        first = records[0] if isinstance(records[0], dict) else {}
        sku = str(first.get("sku_id"))
        fault = self.record_faults.get(sku)
        if fault == "500":
            return JSONResponse({"status": {"code": 500, "text": "Internal Server Error"}}, 500)
        if fault == "429" and sku not in self._seen_429:
            self._seen_429.add(sku)
            return JSONResponse({"detail": "Request was throttled."}, 429, headers={"Retry-After": "1"})
        if fault == "malformed":
            return Response(b'{"records": [{"_id"', media_type="application/json")
        if fault == "slow":
            await asyncio.sleep(3)
        out = []
        for i, record in enumerate(records):
            if not isinstance(record, dict) or not isinstance(record.get("_id"), str) or not record["_id"]:
                out.append({"_status": {"code": 400, "text": "Record has no _id."}})
                continue
            rid = record["_id"]
            if not any(record.get(k) for k in ("_url", "_base64", "_file")):
                out.append({"_id": rid, "_status": {"code": 400, "text": "Record has no _url or _base64."}})
                continue
            if fault == "refuse" and i == 0:
                out.append({"_id": rid, "_status": {"code": 400, "text": "Image could not be downloaded"}})
                continue
            stored = {k: v for k, v in record.items() if k != "_base64"}
            self.records[rid] = stored
            self.images.pop(rid, None)
            if record.get("_base64"):
                self.images[rid] = _decode_base64_image(record["_base64"])
            echo = {f: stored[f] for f in fields if f in stored}
            out.append({**echo, "_id": rid, "_status": {"code": 201, "text": "CREATED"}})
        return JSONResponse({"records": out, "status": dict(_OK), "statistics": {"processing time": 0.01}})

    async def delete(self, request: Request) -> Response:
        body, answer = await self._open(request, "delete", collection=True)
        if answer is not None:
            return answer
        records = body.get("records")
        if not isinstance(records, list) or not records:
            return _validation_error("records", "This field is required.")
        out: list[dict[str, Any]] = []
        for record in records:
            rid = record.get("_id") if isinstance(record, dict) else None
            if not isinstance(rid, str) or not rid:
                out.append({"_status": {"code": 400, "text": "Record has no _id."}})
            elif self.records.pop(rid, None) is None:
                out.append({"_id": rid, "_status": {"code": 404, "text": "Not Found"}})
            else:
                self.images.pop(rid, None)
                out.append({"_id": rid, "_status": dict(_OK)})
        return JSONResponse({"records": out, "status": dict(_OK), "statistics": {"processing time": 0.01}})

    async def search(self, request: Request) -> Response:
        body, answer = await self._open(request, "search", collection=True)
        if answer is not None:
            return answer
        query = body.get("query_record")
        if not isinstance(query, dict):  # visualKNN takes exactly one record (fashion_search docs)
            return _validation_error("query_record", "A single record (an object) is required.")
        k = body.get("k", 10)
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            return _validation_error("k", "A valid integer is required.")
        fields = self._fields(body, XIMILAR_DEFAULT_FIELDS)
        if isinstance(fields, Response):
            return fields
        self.requests.append(("search", {"k": k, "filter": body.get("filter"), "fields_to_return": fields}))
        if "_id" in query and query["_id"] in self.records:
            image = await self._image_of(query["_id"])
        else:
            try:
                image = await _image_from_record(query)
            except (httpx.HTTPError, ValueError, OSError):
                image = None
        if image is None:
            return _validation_error("query_record", "Image could not be loaded.")
        scored = []
        for rid, record in list(self.records.items()):
            candidate = await self._image_of(rid)
            if candidate is not None:
                scored.append((1.0 - pixel_similarity(image, candidate), record))
        scored.sort(key=lambda pair: pair[0])
        top = scored[:k]
        return JSONResponse(
            {
                "answer_records": [{f: rec[f] for f in fields if f in rec} for _, rec in top],
                "answer_distances": [round(d, 4) for d, _ in top],
                "answer_count": len(top),
                "status": dict(_OK),
            }
        )

    async def all_records(self, request: Request) -> Response:
        body, answer = await self._open(request, "all_records", collection=True)
        if answer is not None:
            return answer
        fields = self._fields(body, ("_id",))
        if isinstance(fields, Response):
            return fields
        try:
            size = int(request.query_params.get("size", 0))
            page = int(request.query_params.get("page", 1))
        except ValueError:
            return _validation_error("size", "A valid integer is required.")
        everything = list(self.records.values())
        chosen = everything[(page - 1) * size : page * size] if size > 0 else everything
        return JSONResponse(
            {
                "answer_records": [{f: rec[f] for f in fields if f in rec} for rec in chosen],
                "answer_count": len(everything),
                "status": dict(_OK),
            }
        )


@dataclass(frozen=True)
class GeminiModel:
    """A Gemini model id this simulator serves: the ``thinkingLevel`` values it accepts and the level
    it thinks at when the request names none."""

    levels: frozenset[str]
    default_level: str


#: The served model ids. Anything else answers 404 NOT_FOUND as the real API does for an unknown or
#: shut-down id (gemini-2.0-flash(-lite) and gemini-2.5-flash/-pro are past their shutdown:
#: https://ai.google.dev/gemini-api/docs/deprecations). Levels and defaults: the 3.5 Flash-Lite model
#: page (docs.cloud.google.com/gemini-enterprise-agent-platform/models/gemini/3-5-flash-lite: minimal
#: by default), the 3.8 Flash developer guide (.../models/guides/gemini-3-8-flash: 3.8/3.7 Flash
#: LOW/MEDIUM/HIGH, default MEDIUM; 3.1 Pro default HIGH) and the thinking guide
#: https://ai.google.dev/gemini-api/docs/thinking (3.5 Flash default medium).
GEMINI_MODELS: dict[str, GeminiModel] = {
    "gemini-3.5-flash-lite": GeminiModel(frozenset({"minimal", "low", "medium", "high"}), "minimal"),
    "gemini-3.5-flash": GeminiModel(frozenset({"minimal", "low", "medium", "high"}), "medium"),
    "gemini-3.7-flash": GeminiModel(frozenset({"low", "medium", "high"}), "medium"),
    "gemini-3.8-flash": GeminiModel(frozenset({"low", "medium", "high"}), "medium"),
    "gemini-3.1-pro-preview": GeminiModel(frozenset({"low", "medium", "high"}), "high"),
}
#: thoughtsTokenCount the simulator bills per thinking level (thought tokens are billed as output)
THOUGHT_TOKENS: dict[str, int] = {"minimal": 0, "low": 64, "medium": 256, "high": 1024}


def google_error(
    code: int, status: str, message: str, details: list[dict[str, Any]] | None = None
) -> Response:
    """The error body of Google APIs: ``{"error": {"code", "message", "status", "details"?}}``."""
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = details
    return JSONResponse({"error": error}, status_code=code)


def gemini_model_not_found(model: str) -> Response:
    """The real 404 for an unknown or shut-down model id (e.g. google/adk-python#200)."""
    return google_error(
        404,
        "NOT_FOUND",
        f"models/{model} is not found for API version v1beta, or is not supported for generateContent. "
        "Call ListModels to see the list of available models and their supported methods.",
    )


def gemini_rate_limited(model: str, retry_delay_s: float, *, daily: bool = False) -> Response:
    """429 RESOURCE_EXHAUSTED as the Gemini API sends it: a ``QuotaFailure`` naming the quota (per
    minute, or per day), a ``Help`` link and a ``RetryInfo`` whose ``retryDelay`` is a protobuf
    Duration ("1s", "0.5s"); no Retry-After header. Shape: google-gemini/gemini-cli#8437 and
    googleapis/googleapis google/rpc/error_details.proto."""
    per = "Day" if daily else "Minute"
    return google_error(
        429,
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota, please check your plan and billing details. For more "
        "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
        [
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [
                    {
                        "quotaMetric": "generativelanguage.googleapis.com/generate_content_requests",
                        "quotaId": f"GenerateRequestsPer{per}PerProjectPerModel",
                        "quotaDimensions": {"location": "global", "model": model},
                        "quotaValue": "1000",
                    }
                ],
            },
            {
                "@type": "type.googleapis.com/google.rpc.Help",
                "links": [
                    {
                        "description": "Learn more about Gemini API quotas",
                        "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                    }
                ],
            },
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_delay_s:g}s"},
        ],
    )


def gemini_auth_error(key: str | None, expected: str) -> Response | None:
    """No key: 403 PERMISSION_DENIED; a wrong key: 400 INVALID_ARGUMENT with reason API_KEY_INVALID
    (the real answers; the wrong-key body as the Gemini troubleshooting page shows it, quoted at
    developersdigest.tech/errors/api/gemini-api)."""
    if key == expected:
        return None
    if not key:
        return google_error(
            403,
            "PERMISSION_DENIED",
            "Method doesn't allow unregistered callers (callers without established identity). Please "
            "use API Key or other form of API consumer identity to call this API.",
        )
    return google_error(
        400,
        "INVALID_ARGUMENT",
        "API key not valid. Please pass a valid API key.",
        [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            }
        ],
    )


def gemini_thinking_level(model: str, body: dict[str, Any]) -> str | Response:
    """The thinking level a generateContent request runs at, or the 400 the real API answers:
    ``thinkingLevel`` together with ``thinkingBudget``, or a level the model does not take."""
    spec = GEMINI_MODELS[model]
    config = (body.get("generationConfig") or {}).get("thinkingConfig") or {}
    level, budget = config.get("thinkingLevel"), config.get("thinkingBudget")
    if level is not None and budget is not None:
        return google_error(
            400, "INVALID_ARGUMENT", "thinking_budget and thinking_level cannot be set at the same time."
        )
    if level is None:
        return spec.default_level
    if not isinstance(level, str) or level.lower() not in spec.levels:
        return google_error(
            400,
            "INVALID_ARGUMENT",
            f"Invalid value at 'generation_config.thinking_config.thinking_level' ({level!r}) "
            f"for {model}; supported: {', '.join(sorted(spec.levels))}.",
        )
    return level.lower()


def gemini_admit(key: str | None, expected_key: str, model: str, body: dict[str, Any]) -> str | Response:
    """The checks the real generateContent makes before any work, in its order: the key, the model
    id, the thinking config. Returns the thinking level the request runs at, or the refusal."""
    if (denied := gemini_auth_error(key, expected_key)) is not None:
        return denied
    if model not in GEMINI_MODELS:
        return gemini_model_not_found(model)
    return gemini_thinking_level(model, body)


def gemini_usage(prompt_tokens: int, text: str, level: str) -> dict[str, Any]:
    """``usageMetadata``: ``thoughtsTokenCount`` (present when the model thought) is billed as output
    on top of ``candidatesTokenCount`` (https://ai.google.dev/gemini-api/docs/thinking, pricing: output
    price "including thinking tokens", https://ai.google.dev/gemini-api/docs/pricing)."""
    candidates, thoughts = max(1, len(text) // 4), THOUGHT_TOKENS[level]
    usage: dict[str, Any] = {
        "promptTokenCount": prompt_tokens,
        "candidatesTokenCount": candidates,
        "totalTokenCount": prompt_tokens + candidates + thoughts,
    }
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage


class GeminiSimulator(_FaultySimulator):
    """``POST /v1beta/models/{model}:generateContent`` (route: generate), strict where the real API
    is: unknown or shut-down model ids (404), a missing or wrong key (403 / 400), an invalid
    ``thinkingConfig`` (400), and faults with Google's error bodies — ``429`` carries a ``RetryInfo``
    asking for ``retry_delay_s``, ``quota_daily`` a per-day ``QuotaFailure``.

    ``requests`` keeps ("generate", {images, model, thinking_level}); ``calls`` every request as sent
    (method, path, x-goog-api-key and content-type headers, JSON body); :meth:`answer_next` queues a
    verbatim answer (contract fixtures) given after the checks."""

    FAULT_KINDS = ("429", "quota_daily", "500", "503", "timeout", "malformed", "down")

    def __init__(self, *, api_key: str = "test-key", retry_delay_s: float = 1.0) -> None:
        super().__init__()
        self.api_key = api_key
        self.retry_delay_s = retry_delay_s
        self.calls: list[dict[str, Any]] = []
        self.scripted: list[tuple[int, Any]] = []
        self.context_tags: dict[str, str] = {
            "style": "streetwear",
            "occasion": "casual/urban",
            "brand_style": "oversized",
            "season": "autumn",
        }
        self.app = Starlette(
            routes=[
                Route("/v1beta/models/{model}:generateContent", self.generate, methods=["POST"]),
                Route("/_sim/fault", self.set_fault, methods=["POST"]),
            ]
        )

    def fault(self, route: str, kind: str | None, *, times: int | None = None, delay_s: float = 5.0) -> None:
        if kind is not None and kind not in self.FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}")
        if kind is None:
            self.faults.pop(route, None)
        else:
            self.faults[route] = _Fault(kind, times, delay_s)

    def clear(self) -> None:
        super().clear()
        self.calls.clear()
        self.scripted.clear()

    def answer_next(self, status: int, body: Any) -> None:
        """Answer the next valid call with exactly ``body`` (after the key/model/thinking checks)."""
        self.scripted.append((status, body))

    async def _injected(self, route: str, model: str = "") -> Response | None:
        fault = self.faults.get(route)
        if fault is None or fault.kind == "timeout":
            return await super()._injected(route)
        self.hits[route] += 1
        if fault.times is not None:
            if fault.times <= 0:
                self.faults.pop(route, None)
                return None
            fault.times -= 1
        if fault.kind in ("429", "quota_daily"):
            return gemini_rate_limited(model, self.retry_delay_s, daily=fault.kind == "quota_daily")
        if fault.kind == "malformed":
            return Response(b'{"candidates": [{"content": {', media_type="application/json")
        if fault.kind == "500":
            return google_error(500, "INTERNAL", "An internal error has occurred. Please retry.")
        return google_error(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")

    async def generate(self, request: Request) -> Response:
        model = request.path_params["model"]
        body = await request.json()
        self.calls.append(
            {
                "method": request.method,
                "path": request.url.path,
                "query": dict(request.query_params),
                "headers": {
                    k: request.headers[k] for k in ("x-goog-api-key", "content-type") if k in request.headers
                },
                "json": body,
            }
        )
        level = gemini_admit(request.headers.get("x-goog-api-key"), self.api_key, model, body)
        if isinstance(level, Response):
            return level
        if (injected := await self._injected("generate", model)) is not None:
            return injected
        if self.scripted:
            status, scripted = self.scripted.pop(0)
            return JSONResponse(scripted, status_code=status)
        parts = body["contents"][0]["parts"]
        images = [
            Image.open(io.BytesIO(base64.b64decode(inline["data"]))).convert("RGB")
            for p in parts
            if (inline := p.get("inline_data") or p.get("inlineData"))
        ]
        self.requests.append(("generate", {"images": len(images), "model": model, "thinking_level": level}))
        if len(images) == 1:
            answer: dict[str, Any] = dict(self.context_tags)
        elif len(images) == 2:
            score = pixel_similarity(images[0], images[1])
            answer = {"visual": score, "semantic": score, "reason": f"pixel similarity {score}"}
        else:
            return google_error(400, "INVALID_ARGUMENT", "expected 1 or 2 images")
        text = json.dumps(answer)
        return JSONResponse(
            {
                "candidates": [
                    {
                        "content": {"role": "model", "parts": [{"text": text}]},
                        "finishReason": "STOP",
                        "index": 0,
                    }
                ],
                "usageMetadata": gemini_usage(258 * len(images) + 120, text, level),
                "modelVersion": model,
                "responseId": f"sim-{len(self.calls)}",
            }
        )


class ImageHost:
    """Serves images at ``/img/{name}``; ``/img-html/x`` answers text/html, ``/img-big/x`` a body
    larger than any limit, ``/img-slow/x`` after ``slow_s``."""

    def __init__(self, directory: Path | None = None) -> None:
        self.images: dict[str, bytes] = {}
        self.directory = directory
        self.slow_s = 5.0
        self.hits: defaultdict[str, int] = defaultdict(int)
        self.app = Starlette(
            routes=[
                Route("/img/{name:path}", self.image),
                Route("/img-html/{name:path}", self.html),
                Route("/img-big/{name:path}", self.big),
                Route("/img-slow/{name:path}", self.slow),
            ]
        )

    def put(self, name: str, image: Image.Image) -> None:
        self.images[name] = png(image)
        if self.directory is not None:
            (self.directory / name).parent.mkdir(parents=True, exist_ok=True)
            (self.directory / name).write_bytes(self.images[name])

    async def image(self, request: Request) -> Response:
        name = request.path_params["name"]
        self.hits[name] += 1
        data = self.images.get(name)
        if data is None and self.directory is not None and (self.directory / name).is_file():
            data = (self.directory / name).read_bytes()
        if data is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        return Response(data, media_type="image/png")

    async def html(self, request: Request) -> Response:
        return Response(b"<html><body>not a photo</body></html>", media_type="text/html")

    async def big(self, request: Request) -> Response:
        """64 MiB + 1 streamed without Content-Length (only a counting reader notices)."""

        async def chunks() -> AsyncIterator[bytes]:
            block = b"\0" * (1024 * 1024)
            for _ in range(64):
                yield block
            yield b"\0"

        return StreamingResponse(chunks(), media_type="image/jpeg")

    async def slow(self, request: Request) -> Response:
        await asyncio.sleep(self.slow_s)
        return Response(b"", media_type="image/png")


def combined_app(ximilar: XimilarSimulator, gemini: GeminiSimulator, images: ImageHost) -> Starlette:
    """All three under one port: /ximilar, /gemini, and /img* at the root."""
    return Starlette(
        routes=[Mount("/ximilar", ximilar.app), Mount("/gemini", gemini.app), Mount("/", images.app)]
    )


def main() -> None:  # pragma: no cover - run by the lab scenario
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--images", type=Path, required=True, help="directory served at /img/")
    parser.add_argument("--scenario", type=Path, help="JSON: detections, records, token, collection, api_key")
    args = parser.parse_args()
    spec: dict[str, Any] = json.loads(args.scenario.read_text()) if args.scenario else {}
    ximilar = XimilarSimulator(
        token=spec.get("token", "test-token"), collection_id=spec.get("collection", "test-collection")
    )
    gemini = GeminiSimulator(api_key=spec.get("api_key", "test-key"))
    host = ImageHost(args.images)
    for name, objects in spec.get("detections", {}).items():
        photo = Image.open(args.images / name).convert("RGB")
        ximilar.add_photo(photo, [(o[0], tuple(o[1]), o[2]) for o in objects])
    for record in spec.get("records", []):
        image = Image.open(args.images / record.pop("image")).convert("RGB")
        ximilar.add_record(image, **record)
    uvicorn.run(combined_app(ximilar, gemini, host), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":  # pragma: no cover
    main()
