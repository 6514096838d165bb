"""Photo download, validation and upload (spec 02 §3).

A run claims pending products in chunks (``FOR UPDATE SKIP LOCKED`` inside one transaction per
chunk, so two workers never take the same product and a killed worker's chunk simply stays
``pending``), downloads up to ``max_photos_per_product`` photos per product with
``concurrent_downloads`` parallel requests, checks that every file is a decodable image of sane size,
uploads it to ``originals/{brand}/{external_id}/{n}.jpg`` (n = 1…5) and finishes the product in the
same transaction: ``uploaded`` + ``image_urls``, or ``error`` + ``error_message`` naming the photo
and the cause. Re-running is safe: keys are deterministic and uploads overwrite.

The photo URLs come from brand pages, so a download must not reach into the private network
(SSRF): every hop, the first URL and each redirect, is checked with the image fetcher's
:class:`unde_common.images.FetchPolicy` (http(s) only, no userinfo, ``download_hosts`` when set,
every address DNS gives must be public unless ``download_allow_networks`` names it). A direct
request goes to the address that was checked (``Host`` and TLS SNI keep the name), so a second DNS
answer cannot rebind it; through the residential proxy the proxy resolves, outside our network.
A photo's width x height is read from its header and checked before any pixel is decoded.
"""

from __future__ import annotations

import io
import logging
import random
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final, cast

import httpx
from PIL import Image, UnidentifiedImageError
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from photo_downloader.runtime import Runtime
from unde_common.catalog import Outcome, WorkQueue, work_through
from unde_common.http import parse_retry_after, redact_url
from unde_common.images import IMAGE_FORMATS, ImageError, check_url, pin
from unde_common.s3 import ObjectStorageError
from unde_common.worker import empty_dir

log = logging.getLogger(__name__)

CLAIM_PENDING = """
SELECT id, brand, external_id, original_image_urls,
       COALESCE(jsonb_array_length(CASE WHEN jsonb_typeof(image_urls) = 'array' THEN image_urls END), 0)
           AS previous_count
FROM raw_products
WHERE image_status = 'pending'
ORDER BY id
LIMIT %s
FOR UPDATE SKIP LOCKED
"""

# download errors only: the collage stage keeps image_urls when it fails, the downloader clears them
CLAIM_RETRY = """
SELECT id, brand, external_id, original_image_urls,
       0 AS previous_count
FROM raw_products
WHERE image_status = 'error' AND image_urls IS NULL AND download_attempts < %s
  AND NOT (id = ANY(%s))  -- each product at most once per run
ORDER BY id
LIMIT %s
FOR UPDATE SKIP LOCKED
"""

MARK_UPLOADED = """
UPDATE raw_products
SET image_status = 'uploaded', image_urls = %s, error_message = NULL, download_attempts = 0
WHERE id = %s
"""

MARK_ERROR = """
UPDATE raw_products
SET image_status = 'error', image_urls = NULL, error_message = %s,
    download_attempts = LEAST(download_attempts + 1, 32767)
WHERE id = %s
"""

PENDING_COUNT = "SELECT count(*) AS n FROM raw_products WHERE image_status = 'pending'"

_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})


class PhotoError(Exception):
    """A photo could not be stored; ``retryable`` when another attempt may succeed."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class StoredPhoto:
    n: int
    key: str
    size_bytes: int
    width: int
    height: int


@dataclass
class ProductOutcome:
    product_id: int
    brand: str
    external_id: str
    photos: list[StoredPhoto] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and bool(self.photos)


@dataclass
class RunSummary:
    task: str
    products: int = 0
    uploaded: int = 0
    errors: int = 0
    photos: int = 0
    bytes: int = 0
    pending_left: int = 0
    seconds: float = 0.0
    mbps: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def original_key(brand: str, external_id: str, n: int) -> str:
    return f"originals/{brand}/{external_id}/{n}.jpg"


def validate_image(data: bytes, content_type: str, rt: Runtime) -> tuple[bytes, int, int]:
    """JPEG bytes (converted when the source is another format) and the size, or PhotoError.

    Pillow opens lazily: the size comes from the header and is checked (sides, pixels) before
    anything is decoded, so a decompression bomb costs no memory."""
    s = rt.settings
    ctype = content_type.split(";", 1)[0].strip().lower()
    if not ctype.startswith("image/"):
        raise PhotoError(f"wrong content type {ctype or 'none'!r} (expected image/*)")
    if not data:
        raise PhotoError("empty body")
    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as img:
            fmt = img.format
            width, height = img.size
            if min(width, height) < s.photo_min_side_px:
                raise PhotoError(
                    f"image too small ({width}x{height}, minimum {s.photo_min_side_px}px a side)"
                )
            if max(width, height) > s.photo_max_side_px:
                raise PhotoError(
                    f"image too large ({width}x{height}, maximum {s.photo_max_side_px}px a side)"
                )
            if width * height > s.photo_max_pixels:
                raise PhotoError(f"image too large ({width}x{height}, more than {s.photo_max_pixels} pixels)")
            img.load()  # decodes fully: truncated or corrupt files fail here
            if fmt == "JPEG":
                return data, width, height
            rgb = img.convert("RGB")
    except PhotoError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:  # Pillow's guard
        raise PhotoError(f"image too large ({exc})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise PhotoError(f"not a decodable image ({exc.__class__.__name__}: {exc})") from None
    out = io.BytesIO()
    rgb.save(out, "JPEG", quality=s.jpeg_quality, subsampling=0)
    return out.getvalue(), width, height


def _refused(url: httpx.URL, rule: str) -> PhotoError:
    return PhotoError(f"URL {redact_url(str(url))[:200]} refused: {rule}")


def _checked_request(client: httpx.Client, url: httpx.URL, rt: Runtime) -> httpx.Request:
    """The request for one hop to ``url`` once the fetch policy allows it: the shared fetcher's
    rules (unde_common.images check_url / pin: scheme, no userinfo, DOWNLOAD_HOSTS when set, every
    address DNS gives public unless allowed), the request sent to the checked address. A DNS
    failure may pass (retryable: the retry run tries again); a refusal is final."""
    policy = rt.fetch_policy
    shown = redact_url(str(url))
    try:
        host, port = check_url(url, policy, shown, any_host_when_empty=True, host_list="download_hosts")
        try:
            addresses = policy.resolver(host, port)
        except (OSError, UnicodeError) as exc:
            raise PhotoError(
                f"host {host[:100]} does not resolve ({exc.__class__.__name__})", retryable=True
            ) from None
        if not addresses:
            raise PhotoError(f"host {host[:100]} has no address", retryable=True)
        hop = pin(url, host, addresses, policy, shown)
    except ImageError as exc:
        raise PhotoError(exc.message) from None
    if rt.settings.download_proxy_url is not None:  # the proxy resolves the name itself
        return client.build_request("GET", url)
    return client.build_request("GET", hop.target, headers=hop.headers, extensions=hop.extensions)


@contextmanager
def _open(client: httpx.Client, url: str, rt: Runtime) -> Iterator[httpx.Response]:
    """The streamed answer for ``url``, redirects followed here, each hop checked first."""
    try:
        current = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise PhotoError(f"not a valid URL: {exc}") from None
    for _ in range(rt.fetch_policy.max_redirects + 1):
        request = _checked_request(client, current, rt)
        response = client.send(request, stream=True, follow_redirects=False)
        try:
            location = response.headers.get("location")
            if response.status_code in _REDIRECTS and location:
                try:
                    current = current.join(location).copy_with(fragment=None)
                except (httpx.InvalidURL, ValueError):
                    raise _refused(current, "it redirects to an invalid URL") from None
                continue
            yield response
            return
        finally:
            response.close()
    raise _refused(httpx.URL(url), f"more than {rt.fetch_policy.max_redirects} redirects")


def fetch(client: httpx.Client, url: str, rt: Runtime) -> tuple[bytes, str]:
    """GET ``url`` with retries (timeouts, 429 + Retry-After, 5xx, truncated bodies)."""
    s = rt.settings
    attempts = s.max_retries + 1
    last = "no attempt"
    for attempt in range(1, attempts + 1):
        delay = min(s.download_backoff_max_s, s.download_backoff_base_s * 2 ** (attempt - 1))
        delay = delay / 2 + random.uniform(0, delay / 2)
        try:
            with _open(client, url, rt) as response:
                status = response.status_code
                if status == 200:
                    chunks: list[bytes] = []
                    total = 0
                    for chunk in response.iter_bytes():
                        total += len(chunk)
                        if total > s.photo_max_bytes:
                            raise PhotoError(f"body larger than {s.photo_max_bytes} bytes")
                        chunks.append(chunk)
                    return b"".join(chunks), response.headers.get("content-type", "")
                last = f"HTTP {status}"
                if status in (429, 503):
                    wait = parse_retry_after(response.headers.get("retry-after"))
                    if wait is not None:
                        if wait > s.download_max_retry_after_s:
                            raise PhotoError(f"HTTP {status}, Retry-After {wait:.0f}s exceeds the limit")
                        delay = wait
                elif not 500 <= status <= 599:
                    raise PhotoError(f"HTTP {status}")
        except httpx.TransportError as exc:  # timeouts, refused connections, truncated bodies
            last = f"{exc.__class__.__name__}: {exc}".rstrip(": ")
        if attempt < attempts:
            time.sleep(delay)
    raise PhotoError(f"{last} after {attempts} attempt(s)", retryable=True)


def store_photo(
    client: httpx.Client, rt: Runtime, brand: str, external_id: str, n: int, url: str
) -> StoredPhoto:
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise PhotoError(f"not an http(s) URL: {str(url)[:100]!r}")
    data, ctype = fetch(client, url, rt)
    jpeg, width, height = validate_image(data, ctype, rt)
    key = original_key(brand, external_id, n)
    try:
        rt.store.put_bytes(key, jpeg, content_type="image/jpeg")
    except ObjectStorageError as exc:
        raise PhotoError(str(exc), retryable=True) from exc
    rt.metrics.bytes_downloaded.inc(len(data))
    return StoredPhoto(n, key, len(data), width, height)


def _photo_urls(raw: Any, limit: int) -> list[str]:
    if not isinstance(raw, list):
        raise PhotoError(f"original_image_urls is not a list ({type(raw).__name__})")
    urls = [u for u in raw if u]
    if not urls:
        raise PhotoError("no original image URLs")
    return urls[:limit]


def process_chunk(rows: Sequence[DictRow], rt: Runtime, pool: ThreadPoolExecutor) -> list[ProductOutcome]:
    """Download every photo of ``rows`` concurrently; one outcome per product."""
    s = rt.settings
    outcomes: list[ProductOutcome] = []
    futures = []
    for row in rows:
        outcome = ProductOutcome(row["id"], row["brand"], row["external_id"])
        outcomes.append(outcome)
        try:
            urls = _photo_urls(row["original_image_urls"], s.max_photos_per_product)
        except PhotoError as exc:
            outcome.errors.append(str(exc))
            continue
        for n, url in enumerate(urls, start=1):
            fut = pool.submit(store_photo, rt.http, rt, row["brand"], row["external_id"], n, url)
            futures.append((outcome, n, url, fut))
    for outcome, n, url, fut in futures:
        try:
            outcome.photos.append(fut.result())
        except PhotoError as exc:
            outcome.errors.append(f"photo {n} ({redact_url(url)[:200]}): {exc}")
        except Exception as exc:  # a bug must not leave the product claimed forever
            log.exception("unexpected photo failure", extra={"product_id": outcome.product_id})
            outcome.errors.append(f"photo {n}: unexpected {exc.__class__.__name__}: {exc}")
    for outcome in outcomes:
        outcome.photos.sort(key=lambda p: p.n)
    return outcomes


def _delete_stale(rt: Runtime, brand: str, external_id: str, keep: int, previous: int) -> None:
    for n in range(keep + 1, previous + 1):
        try:
            rt.store.delete(original_key(brand, external_id, n))
        except ObjectStorageError:
            log.warning(
                "could not delete a stale original", extra={"key": original_key(brand, external_id, n)}
            )


QUEUE = WorkQueue(
    claim_new=CLAIM_PENDING,
    claim_retry=CLAIM_RETRY,
    mark_ok=MARK_UPLOADED,
    mark_error=MARK_ERROR,
    waiting=PENDING_COUNT,
    ok_result="uploaded",
    failure_message="product photos failed",
)


def _outcomes(
    rows: Sequence[DictRow], rt: Runtime, pool: ThreadPoolExecutor
) -> list[Outcome[ProductOutcome]]:
    outcomes = []
    for row, o in zip(rows, process_chunk(rows, rt, pool), strict=True):
        if o.ok:
            urls = [rt.public_url(p.key) for p in o.photos]
            outcomes.append(Outcome(row, mark=(Jsonb(urls), o.product_id), value=o))
        else:
            outcomes.append(Outcome(row, error="; ".join(o.errors), value=o))
    return outcomes


def run(rt: Runtime, *, retry: bool = False) -> RunSummary:
    """One download_pending (or download_retry) run; returns what it did."""
    s = rt.settings
    summary = RunSummary("download_retry" if retry else "download_pending")

    def uploaded(done: Outcome[ProductOutcome]) -> None:
        o = cast(ProductOutcome, done.value)  # _outcomes sets it on every outcome
        _delete_stale(rt, o.brand, o.external_id, len(o.photos), done.row["previous_count"])
        summary.photos += len(o.photos)
        summary.bytes += sum(p.size_bytes for p in o.photos)
        rt.metrics.photos.labels(o.brand, "uploaded").inc(len(o.photos))

    def failed(done: Outcome[ProductOutcome]) -> None:
        errors = done.value.errors if done.value is not None else []
        rt.metrics.photos.labels(done.row["brand"], "error").inc(max(1, len(errors)))

    with ThreadPoolExecutor(s.concurrent_downloads, "photo") as pool:
        tally = work_through(
            rt.connect,
            QUEUE,
            lambda _conn, rows: _outcomes(rows, rt, pool),
            rt.metrics.stage,
            retry=retry,
            max_attempts=s.max_download_attempts,
            batch_size=s.batch_size,
            chunk_size=s.claim_chunk_size,
            on_ok=uploaded,
            on_error=failed,
        )
    summary.products, summary.uploaded, summary.errors = tally.products, tally.ok, tally.errors
    summary.pending_left, summary.seconds = tally.waiting, tally.seconds
    summary.mbps = summary.bytes * 8 / 1e6 / summary.seconds if summary.seconds > 0 else 0.0
    if summary.products and summary.bytes:
        rt.metrics.speed_mbps.set(summary.mbps)
    log.info("photo download run finished", extra=summary.as_dict())
    return summary


def cleanup_temp_files(rt: Runtime) -> int:
    """Empty ``data_dir`` (keeps the directory); returns the number of entries removed."""
    return empty_dir(rt.settings.data_dir)
