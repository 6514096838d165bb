"""``POST /detect``: Ximilar's fashion detection; each object becomes a ``crop_url`` (the photo URL
with a ``#xywh=`` region), its bbox, category and confidence, and the tags ``detect_tags`` gave it
(``tags``: {task: [{name, prob}]}, ``attributes``: type, color, material, pattern as ``/tag``
answers them), so a detected item needs no second tagging call."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from unde_common.images import jpeg_bytes
from ximilar_gw.gateway import GatewayDep
from ximilar_gw.routes import UrlBody
from ximilar_gw.routes.tag import attributes

router = APIRouter()

#: Ximilar gets the photo downscaled so its longer side is at most this (boxes are scaled back)
DETECT_MAX_SIDE = 2048
#: boxes narrower or lower than this (pixels) are dropped
MIN_BOX_SIDE = 8


@router.post("/detect")
async def detect(body: UrlBody, gw: GatewayDep) -> Any:
    async def work() -> dict[str, Any]:
        ref, image = await gw.load(body.url)
        scale = max(1.0, max(image.size) / DETECT_MAX_SIDE)
        sent = jpeg_bytes(image, max_side=DETECT_MAX_SIDE)
        objects = await gw.ximilar.detect(sent)
        items = []
        for obj in objects:
            prob = float(obj.get("prob", 0.0))
            if prob < gw.settings.detect_min_confidence:
                continue
            x1, y1, x2, y2 = (round(float(v) * scale) for v in obj["bound_box"])
            x1, y1 = max(0, x1), max(0, y1)
            x2, y2 = min(image.width, x2), min(image.height, y2)
            if x2 - x1 < MIN_BOX_SIDE or y2 - y1 < MIN_BOX_SIDE:
                continue
            found = obj.get("_tags")
            tags: dict[str, list[dict[str, Any]]] = found if isinstance(found, dict) else {}
            items.append(
                {
                    "crop_url": ref.with_region((x1, y1, x2 - x1, y2 - y1)),
                    "bbox": [x1, y1, x2, y2],
                    "category": str(obj.get("name", "item")).lower(),
                    "confidence": round(prob, 4),
                    "tags": tags,
                    "attributes": attributes(tags),
                }
            )
        return {"items": items, "width": image.width, "height": image.height}

    return await gw.guarded("detect", work)
