"""One collector per brand: which Apify actor runs, with what input, and how the brand's dataset
item maps to a ``raw_products`` row (spec 02 §2). The actors are datasaurus' (apify.com/datasaurus):
their input is ``{"start_urls": [{"url": ...}], "max_results": N}`` (the actors' API pages,
e.g. https://apify.com/datasaurus/zara/api/python). The items come in three shapes:

- Zara (``datasaurus/zara``): ``id`` (the 9-digit product id), ``reference`` (``02086797-V2026``:
  model and quality digits, then the campaign), ``name``, ``description``, ``price`` in minor units
  (tiyn), ``category``, ``detailedComposition.parts[].components[]`` and ``colorsSizesImagesJSON``,
  one entry per colour with ``id`` (``800``), ``name``, ``productId``, ``xmedia`` (image URLs with a
  ``{width}`` placeholder) and ``sizes[]`` (``name``, ``sku``, ``availability``). Zara's own product
  JSON (``detail.colors[]`` with ``reference`` ``C05584361800000-V2024`` and ``xmedia[].url``) is read
  the same way;
- Bershka, Pull&Bear, Stradivarius, Oysho (Inditex storefront actor): ``id``, ``name``, ``price`` as
  a decimal string, ``category``, ``color``, ``sizes`` (strings), ``images`` (URLs);
- Massimo Dutti: ``reference``, ``title``, ``price: {value, currency}``, ``breadcrumbs``,
  ``colour.name``, ``availableSizes``, ``imageUrls``.

A malformed item raises :class:`ItemError` naming the field; the run counts it and goes on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from apify.settings import ApifySettings

BRANDS = ("zara", "bershka", "pullandbear", "stradivarius", "massimodutti", "oysho")
_MAX_PRICE = Decimal("99999999.99")


class ItemError(ValueError):
    """A dataset item that cannot become a product."""


@dataclass(frozen=True)
class ProductRecord:
    external_id: str
    brand: str
    name: str
    description: str | None
    price: Decimal | None
    currency: str
    category: str | None
    colour: str | None
    sizes: list[str]
    composition: str | None
    original_image_urls: list[str]
    raw: Mapping[str, Any] = field(repr=False, compare=False)


def _text(value: Any, what: str, *, required: bool = False, limit: int | None = None) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ItemError(f"missing {what}")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ItemError(f"{what} is not text ({type(value).__name__})")
    text = str(value).strip()
    if limit is not None and len(text) > limit:
        raise ItemError(f"{what} longer than {limit} characters")
    return text


def _price(value: Any, *, minor_units: bool = False) -> Decimal | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ItemError("price is not a number")
    original = value
    if isinstance(value, str):
        cleaned = re.sub(r"[^\d.,-]", "", value).replace(",", ".")
        if cleaned.count(".") > 1:  # "15.990.00" style thousands separators
            head, _, tail = cleaned.rpartition(".")
            cleaned = head.replace(".", "") + "." + tail
        value = cleaned
    try:
        price = Decimal(str(value))
    except InvalidOperation:
        raise ItemError(f"price {str(original)[:40]!r} is not a number") from None
    if minor_units:
        price = price / 100
    if not price.is_finite() or price < 0 or price > _MAX_PRICE:
        raise ItemError(f"price {price} out of range")
    return price.quantize(Decimal("0.01"))


def _urls(values: Any, what: str) -> list[str]:
    if not isinstance(values, list):
        raise ItemError(f"{what} is not a list")
    seen: list[str] = []
    for value in values:
        url = value.get("url") if isinstance(value, dict) else value
        if isinstance(url, str) and url.startswith(("http://", "https://")) and url not in seen:
            seen.append(url)
    if not seen:
        raise ItemError(f"no image URLs in {what}")
    return seen


def _sizes(values: Any) -> list[str]:
    if values is None:
        return []
    if not isinstance(values, list):
        raise ItemError("sizes is not a list")
    out = []
    for value in values:
        name = value.get("name") if isinstance(value, dict) else value
        if isinstance(name, str | int) and str(name).strip():
            out.append(str(name).strip())
    return out


#: the width asked of Zara's image CDN for the ``{width}`` placeholder in its image URLs
ZARA_IMAGE_WIDTH = 1920


def zara_colours(item: Mapping[str, Any]) -> list[Any]:
    """The colour entries of a Zara item: ``colorsSizesImagesJSON`` (the actor) or ``detail.colors``
    (Zara's product JSON); [] when neither is a list."""
    colours = item.get("colorsSizesImagesJSON")
    if colours is None:
        detail = item.get("detail")
        colours = detail.get("colors") if isinstance(detail, dict) else None
    return colours if isinstance(colours, list) else []


def _zara_composition(item: Mapping[str, Any]) -> str | None:
    """``detailedComposition.parts[].components[]`` as text (``OUTER SHELL: 100% linen``)."""
    detailed = item.get("detailedComposition")
    if not isinstance(detailed, dict):
        return _text(item.get("composition"), "composition")
    parts = []
    for part in detailed.get("parts") or []:
        if not isinstance(part, dict):
            continue
        bits = [
            " ".join(str(c[k]).strip() for k in ("percentage", "material") if c.get(k))
            for c in part.get("components") or []
            if isinstance(c, dict)
        ]
        bits = [b for b in bits if b]
        if bits:
            label = str(part.get("description") or "").strip()
            parts.append((f"{label}: " if label else "") + ", ".join(bits))
    return "; ".join(parts) or None


def map_zara(item: Mapping[str, Any], brand: str) -> ProductRecord:
    colours = zara_colours(item)
    if not colours or not isinstance(colours[0], dict):
        raise ItemError("missing colorsSizesImagesJSON")
    colour = colours[0]
    sizes = _sizes(colour.get("sizes"))
    if not sizes and isinstance(item.get("sizes"), str):
        sizes = [s.strip() for s in item["sizes"].split(",") if s.strip()]
    images = [
        u.replace("{width}", str(ZARA_IMAGE_WIDTH))
        for u in _urls(colour.get("xmedia"), "colorsSizesImagesJSON[0].xmedia")
    ]
    return ProductRecord(
        external_id=_text(item.get("id"), "id", required=True, limit=100) or "",
        brand=brand,
        name=_text(item.get("name"), "name", required=True) or "",
        description=_text(item.get("description") or colour.get("description"), "description"),
        price=_price(item.get("price", colour.get("price")), minor_units=True),
        currency=_text(item.get("currency"), "currency", limit=10) or "KZT",
        category=_text(item.get("category"), "category"),
        colour=_text(colour.get("name"), "colorsSizesImagesJSON[0].name", limit=100),
        sizes=sizes,
        composition=_zara_composition(item),
        original_image_urls=images,
        raw=item,
    )


def map_storefront(item: Mapping[str, Any], brand: str) -> ProductRecord:
    return ProductRecord(
        external_id=_text(item.get("id"), "id", required=True, limit=100) or "",
        brand=brand,
        name=_text(item.get("name"), "name", required=True) or "",
        description=_text(item.get("description"), "description"),
        price=_price(item.get("price")),
        currency=_text(item.get("currency"), "currency", limit=10) or "KZT",
        category=_text(item.get("category"), "category"),
        colour=_text(item.get("color"), "color", limit=100),
        sizes=_sizes(item.get("sizes")),
        composition=_text(item.get("composition"), "composition"),
        original_image_urls=_urls(item.get("images"), "images"),
        raw=item,
    )


def map_massimodutti(item: Mapping[str, Any], brand: str) -> ProductRecord:
    price = item.get("price")
    if price is not None and not isinstance(price, dict):
        raise ItemError("price is not an object")
    crumbs = item.get("breadcrumbs")
    category = " / ".join(str(c) for c in crumbs) if isinstance(crumbs, list) and crumbs else None
    colour = item.get("colour")
    return ProductRecord(
        external_id=_text(item.get("reference"), "reference", required=True, limit=100) or "",
        brand=brand,
        name=_text(item.get("title"), "title", required=True) or "",
        description=_text(item.get("descriptionHtml"), "descriptionHtml"),
        price=_price(price.get("value")) if price else None,
        currency=(_text(price.get("currency"), "price.currency", limit=10) if price else None) or "KZT",
        category=category,
        colour=_text(colour.get("name"), "colour.name", limit=100) if isinstance(colour, dict) else None,
        sizes=_sizes(item.get("availableSizes")),
        composition=_text(item.get("composition"), "composition"),
        original_image_urls=_urls(item.get("imageUrls"), "imageUrls"),
        raw=item,
    )


@dataclass(frozen=True)
class BrandCollector:
    brand: str
    mapper: Callable[[Mapping[str, Any], str], ProductRecord]

    @property
    def source(self) -> str:
        return f"apify_{self.brand}"

    @property
    def scraper_name(self) -> str:
        return f"apify_{self.brand}"

    def actor(self, settings: ApifySettings) -> str:
        actor: str = getattr(settings, f"apify_actor_{self.brand}")
        return actor

    def run_input(self, settings: ApifySettings) -> dict[str, Any]:
        return {
            "start_urls": [{"url": settings.apify_start_url.format(brand=self.brand)}],
            "max_results": settings.apify_max_items,
        }

    def map_item(self, item: Any) -> ProductRecord:
        if not isinstance(item, dict):
            raise ItemError(f"item is not an object ({type(item).__name__})")
        return self.mapper(item, self.brand)


COLLECTORS: dict[str, BrandCollector] = {
    "zara": BrandCollector("zara", map_zara),
    "bershka": BrandCollector("bershka", map_storefront),
    "pullandbear": BrandCollector("pullandbear", map_storefront),
    "stradivarius": BrandCollector("stradivarius", map_storefront),
    "massimodutti": BrandCollector("massimodutti", map_massimodutti),
    "oysho": BrandCollector("oysho", map_storefront),
}
