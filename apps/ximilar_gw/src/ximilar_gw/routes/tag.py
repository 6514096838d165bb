"""``POST /tag``: Ximilar's fashion tags of a crop, with the best type, color, material and pattern."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from unde_common.images import jpeg_bytes
from ximilar_gw.gateway import GatewayDep
from ximilar_gw.routes import UrlBody

router = APIRouter()


def best_tag(tags: dict[str, list[dict[str, Any]]], *tasks: str) -> str | None:
    """The most probable tag of the first of ``tasks`` that has any."""
    for task in tasks:
        values = tags.get(task) or []
        if values:
            best = max(values, key=lambda v: float(v.get("prob", 0)))
            return str(best.get("name"))
    return None


@router.post("/tag")
async def tag(body: UrlBody, gw: GatewayDep) -> Any:
    async def work() -> dict[str, Any]:
        _, image = await gw.load(body.url)
        tags = await gw.ximilar.tag(jpeg_bytes(image))
        return {
            "type": best_tag(tags, "Subcategory", "Category"),
            "color": best_tag(tags, "Color"),
            "material": best_tag(tags, "Material"),
            "pattern": best_tag(tags, "Pattern", "Design"),
            "tags": tags,
        }

    return await gw.guarded("tag", work)
