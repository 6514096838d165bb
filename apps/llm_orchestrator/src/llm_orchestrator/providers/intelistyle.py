"""Intelistyle fashion recommendations (when the turn's intent asks for the stylist).

**No public API documentation of Intelistyle could be found** (its site describes the product;
the API reference is given to customers). This client is written against the only things known:
the spec's ``INTELISTYLE_API_URL=https://api.intelistyle.com/v3`` and ``INTELISTYLE_API_KEY``, and
the call ``intelistyle.get_recommendations(build_intelistyle_request(message, context))``. The
request path (setting ``intelistyle_recommend_path``), the auth header (``x-api-key``, setting
``intelistyle_auth_header``), the request body and the answer fields below are ASSUMPTIONS to be
checked against the contract Intelistyle hands over; the answer is read leniently (a list under
``recommendations``, ``items`` or ``results``; each item's ``id``/``product_id``/``sku``, ``name``,
``brand``, ``image_url``, ``url``, ``price``, ``store``) so a differently named field degrades
fields, not the whole call.

The orchestrator treats any failure (:class:`IntelistyleError`) as a degraded answer: the reply
goes out without stylist items. One attempt (``retry_refused=True``: repeated only after a
429/503 refusal), bounded by ``intelistyle_timeout_s``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import httpx
from pydantic import SecretStr

from llm_orchestrator.providers.settings import ProviderSettings
from unde_common.http import AsyncProviderClient, ProviderConfig, ProviderError, RetryPolicy

__all__ = ["IntelistyleClient", "IntelistyleError", "StylistItem", "StylistRequest", "build_intelistyle"]


@dataclass(frozen=True, slots=True)
class StylistRequest:
    """What the orchestrator asks: the user's words, an optional anchor product, filters."""

    query: str
    gender: str | None = None
    product_id: str | None = None
    occasion: str | None = None
    limit: int = 6


@dataclass(frozen=True, slots=True)
class StylistItem:
    item_id: str
    name: str = ""
    brand: str = ""
    image_url: str = ""
    url: str = ""
    price: float | None = None
    currency: str = ""
    store: str = ""


class IntelistyleError(RuntimeError):
    """The stylist call failed or answered nothing usable: the turn degrades, it does not fail."""


class IntelistyleClient:
    def __init__(
        self,
        base_url: str,
        api_key: SecretStr,
        *,
        timeout_s: float,
        path: str = "/recommendations",
        auth_header: str = "x-api-key",
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self.http = AsyncProviderClient(
            ProviderConfig(
                name="intelistyle",
                base_url=base_url.rstrip("/"),
                connect_timeout_s=min(timeout_s, 1.0),
                read_timeout_s=timeout_s,
                write_timeout_s=timeout_s,
                pool_timeout_s=min(timeout_s, 0.5),
                retry=RetryPolicy(max_attempts=2, backoff_base_s=0.1, backoff_max_s=0.5),
                headers={auth_header: api_key.get_secret_value()},
                deadline_s=timeout_s,
            ),
            transport=transport,
        )

    @classmethod
    def from_settings(cls, settings: ProviderSettings) -> IntelistyleClient:
        return cls(
            str(settings.intelistyle_api_url),
            settings.intelistyle_api_key,
            timeout_s=settings.intelistyle_timeout_s,
            path=settings.intelistyle_recommend_path,
            auth_header=settings.intelistyle_auth_header,
        )

    @staticmethod
    def body(request: StylistRequest) -> dict[str, Any]:
        body: dict[str, Any] = {"query": request.query, "limit": request.limit}
        for key in ("gender", "product_id", "occasion"):
            value = getattr(request, key)
            if value is not None:
                body[key] = value
        return body

    async def get_recommendations(self, request: StylistRequest) -> list[StylistItem]:
        try:
            data = await self.http.post_json(self.path, json=self.body(request), retry_refused=True)
        except ProviderError as exc:
            raise IntelistyleError(str(exc)) from exc
        items = None
        if isinstance(data, dict):
            items = next((data[k] for k in ("recommendations", "items", "results") if k in data), None)
        elif isinstance(data, list):
            items = data
        if not isinstance(items, list):
            raise IntelistyleError("intelistyle: the answer holds no list of recommendations")
        out = [item for raw in items if (item := _item(raw)) is not None]
        if items and not out:
            raise IntelistyleError("intelistyle: no recommendation carries an id")
        return out[: request.limit]

    async def recommend(
        self, message: str, profile: Any = None, catalog: Sequence[Mapping[str, Any]] = ()
    ) -> dict[str, Any]:
        """The orchestrator's call: the user's message as the query, the profile's ``gender`` when
        it has one, the first catalog product as the anchor; ``{"items": [...]}`` with each item's
        fields (``item_id``, ``name``, ``brand``, ``store``, ``price``, ``currency``, ``url``,
        ``image_url``). Raises :class:`IntelistyleError`."""
        gender = profile.get("gender") if isinstance(profile, Mapping) else getattr(profile, "gender", None)
        anchor = next(
            (str(row[k]) for row in catalog[:1] for k in ("sku_id", "product_id", "id") if row.get(k)), None
        )
        request = StylistRequest(
            query=message, gender=gender if isinstance(gender, str) else None, product_id=anchor
        )
        items = await self.get_recommendations(request)
        return {"items": [asdict(item) for item in items]}

    async def aclose(self) -> None:
        await self.http.aclose()


def build_intelistyle(settings: ProviderSettings) -> IntelistyleClient:
    """The Intelistyle client of the settings."""
    return IntelistyleClient.from_settings(settings)


def _item(raw: object) -> StylistItem | None:
    if not isinstance(raw, dict):
        return None
    item_id = next((str(raw[k]) for k in ("id", "product_id", "sku") if raw.get(k) not in (None, "")), None)
    if item_id is None:
        return None
    price = raw.get("price")
    if isinstance(price, dict):  # {"amount": 49.9, "currency": "EUR"}
        currency = str(price.get("currency", ""))
        price = price.get("amount")
    else:
        currency = str(raw.get("currency", ""))

    def text(*keys: str) -> str:
        return next((str(raw[k]) for k in keys if isinstance(raw.get(k), str)), "")

    return StylistItem(
        item_id=item_id,
        name=text("name", "title"),
        brand=text("brand"),
        image_url=text("image_url", "image"),
        url=text("url", "product_url", "link"),
        price=float(price) if isinstance(price, int | float) and not isinstance(price, bool) else None,
        currency=currency,
        store=text("store", "retailer"),
    )
