"""``POST /tag``: Ximilar's fashion tags of a crop, with the best type, color, material and pattern.

Task names are Fashion Tagging's (https://docs.ximilar.com/services/fashion_tagging, taxonomy):
``Subcategory`` (the type; ``Category`` when it has none), ``Color``, and one combined ``Pattern
and Material`` task whose tags are patterns (stripe, floral, plaid, plain, ...) or materials
(:data:`MATERIALS`). /detect gives every detected item the same attributes from the tags
``detect_tags`` returned for it (:func:`attributes`)."""

from __future__ import annotations

from typing import Any, Final

from fastapi import APIRouter

from unde_common.images import jpeg_bytes
from ximilar_gw.gateway import GatewayDep
from ximilar_gw.routes import UrlBody

router = APIRouter()

#: the tags of the "Pattern and Material" task that name a material, not a pattern
MATERIALS: Final = frozenset({"denim", "knitted", "lace", "leather"})
PATTERN_AND_MATERIAL: Final = "Pattern and Material"


def _best(values: list[dict[str, Any]]) -> str | None:
    if not values:
        return None
    return str(max(values, key=lambda v: float(v.get("prob", 0))).get("name"))


def best_tag(tags: dict[str, list[dict[str, Any]]], *tasks: str) -> str | None:
    """The most probable tag of the first of ``tasks`` that has any."""
    for task in tasks:
        values = [v for v in tags.get(task) or [] if isinstance(v, dict)]
        if values:
            return _best(values)
    return None


def attributes(tags: dict[str, list[dict[str, Any]]]) -> dict[str, str | None]:
    """type, color, material, pattern of Fashion Tagging's ``_tags``."""
    mixed = [v for v in tags.get(PATTERN_AND_MATERIAL) or [] if isinstance(v, dict)]
    materials = [v for v in mixed if str(v.get("name", "")).lower() in MATERIALS]
    return {
        "type": best_tag(tags, "Subcategory", "Category"),
        "color": best_tag(tags, "Color"),
        "material": _best(materials),
        "pattern": _best([v for v in mixed if v not in materials]),
    }


@router.post("/tag")
async def tag(body: UrlBody, gw: GatewayDep) -> Any:
    async def work() -> dict[str, Any]:
        _, image = await gw.load(body.url)
        tags = await gw.ximilar.tag(jpeg_bytes(image))
        return {**attributes(tags), "tags": tags}

    return await gw.guarded("tag", work)
