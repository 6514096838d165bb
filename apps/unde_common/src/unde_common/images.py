"""Fetching and checking images for the recognition pipeline (embedder, embed-batch, ximilar-gw,
llm-reranker); needs the ``images`` extra (Pillow).

An image reference is a URL, optionally with a W3C Media Fragment naming a region of it:
``https://.../photo.jpg#xywh=120,40,300,380`` (pixels: x, y, width, height). ximilar-gw's
``/detect`` returns crops this way (``crop_url``): the fragment never travels over HTTP, each
consumer downloads the photo once and cuts the region itself, so no crop store is needed.

The URLs come from callers, so the fetcher must not become a way into the private network
(SSRF). :func:`fetch_image_async` / :func:`fetch_image` follow a :class:`FetchPolicy` (built from
``unde_common.settings.ImageFetchSettings``) at every hop:

1. the scheme is allowed (https; http only where the policy says so), the URL has no userinfo;
2. the host is on the allow-list (Object Storage, the brands' CDNs; ``*.suffix`` for subdomains),
   checked before DNS is asked;
3. the host is resolved here and every address must be public: loopback, private, link-local,
   multicast, reserved, unspecified, shared (CGNAT) and other non-global addresses are refused,
   IPv4-mapped / 6to4 / NAT64 IPv6 forms by the IPv4 address inside them, unless the address lies
   in a network the policy allows (tests, the lab);
4. the request goes to the address that was checked (the URL carries the IP, ``Host`` and TLS SNI
   / certificate check keep the name), so a second DNS answer cannot rebind it;
5. redirects are not followed by httpx: each ``Location`` is checked as in 1-4, at most
   ``max_redirects`` of them.

A refusal names the rule broken, never what an internal target answered (nothing is sent to
it). The body is streamed with ``Accept-Encoding: identity`` and cut off beyond ``max_bytes``;
the header's width x height is checked against ``max_pixels`` before anything is decoded (Pillow
opens lazily), and only the common photo formats are opened. The async variant decodes in a
worker thread so the event loop keeps serving.

Every failure is an :class:`ImageError` carrying the HTTP status a service answers with (422
unreachable, refused or bad URL, 413 too large, 415 not an image) and a message naming the URL.
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import re
import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit, urlunsplit

import httpx
from PIL import Image, UnidentifiedImageError

from unde_common.settings import ImageFetchSettings

if TYPE_CHECKING:
    from unde_common.settings import HttpClientSettings

__all__ = [
    "IMAGE_FORMATS",
    "MAX_PIXELS",
    "FetchPolicy",
    "Hop",
    "ImageError",
    "ImageRef",
    "address_problem",
    "async_image_client",
    "check_url",
    "decode_image",
    "fetch_image",
    "fetch_image_async",
    "jpeg_bytes",
    "pin",
    "system_resolver",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: the settings' defaults (no environment read): the one place FetchPolicy's defaults come from
_DEFAULTS: Final = ImageFetchSettings.model_construct()
#: decompression-bomb guard (the setting's default): pixels an image may have before decoding
MAX_PIXELS: Final[int] = _DEFAULTS.max_image_pixels
#: the formats Pillow may open: photos from phones, catalogs and CDNs (no TIFF, PSD, EPS, ...)
IMAGE_FORMATS: Final = ("JPEG", "PNG", "WEBP", "AVIF", "GIF", "BMP")
_XYWH: Final = re.compile(r"^xywh=(?:pixel:)?(\d+),(\d+),(\d+),(\d+)$")
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")
#: Resolver: (host, port) → the addresses it names (tests give their own; production asks DNS)
Resolver = Callable[[str, int], Sequence[str]]


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


# --------------------------------------------------------------------------- the policy


def system_resolver(host: str, port: int) -> list[str]:
    """The addresses DNS (or /etc/hosts) gives for ``host``, in the system's order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (IPv4-mapped, 6to4, NAT64 well-known prefix)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_problem(ip: IPAddress) -> str | None:
    """Why ``ip`` may not be fetched from (``"loopback"``, ``"link-local"`` ...); None if public."""
    inner = _embedded_ipv4(ip)
    if inner is not None:
        return address_problem(inner)
    if isinstance(ip, ipaddress.IPv6Address) and ip.teredo is not None:
        return "Teredo tunnel"
    for kind, flag in (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
        ("non-public", not ip.is_global),
    ):
        if flag:
            return kind
    return None


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    """What :func:`fetch_image_async` may download (see the module doc); build it with
    :meth:`from_settings`. The defaults are production's: https only, Object Storage only."""

    hosts: tuple[str, ...] = tuple(_DEFAULTS.image_fetch_hosts)
    schemes: frozenset[str] = frozenset(_DEFAULTS.image_fetch_schemes)
    allow_networks: tuple[IPNetwork, ...] = ()
    max_redirects: int = _DEFAULTS.image_fetch_max_redirects
    max_bytes: int = _DEFAULTS.max_image_bytes
    max_pixels: int = MAX_PIXELS
    resolver: Resolver = field(default=system_resolver, compare=False)

    @classmethod
    def from_settings(cls, settings: ImageFetchSettings, *, resolver: Resolver | None = None) -> FetchPolicy:
        return cls(
            hosts=tuple(settings.image_fetch_hosts),
            schemes=frozenset(settings.image_fetch_schemes),
            allow_networks=tuple(
                ipaddress.ip_network(n, strict=False) for n in settings.image_fetch_allow_networks
            ),
            max_redirects=settings.image_fetch_max_redirects,
            max_bytes=settings.max_image_bytes,
            max_pixels=settings.max_image_pixels,
            resolver=resolver or system_resolver,
        )

    def host_allowed(self, host: str) -> bool:
        for entry in self.hosts:
            if entry.startswith("*."):
                if host.endswith(entry[1:]) and len(host) > len(entry) - 1:
                    return True
            elif host == entry:
                return True
        return False

    def address_allowed(self, ip: IPAddress) -> str | None:
        """None when ``ip`` may be fetched from, else the kind of address it is."""
        problem = address_problem(ip)
        if problem is None:
            return None
        candidates = [ip, *([inner] if (inner := _embedded_ipv4(ip)) is not None else [])]
        if any(c in net for c in candidates for net in self.allow_networks if c.version == net.version):
            return None
        return problem


def async_image_client(
    settings: ImageFetchSettings | HttpClientSettings, timeout_s: float
) -> httpx.AsyncClient:
    """The client :func:`fetch_image_async` wants: no redirects of its own, no proxies or .netrc
    from the environment (they would bypass the address pinning), ``timeout_s`` per image."""
    connect = float(getattr(settings, "http_connect_timeout_s", min(timeout_s, 3.0)))
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout_s, connect=connect), follow_redirects=False, trust_env=False
    )


# --------------------------------------------------------------------------- decoding


def _openable() -> tuple[str, ...]:
    """IMAGE_FORMATS that this Pillow build can open (AVIF needs libavif)."""
    Image.init()
    return tuple(f for f in IMAGE_FORMATS if f in Image.OPEN)


def decode_image(
    data: bytes,
    source: str,
    region: tuple[int, int, int, int] | None = None,
    *,
    max_pixels: int = MAX_PIXELS,
) -> Image.Image:
    """Bytes → RGB image (cut to ``region`` if given); ImageError 415/413 when not usable.

    The header is read first (Pillow's ``open`` is lazy): an image of more than ``max_pixels``
    is refused before a pixel is decoded, whatever Pillow's process-wide limit says."""
    try:
        opened = Image.open(io.BytesIO(data), formats=_openable())
        width, height = opened.size
        if width * height > max_pixels:
            raise ImageError(413, f"image {source} is {width}x{height}: more than {max_pixels} pixels")
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


# --------------------------------------------------------------------------- fetching


@dataclass(frozen=True, slots=True)
class Hop:
    """One checked request: the URL as given and where it really goes (the address checked, with
    the original Host header and TLS server name)."""

    url: httpx.URL
    target: httpx.URL
    headers: dict[str, str]
    extensions: dict[str, str]


def _refused(shown: str, rule: str) -> ImageError:
    return ImageError(422, f"image URL {shown[:300]} refused: {rule}")


def check_url(
    url: httpx.URL,
    policy: FetchPolicy,
    shown: str,
    *,
    any_host_when_empty: bool = False,
    host_list: str = "the image host allow-list",
) -> tuple[str, int]:
    """Rules 1-2 (scheme, userinfo, host allow-list) → (host, port) to resolve. A fetcher whose
    host list is optional (photo_downloader: the brands' CDNs are not a known list) passes
    ``any_host_when_empty``; the address rules of :func:`pin` still apply to every host."""
    if url.scheme not in policy.schemes:
        allowed = ", ".join(sorted(policy.schemes))
        raise _refused(shown, f"scheme {url.scheme or 'none'!r} is not allowed (allowed: {allowed})")
    if url.userinfo:
        raise _refused(shown, "credentials in the URL are not allowed")
    host = url.raw_host.decode("ascii", "replace").lower().rstrip(".")
    if not host:
        raise _refused(shown, "the URL has no host")
    if (policy.hosts or not any_host_when_empty) and not policy.host_allowed(host):
        raise _refused(shown, f"host {host[:100]} is not in {host_list}")
    return host, url.port or (443 if url.scheme == "https" else 80)


def pin(url: httpx.URL, host: str, addresses: Sequence[str], policy: FetchPolicy, shown: str) -> Hop:
    """Rules 3-4: every address must be allowed; the request goes to the first one."""
    if not addresses:
        raise ImageError(422, f"image URL {shown[:300]} is unreachable (host {host[:100]} has no address)")
    parsed = [ipaddress.ip_address(a.split("%", 1)[0]) for a in addresses]
    for ip in parsed:
        problem = policy.address_allowed(ip)
        if problem is not None:
            subject = f"address {ip} is" if _is_ip(host) else f"host {host[:100]} resolves to"
            raise _refused(shown, f"{subject} {_article(problem)} address")
    target = url.copy_with(host=str(parsed[0]))
    headers = {"Host": url.netloc.decode("ascii"), "Accept-Encoding": "identity"}
    extensions = {"sni_hostname": host} if url.scheme == "https" else {}
    return Hop(url, target, headers, extensions)


def _article(word: str) -> str:
    return f"an {word}" if word[0] in "aeiouAEIOU" else f"a {word}"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _shown(url: httpx.URL) -> str:
    """The URL as error messages show it: without its userinfo (a password)."""
    return str(url.copy_with(userinfo=b"")) if url.userinfo else str(url)


def _start(ref: ImageRef) -> tuple[httpx.URL, str]:
    try:
        url = httpx.URL(ref.url)
    except httpx.InvalidURL as exc:
        raise ImageError(422, f"image URL is not a valid URL: {exc}") from None
    return url, _shown(url)


def _next_url(hop: Hop, response: httpx.Response, shown: str) -> tuple[httpx.URL, str] | None:
    """The checked hop's redirect target (None when the response is not a redirect)."""
    if response.status_code not in _REDIRECTS or "location" not in response.headers:
        return None
    location = response.headers["location"]
    try:
        nxt = hop.url.join(location).copy_with(fragment=None)
    except (httpx.InvalidURL, ValueError):
        raise _refused(shown, "it redirects to an invalid URL") from None
    return nxt, f"{shown[:200]} (redirected to {_shown(nxt)[:200]})"


def _check_response(response: httpx.Response, url: str, max_bytes: int) -> None:
    if response.status_code != 200:
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
    # the class only: an error's text can carry what the host answered or internal addresses
    return ImageError(422, f"image URL {url[:300]} is unreachable ({exc.__class__.__name__})")


def _resolve(policy: FetchPolicy, host: str, port: int, shown: str) -> Sequence[str]:
    try:
        return policy.resolver(host, port)
    except (OSError, UnicodeError) as exc:
        raise _unreachable(shown, exc) from None


@contextmanager
def _http_errors(shown: str) -> Iterator[None]:
    try:
        yield
    except httpx.HTTPError as exc:
        raise _unreachable(shown, exc) from None


def fetch_image(client: httpx.Client, ref: ImageRef, policy: FetchPolicy) -> Image.Image:
    """Download ``ref`` under ``policy`` (see the module doc) and decode it (:func:`decode_image`)."""
    url, shown = _start(ref)
    for _ in range(policy.max_redirects + 1):
        host, port = check_url(url, policy, shown)
        hop = pin(url, host, _resolve(policy, host, port, shown), policy, shown)
        with _http_errors(shown):
            request = client.build_request("GET", hop.target, headers=hop.headers, extensions=hop.extensions)
            response = client.send(request, stream=True, follow_redirects=False)
            try:
                redirect = _next_url(hop, response, shown)
                if redirect is None:
                    _check_response(response, shown, policy.max_bytes)
                    buf = bytearray()
                    for chunk in response.iter_raw():
                        buf += chunk
                        if len(buf) > policy.max_bytes:
                            raise _too_big(shown, policy.max_bytes)
                    return decode_image(bytes(buf), shown, ref.region, max_pixels=policy.max_pixels)
            finally:
                response.close()
        url, shown = redirect
    raise _refused(shown, f"more than {policy.max_redirects} redirects")


async def fetch_image_async(client: httpx.AsyncClient, ref: ImageRef, policy: FetchPolicy) -> Image.Image:
    """Async :func:`fetch_image`: DNS and decoding run in worker threads."""
    url, shown = _start(ref)
    for _ in range(policy.max_redirects + 1):
        host, port = check_url(url, policy, shown)
        try:  # the lookup is bounded like a connect (a hanging resolver must not hold the request)
            lookup = asyncio.to_thread(_resolve, policy, host, port, shown)
            addresses = await asyncio.wait_for(lookup, timeout=client.timeout.connect or 10.0)
        except TimeoutError:
            raise _unreachable(shown, TimeoutError()) from None
        hop = pin(url, host, addresses, policy, shown)
        with _http_errors(shown):
            request = client.build_request("GET", hop.target, headers=hop.headers, extensions=hop.extensions)
            response = await client.send(request, stream=True, follow_redirects=False)
            try:
                redirect = _next_url(hop, response, shown)
                if redirect is None:
                    _check_response(response, shown, policy.max_bytes)
                    buf = bytearray()
                    async for chunk in response.aiter_raw():
                        buf += chunk
                        if len(buf) > policy.max_bytes:
                            raise _too_big(shown, policy.max_bytes)
                    data = bytes(buf)
                    break
            finally:
                await response.aclose()
        url, shown = redirect
    else:
        raise _refused(shown, f"more than {policy.max_redirects} redirects")
    return await asyncio.to_thread(decode_image, data, shown, ref.region, max_pixels=policy.max_pixels)


def jpeg_bytes(image: Image.Image, *, quality: int = 90, max_side: int = 1024) -> bytes:
    """The image as JPEG (downscaled so its longer side is at most ``max_side``), for provider APIs."""
    if max(image.size) > max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()
