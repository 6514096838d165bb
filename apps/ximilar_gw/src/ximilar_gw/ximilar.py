"""Client of the Ximilar API (base URL ``XIMILAR_BASE_URL``, ``Authorization: Token <token>``).

- Fashion detection + tags: ``POST /tagging/fashion/v2/detect_tags`` ``{"records": [{"_base64"}]}``
  → ``records[0]._objects[]`` with ``name``, ``bound_box`` [x1, y1, x2, y2], ``prob``;
- Fashion tagging: ``POST /tagging/fashion/v2/tags`` → ``records[0]._tags`` {task: [{name, prob}]};
- Visual search in the custom collection (header ``collection-id``):
  ``POST /photo/search/v2/visualKNN`` ``{"query_record": {"_base64"}, "k"}`` →
  ``answer_records`` (the metadata ximilar-sync uploaded: sku_id, brand, price, ...) and
  ``answer_distances``; score = 1 - distance, clipped to [0, 1].

Every call first takes a token from the shared Redis rate limiter. Retries (429 with Retry-After,
5xx, timeouts) are :class:`unde_common.http.AsyncProviderClient`'s; each 429 Ximilar answers is
counted in ``ximilar_gw_rate_limit_hits_total{source="ximilar"}``.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx
from prometheus_client import Counter

from unde_common.http import AsyncProviderClient, ProviderConfig, ProviderError
from ximilar_gw.rate_limiter import RedisRateLimiter

__all__ = ["XimilarClient", "XimilarResponseError"]


class XimilarResponseError(ProviderError):
    """Ximilar answered 200 with a body that does not have the expected shape."""


class _Counting429(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport, counter: Counter) -> None:
        self.inner = inner
        self.counter = counter

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if response.status_code == 429:
            self.counter.labels("ximilar").inc()
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class XimilarClient:
    def __init__(
        self,
        config: ProviderConfig,
        *,
        token: str,
        collection_id: str,
        limiter: RedisRateLimiter,
        rate_limit_hits: Counter,
        limiter_wait_s: float = 2.0,
    ) -> None:
        headers = {**config.headers, "Authorization": f"Token {token}"}
        transport = _Counting429(httpx.AsyncHTTPTransport(), rate_limit_hits)
        self.http = AsyncProviderClient(config.with_(headers=headers), transport=transport)
        self.collection_id = collection_id
        self.limiter = limiter
        self.limiter_wait_s = limiter_wait_s

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _post(self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
        await self.limiter.acquire(max_wait_s=self.limiter_wait_s)
        return await self.http.post_json(path, json=body, headers=headers or {})

    def _record(self, data: Any, path: str) -> dict[str, Any]:
        try:
            record = data["records"][0]
        except (KeyError, IndexError, TypeError) as exc:
            raise XimilarResponseError(
                "ximilar", "POST", path, attempts=1, reason=f"no records: {exc!r}"
            ) from None
        status = record.get("_status", {}).get("code", 200)
        if status != 200:
            text = record.get("_status", {}).get("text", "")
            raise XimilarResponseError("ximilar", "POST", path, attempts=1, status=status, reason=str(text))
        if not isinstance(record, dict):
            raise XimilarResponseError("ximilar", "POST", path, attempts=1, reason="record is not an object")
        return record

    async def detect(self, image: bytes) -> list[dict[str, Any]]:
        """Objects on the photo: [{"name", "bound_box": [x1, y1, x2, y2], "prob", ...}]."""
        path = "/tagging/fashion/v2/detect_tags"
        record = self._record(await self._post(path, {"records": [{"_base64": _b64(image)}]}), path)
        objects = record.get("_objects", [])
        if not isinstance(objects, list):
            raise XimilarResponseError("ximilar", "POST", path, attempts=1, reason="_objects is not a list")
        return [o for o in objects if isinstance(o, dict) and len(o.get("bound_box") or []) == 4]

    async def tag(self, image: bytes) -> dict[str, list[dict[str, Any]]]:
        """Fashion tags of a crop: {task: [{"name", "prob"}]}."""
        path = "/tagging/fashion/v2/tags"
        record = self._record(await self._post(path, {"records": [{"_base64": _b64(image)}]}), path)
        tags = record.get("_tags", {})
        if not isinstance(tags, dict):
            raise XimilarResponseError("ximilar", "POST", path, attempts=1, reason="_tags is not an object")
        return tags

    async def search(self, image: bytes, *, k: int) -> list[tuple[dict[str, Any], float]]:
        """(record metadata, score) of the k nearest collection records, best first."""
        path = "/photo/search/v2/visualKNN"
        body = {"query_record": {"_base64": _b64(image)}, "k": k}
        data = await self._post(path, body, {"collection-id": self.collection_id})
        try:
            records, distances = data["answer_records"], data["answer_distances"]
            pairs = [
                (dict(r), max(0.0, min(1.0, 1.0 - float(d)))) for r, d in zip(records, distances, strict=True)
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise XimilarResponseError(
                "ximilar", "POST", path, attempts=1, reason=f"bad visualKNN answer: {exc!r}"
            ) from None
        return sorted(pairs, key=lambda p: -p[1])
