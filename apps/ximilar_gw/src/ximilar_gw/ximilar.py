"""Client of the Ximilar API (base URL ``XIMILAR_BASE_URL``, ``Authorization: Token <token>``).

- Fashion detection + tags: ``POST /tagging/fashion/v2/detect_tags`` ``{"records": [{"_base64"}]}``
  → ``records[0]._objects[]`` with ``name``, ``bound_box`` [x1, y1, x2, y2], ``prob`` and the
  object's own ``_tags`` {task: [{name, prob}]}: detect_tags tags every object it detects
  (https://docs.ximilar.com/services/fashion_tagging: "detect all possible fashion items on image
  and then get tags for all detected items use endpoint /detect_tags"), so a detected item needs
  no second tagging call;
- Fashion tagging of one crop: ``POST /tagging/fashion/v2/tags`` → ``records[0]._tags``;
- Visual search in the collection ximilar-sync fills (header ``collection-id``; the service is
  ``XIMILAR_SERVICE_PATH``, the same one ximilar-sync inserts into: a collection belongs to one
  service): ``POST {service}/visualKNN`` ``{"query_record": {"_base64"}, "k", "fields_to_return"}``
  → ``answer_records`` and ``answer_distances``; score = 1 - distance, clipped to [0, 1]. The
  answer records carry only the fields asked for (default ``_id``, ``_url``, ``_file``:
  https://docs.ximilar.com/generated-snippets/visualRankRecords/request-fields), so the request
  names :data:`RECORD_FIELDS`, the metadata ximilar-sync stores with each record. One query record
  per search (https://docs.ximilar.com/services/fashion_search "Things to note").

Retries: a search is a read, retried like an idempotent call (429 with Retry-After, 5xx,
timeouts: :class:`unde_common.http.AsyncProviderClient`); tagging is billed per call, so it is
repeated only after an answer that refused it (429 / 503: ``retry_refused``), never after a timeout
or a 500 (a repeat after a lost answer could be billed twice). Every call first takes a token from
the shared Redis rate limiter; each 429 Ximilar answers is counted in
``ximilar_gw_rate_limit_hits_total{source="ximilar"}``.
"""

from __future__ import annotations

import base64
from typing import Any, Final

import httpx
from prometheus_client import Counter

from unde_common.http import AsyncProviderClient, ProviderConfig, ProviderError
from ximilar_gw.rate_limiter import RedisRateLimiter

__all__ = ["DETECT_TAGS_PATH", "RECORD_FIELDS", "TAGS_PATH", "XimilarClient", "XimilarResponseError"]

DETECT_TAGS_PATH: Final = "/tagging/fashion/v2/detect_tags"
TAGS_PATH: Final = "/tagging/fashion/v2/tags"
#: what a search asks back of each collection record: the record's identity and the metadata
#: ximilar-sync's build_records stores (a test keeps the two lists equal)
RECORD_FIELDS: Final = (
    "_id",
    "_url",
    "sku_id",
    "product_id",
    "brand",
    "name",
    "category",
    "price",
    "currency",
    "store",
    "floor",
    "image_index",
    "collage_url",
)


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
        service_path: str,
        limiter: RedisRateLimiter,
        rate_limit_hits: Counter,
        limiter_wait_s: float = 2.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {**config.headers, "Authorization": f"Token {token}"}
        counting = _Counting429(transport or httpx.AsyncHTTPTransport(), rate_limit_hits)
        self.http = AsyncProviderClient(config.with_(headers=headers), transport=counting)
        self.collection_id = collection_id
        self.search_path = f"{service_path.rstrip('/')}/visualKNN"
        self.limiter = limiter
        self.limiter_wait_s = limiter_wait_s

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _post(
        self, path: str, body: dict[str, Any], *, idempotent: bool, headers: dict[str, str] | None = None
    ) -> Any:
        await self.limiter.acquire(max_wait_s=self.limiter_wait_s)
        # a call that is not idempotent (billed tagging) is still repeated after an answer that
        # refused it (429 throttled, 503): nothing was done, nothing billed
        return await self.http.post_json(
            path, json=body, headers=headers or {}, idempotent=idempotent, retry_refused=True
        )

    def _record(self, data: Any, path: str) -> dict[str, Any]:
        try:
            record = data["records"][0]
        except (KeyError, IndexError, TypeError) as exc:
            raise XimilarResponseError(
                "ximilar", "POST", path, attempts=1, reason=f"no records: {exc!r}"
            ) from None
        if not isinstance(record, dict):
            raise XimilarResponseError("ximilar", "POST", path, attempts=1, reason="record is not an object")
        status = record.get("_status", {}).get("code", 200)
        if status != 200:
            text = record.get("_status", {}).get("text", "")
            raise XimilarResponseError("ximilar", "POST", path, attempts=1, status=status, reason=str(text))
        return record

    async def detect(self, image: bytes) -> list[dict[str, Any]]:
        """Objects on the photo: [{"name", "bound_box": [x1, y1, x2, y2], "prob", "_tags", ...}]."""
        path = DETECT_TAGS_PATH
        body = {"records": [{"_base64": _b64(image)}]}
        record = self._record(await self._post(path, body, idempotent=False), path)
        objects = record.get("_objects", [])
        if not isinstance(objects, list):
            raise XimilarResponseError("ximilar", "POST", path, attempts=1, reason="_objects is not a list")
        return [o for o in objects if isinstance(o, dict) and len(o.get("bound_box") or []) == 4]

    async def tag(self, image: bytes) -> dict[str, list[dict[str, Any]]]:
        """Fashion tags of a crop: {task: [{"name", "prob"}]}."""
        path = TAGS_PATH
        body = {"records": [{"_base64": _b64(image)}]}
        record = self._record(await self._post(path, body, idempotent=False), path)
        tags = record.get("_tags", {})
        if not isinstance(tags, dict):
            raise XimilarResponseError("ximilar", "POST", path, attempts=1, reason="_tags is not an object")
        return tags

    async def search(self, image: bytes, *, k: int) -> list[tuple[dict[str, Any], float]]:
        """(record metadata, score) of the k nearest collection records, best first."""
        path = self.search_path
        body = {"query_record": {"_base64": _b64(image)}, "k": k, "fields_to_return": list(RECORD_FIELDS)}
        data = await self._post(path, body, idempotent=True, headers={"collection-id": self.collection_id})
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
