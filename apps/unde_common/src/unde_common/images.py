"""Fetching and checking images for the recognition pipeline (embedder, embed-batch, ximilar-gw,
llm-reranker); needs the ``images`` extra (Pillow).

An image reference is a URL, optionally with a W3C Media Fragment naming a region of it:
``https://.../photo.jpg#xywh=120,40,300,380`` (pixels: x, y, width, height). ximilar-gw's
``/detect`` returns crops this way (``crop_url``): the fragment never travels over HTTP, each
consumer downloads the photo once and cuts the region itself, so no crop store is needed.

Every failure is an :class:`ImageError` carrying the HTTP status a service answers with (422
unreachable or bad URL, 413 too large, 415 not an image) and a message naming the URL.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import httpx
from PIL import Image, UnidentifiedImageError

__all__ = [
    "ImageError",
    "ImageRef",
    "decode_image",
    "fetch_image",
    "fetch_image_async",
    "jpeg_bytes",
]

#: decompression-bomb guard: 64 megapixels is far beyond any catalog or phone photo
MAX_PIXELS: Final = 64_000_000
_XYWH: Final = re.compile(r"^xywh=(?:pixel:)?(\d+),(\d+),(\d+),(\d+)$")


class ImageError(ValueError):
    """An image that cannot be used; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class ImageRef:
    """A photo URL and an optional region of it (x, y, width, height in pixels)."""

    url: str
    region: tuple[int, int, int, int] | None = None

    @classmethod
    def parse(cls, value: str) -> ImageRef:
        """``https://host/p.jpg#xywh=1,2,3,4`` → ImageRef; ImageError(422) on a bad URL/fragment."""
        value = value.strip()
        try:
            parts = urlsplit(value)
        except ValueError as exc:
            raise ImageError(422, f"image URL {value[:200]!r} is not a valid URL: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ImageError(422, f"image URL {value[:200]!r} must be an absolute http(s) URL")
        region = None
        if parts.fragment:
            match = _XYWH.match(parts.fragment)
            if match is None:
                raise ImageError(
                    422, f"image URL fragment #{parts.fragment[:100]} is not a region (#xywh=x,y,w,h)"
                )
            x, y, w, h = (int(g) for g in match.groups())
            if w == 0 or h == 0:
                raise ImageError(422, f"image region #{parts.fragment} is empty")
            region = (x, y, w, h)
        return cls(urlunsplit((parts.scheme, parts.netloc, parts.path, parts.query, "")), region)

    def with_region(self, region: tuple[int, int, int, int]) -> str:
        """The reference string of ``region`` of this photo."""
        x, y, w, h = region
        return f"{self.url}#xywh={x},{y},{w},{h}"

    def __str__(self) -> str:
        return self.with_region(self.region) if self.region else self.url


def decode_image(data: bytes, source: str, region: tuple[int, int, int, int] | None = None) -> Image.Image:
    """Bytes → RGB image (cut to ``region`` if given); ImageError 415/413 when not usable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data))
            if opened.width * opened.height > MAX_PIXELS:
                raise ImageError(
                    413, f"image {source} is {opened.width}x{opened.height}: more than {MAX_PIXELS} pixels"
                )
            opened.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(413, f"image {source} is too large to decode: {exc}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(415, f"{source} is not a decodable image ({exc.__class__.__name__})") from None
    image: Image.Image = opened.convert("RGB")
    if region is not None:
        x, y, w, h = region
        if x >= image.width or y >= image.height:
            size = f"{image.width}x{image.height}"
            raise ImageError(422, f"region {region} lies outside the {size} image {source}")
        image = image.crop((x, y, min(x + w, image.width), min(y + h, image.height)))
    return image


def _check_response(response: httpx.Response, url: str, max_bytes: int) -> None:
    if response.status_code >= 400:
        raise ImageError(422, f"image URL {url} answered HTTP {response.status_code}")
    ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype and not ctype.startswith("image/") and ctype != "application/octet-stream":
        raise ImageError(415, f"image URL {url} returned {ctype}, not an image")
    length = response.headers.get("content-length")
    if length and length.isdigit() and int(length) > max_bytes:
        raise ImageError(413, f"image URL {url} is {int(length)} bytes; the limit is {max_bytes}")


def _too_big(url: str, max_bytes: int) -> ImageError:
    return ImageError(413, f"image URL {url} is larger than the {max_bytes} byte limit")


def _unreachable(url: str, exc: Exception) -> ImageError:
    return ImageError(422, f"image URL {url} is unreachable ({exc.__class__.__name__}: {exc})"[:500])


def fetch_image(client: httpx.Client, ref: ImageRef, *, max_bytes: int) -> Image.Image:
    """Download ``ref`` (streamed, at most ``max_bytes``) and decode it (see :func:`decode_image`)."""
    try:
        with client.stream("GET", ref.url) as response:
            _check_response(response, ref.url, max_bytes)
            buf = bytearray()
            for chunk in response.iter_bytes():
                buf += chunk
                if len(buf) > max_bytes:
                    raise _too_big(ref.url, max_bytes)
    except httpx.HTTPError as exc:
        raise _unreachable(ref.url, exc) from None
    return decode_image(bytes(buf), ref.url, ref.region)


async def fetch_image_async(client: httpx.AsyncClient, ref: ImageRef, *, max_bytes: int) -> Image.Image:
    """Async :func:`fetch_image`."""
    try:
        async with client.stream("GET", ref.url) as response:
            _check_response(response, ref.url, max_bytes)
            buf = bytearray()
            async for chunk in response.aiter_bytes():
                buf += chunk
                if len(buf) > max_bytes:
                    raise _too_big(ref.url, max_bytes)
    except httpx.HTTPError as exc:
        raise _unreachable(ref.url, exc) from None
    return decode_image(bytes(buf), ref.url, ref.region)


def jpeg_bytes(image: Image.Image, *, quality: int = 90, max_side: int = 1024) -> bytes:
    """The image as JPEG (downscaled so its longer side is at most ``max_side``), for provider APIs."""
    if max(image.size) > max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()
