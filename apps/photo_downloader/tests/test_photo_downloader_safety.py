"""The downloader cannot be turned against the private network and a small pixel bomb costs no
memory: photo URLs come from brand pages. A real image host on loopback (loopback is allowed only
where a test says so, as the lab's simulators are), real PNG bombs written row by row."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from photo_downloader import downloader
from photo_downloader.downloader import PhotoError
from photo_downloader.runtime import Runtime
from photo_downloader.settings import PhotoDownloaderSettings
from unde_common.settings import SettingsError
from unde_testkit.apptests import serving
from unde_testkit.testing import PeakRss, png_bomb

MB = 1024 * 1024
LOOPBACK = "127.0.0.1/32"


def jpeg(size: tuple[int, int] = (300, 400)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 40)).save(out, format="JPEG")
    return out.getvalue()


class Host:
    """``/img/<name>`` (a stored image), ``/to?url=`` (302 there), ``/loop`` (302 to itself);
    ``requests`` records (path, Host header) of every request it got."""

    def __init__(self) -> None:
        self.images = {"ok.jpg": jpeg(), "bomb.png": png_bomb(20000)}
        self.requests: list[tuple[str, str]] = []
        self.app = Starlette(
            routes=[Route("/img/{name}", self.image), Route("/to", self.redirect), Route("/loop", self.loop)]
        )

    def _seen(self, request: Request) -> None:
        self.requests.append((request.url.path, request.headers.get("host", "")))

    async def image(self, request: Request) -> Response:
        self._seen(request)
        name = request.path_params["name"]
        if name not in self.images:
            return Response(b"secret internal answer", status_code=404, media_type="text/plain")
        return Response(self.images[name], media_type="image/png" if name.endswith(".png") else "image/jpeg")

    async def redirect(self, request: Request) -> Response:
        self._seen(request)
        return RedirectResponse(request.query_params["url"], status_code=302)

    async def loop(self, request: Request) -> Response:
        self._seen(request)
        return RedirectResponse("/loop", status_code=302)


@pytest.fixture(scope="module")
def host() -> Iterator[tuple[Host, str]]:
    yield from serving(Host())


#: Object Storage is never reached here: every photo is refused before its upload
S3_KEYS = {"s3_access_key": "unused", "s3_secret_key": "unused"}


def runtime(**overrides: Any) -> Runtime:
    values: dict[str, Any] = {"download_timeout": 2, "max_retries": 0, **S3_KEYS, **overrides}
    return Runtime(PhotoDownloaderSettings(**values))


def refused(url: str, rt: Runtime) -> str:
    with pytest.raises(PhotoError) as info:
        downloader.fetch(rt.http, url, rt)
    assert not info.value.retryable, "a refusal is final: download_retry must not try it again"
    return str(info.value)


# ------------------------------------------------------------------------------------- addresses


@pytest.mark.parametrize(
    ("target", "kind"),
    [
        ("http://127.0.0.1:{port}/img/ok.jpg", "loopback"),
        ("http://localhost:{port}/img/ok.jpg", "loopback"),
        ("http://[::ffff:127.0.0.1]:{port}/img/ok.jpg", "loopback"),
        ("http://10.1.0.7:9090/api/v1/targets", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://100.64.0.1/x.jpg", "non-public"),
        ("http://0.0.0.0:{port}/img/ok.jpg", "unspecified"),
    ],
)
def test_a_private_target_is_refused_before_connecting(
    host: tuple[Host, str], target: str, kind: str
) -> None:
    h, base = host
    port = base.rsplit(":", 1)[1]
    before = len(h.requests)
    started = time.monotonic()
    message = refused(target.format(port=port), runtime())  # production settings: nothing allowed
    assert "refused" in message and f"{kind} address" in message, message
    assert len(h.requests) == before, "nothing may be sent to a refused target"
    assert time.monotonic() - started < 1, "refused before any connection attempt"


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.2:{port}/img/ok.jpg",  # loopback, but outside the allowed 127.0.0.1/32
        "http://10.0.0.1/x.jpg",
        "http://169.254.169.254/latest/meta-data/iam/",
        "http://[::1]:{port}/img/ok.jpg",
    ],
)
def test_a_redirect_to_a_private_target_is_refused(host: tuple[Host, str], target: str) -> None:
    h, base = host
    port = base.rsplit(":", 1)[1]
    message = refused(f"{base}/to?url={target.format(port=port)}", runtime(download_allow_networks=LOOPBACK))
    assert "refused" in message and "address" in message, message
    assert h.requests[-1][0] == "/to", "only the allowed first hop was requested"


def test_an_allowed_redirect_is_followed_and_pinned(host: tuple[Host, str]) -> None:
    h, base = host
    rt = runtime(download_allow_networks=LOOPBACK)
    data, ctype = downloader.fetch(rt.http, f"{base}/to?url=/img/ok.jpg", rt)
    assert data == h.images["ok.jpg"] and ctype == "image/jpeg"
    assert h.requests[-1] == ("/img/ok.jpg", base.removeprefix("http://"))  # Host keeps the name
    message = refused(f"{base}/loop", runtime(download_allow_networks=LOOPBACK, download_max_redirects=2))
    assert "more than 2 redirects" in message


def test_other_schemes_credentials_and_unlisted_hosts_are_refused(host: tuple[Host, str]) -> None:
    _h, base = host
    rt = runtime(download_allow_networks=LOOPBACK)
    assert "scheme 'ftp'" in refused("ftp://127.0.0.1/x.jpg", rt)
    assert "credentials" in refused(base.replace("http://", "http://u:secret@") + "/img/ok.jpg", rt)
    listed = runtime(download_allow_networks=LOOPBACK, download_hosts="*.zara.net,static.example.com")
    assert "not in download_hosts" in refused(f"{base}/img/ok.jpg", listed)


def test_bad_policy_settings_are_named() -> None:
    with pytest.raises(SettingsError) as info:
        PhotoDownloaderSettings.load(download_allow_networks="10.0.0.0/33", **S3_KEYS)
    assert "DOWNLOAD_ALLOW_NETWORKS" in str(info.value)
    with pytest.raises(SettingsError) as info:
        PhotoDownloaderSettings.load(download_hosts="cdn.example.com:443", **S3_KEYS)
    assert "DOWNLOAD_HOSTS" in str(info.value)


# ---------------------------------------------------------------------------------- pixel bombs


def test_a_downloaded_pixel_bomb_is_refused_before_decoding(host: tuple[Host, str]) -> None:
    h, base = host
    assert len(h.images["bomb.png"]) < 0.5 * MB  # 400 megapixels in under half a megabyte
    rt = runtime(download_allow_networks=LOOPBACK)
    with PeakRss() as rss, pytest.raises(PhotoError) as info:
        downloader.store_photo(rt.http, rt, "zara", "X1", 1, f"{base}/img/bomb.png")
    assert "too large" in str(info.value) and "400000000 pixels" in str(info.value)
    assert rss.peak < 50 * MB, f"RSS grew by {rss.peak / MB:.0f} MB"


def test_the_pixel_limit_applies_below_the_side_limit() -> None:
    """9000 x 9000 passes the 12000 px side limit and Pillow's own guard (89 M); the setting
    (the image fetcher's 64 M) refuses it from the header: 81 MB of pixels never allocated."""
    rt = runtime()
    bomb = png_bomb(9000)
    with PeakRss() as rss, pytest.raises(PhotoError, match="9000x9000, more than 64000000 pixels"):
        downloader.validate_image(bomb, "image/png", rt)
    assert rss.peak < 50 * MB, f"RSS grew by {rss.peak / MB:.0f} MB"
    small = runtime(photo_max_pixels=100 * 100)
    with pytest.raises(PhotoError, match="more than 10000 pixels"):
        downloader.validate_image(jpeg((120, 120)), "image/jpeg", small)
    assert downloader.validate_image(jpeg((100, 100)), "image/jpeg", small)[1:] == (100, 100)
