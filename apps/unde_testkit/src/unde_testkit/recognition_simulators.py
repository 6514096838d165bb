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

- Ximilar detection answers the objects registered for a photo URL (:meth:`XimilarSimulator.add_photo`);
- Ximilar tagging answers the dominant colour of the image from a small palette, the category
  given by ``tag_category``;
- Ximilar visual search scores the query against the catalog images registered with
  :meth:`XimilarSimulator.add_record` by :func:`pixel_similarity`;
- Gemini tagging (one image) answers ``context_tags``; Gemini rerank (two images) answers
  ``{"visual": s, "semantic": s}`` with s the pixel similarity of the two images.

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


async def _image_from_record(record: dict[str, Any], client: httpx.AsyncClient | None = None) -> Image.Image:
    if "_base64" in record:
        return Image.open(io.BytesIO(base64.b64decode(record["_base64"]))).convert("RGB")
    if "_url" in record:
        async with httpx.AsyncClient(timeout=10) as c:
            response = await (client or c).get(record["_url"])
            response.raise_for_status()
            return Image.open(io.BytesIO(response.content)).convert("RGB")
    raise ValueError("record has neither _base64 nor _url")


class XimilarSimulator(_FaultySimulator):
    """The Ximilar endpoints ximilar_gw.client uses (routes: detect, tag, search)."""

    def __init__(self, *, token: str = "test-token", collection_id: str = "test-collection") -> None:  # noqa: S107
        super().__init__()
        self.token = token
        self.collection_id = collection_id
        self.detections: list[tuple[Image.Image, list[dict[str, Any]]]] = []
        self.records: list[tuple[dict[str, Any], Image.Image]] = []
        self.tag_category = "Jackets"
        self.app = Starlette(
            routes=[
                Route("/tagging/fashion/v2/detect_tags", self.detect, methods=["POST"]),
                Route("/tagging/fashion/v2/tags", self.tag, methods=["POST"]),
                Route("/photo/search/v2/visualKNN", self.search, methods=["POST"]),
                Route("/_sim/fault", self.set_fault, methods=["POST"]),
            ]
        )

    def add_photo(
        self, photo: Image.Image, objects: list[tuple[str, tuple[int, int, int, int], float]]
    ) -> None:
        """Objects Ximilar detects on ``photo`` (recognised by its pixels): (name, (x1, y1, x2, y2), prob)."""
        found = [
            {"name": name, "bound_box": list(box), "prob": prob, "Top Category": [{"name": "Clothing"}]}
            for name, box, prob in objects
        ]
        self.detections.append((photo.convert("RGB"), found))

    def _objects_of(self, image: Image.Image) -> list[dict[str, Any]]:
        for photo, objects in self.detections:
            if photo.size == image.size and pixel_similarity(photo, image) > 0.97:
                return objects
        return []

    def add_record(self, image: Image.Image, **meta: Any) -> None:
        """A catalog photo in the collection with its metadata (sku_id, brand, ...)."""
        self.records.append(({"_id": f"rec-{len(self.records)}", **meta}, image))

    def _auth(self, request: Request, *, collection: bool = False) -> Response | None:
        if request.headers.get("authorization") != f"Token {self.token}":
            return JSONResponse({"detail": "Invalid token."}, status_code=401)
        if collection and request.headers.get("collection-id") != self.collection_id:
            return JSONResponse({"detail": "collection not found"}, status_code=404)
        return None

    async def detect(self, request: Request) -> Response:
        if (denied := self._auth(request)) is not None:
            return denied
        if (injected := await self._injected("detect")) is not None:
            return injected
        body = await request.json()
        self.requests.append(("detect", body))
        records = []
        for record in body["records"]:
            objects = self._objects_of(await _image_from_record(record))
            records.append({**record, "_objects": objects, "_status": {"code": 200, "text": "OK"}})
        return JSONResponse({"records": records, "status": {"code": 200, "text": "OK"}})

    async def tag(self, request: Request) -> Response:
        if (denied := self._auth(request)) is not None:
            return denied
        if (injected := await self._injected("tag")) is not None:
            return injected
        body = await request.json()
        self.requests.append(("tag", {"records": len(body["records"])}))
        records = []
        for record in body["records"]:
            image = await _image_from_record(record)
            colour = dominant_colour(image)
            tags = {
                "Category": [{"name": self.tag_category, "prob": 0.93}],
                "Color": [{"name": colour, "prob": 0.88}],
                "Material": [{"name": "cotton", "prob": 0.7}],
                "Pattern": [{"name": "solid", "prob": 0.8}],
            }
            simple = [self.tag_category, colour, "cotton", "solid"]
            records.append({"_tags": tags, "_tags_simple": simple, "_status": {"code": 200, "text": "OK"}})
        return JSONResponse({"records": records, "status": {"code": 200, "text": "OK"}})

    async def search(self, request: Request) -> Response:
        if (denied := self._auth(request, collection=True)) is not None:
            return denied
        if (injected := await self._injected("search")) is not None:
            return injected
        body = await request.json()
        self.requests.append(("search", {"k": body.get("k"), "filter": body.get("filter")}))
        query = await _image_from_record(body["query_record"])
        scored = sorted(
            ((1.0 - pixel_similarity(query, image), meta) for meta, image in self.records),
            key=lambda pair: pair[0],
        )[: int(body.get("k", 10))]
        return JSONResponse(
            {
                "answer_records": [meta for _, meta in scored],
                "answer_distances": [round(d, 4) for d, _ in scored],
                "answer_count": len(scored),
                "status": {"code": 200, "text": "OK"},
            }
        )


class GeminiSimulator(_FaultySimulator):
    """``POST /v1beta/models/{model}:generateContent`` (route: generate)."""

    def __init__(self, *, api_key: str = "test-key") -> None:
        super().__init__()
        self.api_key = api_key
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

    async def generate(self, request: Request) -> Response:
        if request.headers.get("x-goog-api-key") != self.api_key:
            error = {"error": {"code": 403, "message": "API key not valid.", "status": "PERMISSION_DENIED"}}
            return JSONResponse(error, status_code=403)
        if (injected := await self._injected("generate")) is not None:
            return injected
        body = await request.json()
        parts = body["contents"][0]["parts"]
        images = [
            Image.open(io.BytesIO(base64.b64decode(p["inline_data"]["data"]))).convert("RGB")
            for p in parts
            if "inline_data" in p
        ]
        self.requests.append(("generate", {"images": len(images), "model": request.path_params["model"]}))
        if len(images) == 1:
            answer: dict[str, Any] = dict(self.context_tags)
        elif len(images) == 2:
            score = pixel_similarity(images[0], images[1])
            answer = {"visual": score, "semantic": score, "reason": f"pixel similarity {score}"}
        else:
            return JSONResponse(
                {"error": {"code": 400, "message": "expected 1 or 2 images"}}, status_code=400
            )
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
                "usageMetadata": {
                    "promptTokenCount": 258 * len(images) + 120,
                    "candidatesTokenCount": len(text) // 4,
                    "totalTokenCount": 258 * len(images) + 120 + len(text) // 4,
                },
                "modelVersion": request.path_params["model"],
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
