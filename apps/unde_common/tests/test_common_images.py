"""The safe image fetcher (unde_common.images): scheme / host allow-lists, addresses checked after
DNS and pinned for the request, redirects checked hop by hop, size and pixel limits before
decoding. Nothing is ever sent to a non-loopback address: the refusals of 10.x, 169.254.169.254
and friends are proven by a transport that records every request it is handed (and fails the
test if one arrives), and by a resolver that records every lookup."""

from __future__ import annotations

import asyncio
import datetime
import io
import ipaddress
import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from unde_common.images import (
    MAX_PIXELS,
    FetchPolicy,
    ImageError,
    ImageRef,
    address_problem,
    decode_image,
    fetch_image,
    fetch_image_async,
    system_resolver,
)
from unde_common.settings import ImageFetchSettings, SettingsError
from unde_testkit.recognition_testbed import LOOPBACK_IMAGE_FETCH, serve_asgi
from unde_testkit.testing import PeakRss, png_bomb

MB = 1024 * 1024


def png(size: tuple[int, int], colour: tuple[int, int, int] = (200, 30, 40), fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format=fmt)
    return out.getvalue()


class Host:
    """An image host on loopback: ``/img/<name>``, ``/to?url=`` (302 there), ``/loop`` (302 to
    itself). ``requests`` records (path, Host header) of each request it got."""

    def __init__(self) -> None:
        self.images: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self.app = Starlette(
            routes=[
                Route("/img/{name}", self.image),
                Route("/to", self.redirect),
                Route("/loop", self.loop),
            ]
        )

    def _seen(self, request: Request) -> None:
        self.requests.append((request.url.path, request.headers.get("host", "")))

    async def image(self, request: Request) -> Response:
        self._seen(request)
        data = self.images.get(request.path_params["name"])
        if data is None:
            return Response(b"secret internal answer", status_code=404, media_type="text/plain")
        return Response(data, media_type="image/png")

    async def redirect(self, request: Request) -> Response:
        self._seen(request)
        return RedirectResponse(request.query_params["url"], status_code=302)

    async def loop(self, request: Request) -> Response:
        self._seen(request)
        return RedirectResponse("/loop", status_code=302)


class Recorder(httpx.AsyncBaseTransport):
    """Records the URL of every request; forwards it to ``inner``, or fails the test without one."""

    def __init__(self, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self.urls: list[str] = []
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.urls.append(str(request.url))
        if self.inner is None:
            raise AssertionError(f"a request was sent to {request.url}")
        return await self.inner.handle_async_request(request)


class Lookups:
    """A resolver answering from a table (``None``: the system's), recording every lookup."""

    def __init__(self, table: dict[str, list[str]] | None = None) -> None:
        self.table = table
        self.asked: list[str] = []

    def __call__(self, host: str, port: int) -> Sequence[str]:
        self.asked.append(host)
        return self.table[host] if self.table is not None else system_resolver(host, port)


def policy(**overrides: Any) -> FetchPolicy:
    """The policy of the tests' settings (loopback allowed) with ``overrides``."""
    settings = ImageFetchSettings.load(**LOOPBACK_IMAGE_FETCH)
    base = FetchPolicy.from_settings(settings)
    return FetchPolicy(**{**{f: getattr(base, f) for f in base.__dataclass_fields__}, **overrides})


def fetch(ref: str, pol: FetchPolicy, transport: httpx.AsyncBaseTransport | None = None) -> Image.Image:
    async def main() -> Image.Image:
        client = httpx.AsyncClient(transport=transport, follow_redirects=False, trust_env=False, timeout=5)
        async with client:
            return await fetch_image_async(client, ImageRef.parse(ref), pol)

    return asyncio.run(main())


def refused(ref: str, pol: FetchPolicy, transport: httpx.AsyncBaseTransport | None = None) -> ImageError:
    with pytest.raises(ImageError) as info:
        fetch(ref, pol, transport)
    return info.value


@pytest.fixture(scope="module")
def host() -> Iterator[tuple[Host, str]]:
    h = Host()
    h.images["ok.png"] = png((64, 48))
    h.images["bomb.png"] = png_bomb(20000)
    h.images["big.png"] = png_bomb(5000)
    with serve_asgi(h.app) as url:
        yield h, url


# ----------------------------------------------------------------------------- addresses


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.9", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("::ffff:169.254.169.254", "link-local"),  # IPv4-mapped
        ("::ffff:127.0.0.1", "loopback"),
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("0.0.0.0", "unspecified"),  # noqa: S104 (an address under test, nothing binds it)
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "non-public"),  # shared address space (CGNAT)
        ("fd00::1", "private"),
    ],
)
def test_non_public_addresses_are_named(address: str, kind: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) == kind


def test_public_addresses_pass() -> None:
    for address in ("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "::ffff:93.184.216.34"):
        assert address_problem(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://10.1.2.3/x.png", "private"),
        ("http://169.254.169.254/latest/meta-data/iam/security-credentials/", "link-local"),
        ("http://[::ffff:169.254.169.254]/latest/meta-data/", "link-local"),
        ("http://[fd00::1]/x.png", "private"),
        ("http://0.0.0.0:8080/x.png", "unspecified"),
        ("http://100.64.0.1/x.png", "non-public"),
    ],
)
def test_private_and_metadata_targets_are_refused_before_any_request(url: str, kind: str) -> None:
    # the host allow-list names the address, so what refuses it is the address rule itself
    target = httpx.URL(url).host
    recorder = Recorder()
    pol = policy(hosts=(target, "127.0.0.1"))
    error = refused(url, pol, recorder)
    assert error.status == 422 and f"{kind} address" in error.message and "refused" in error.message
    assert recorder.urls == []  # nothing was sent: refused at validation, before connecting


def test_loopback_is_refused_by_the_production_rules(host: tuple[Host, str]) -> None:
    h, url = host
    before = len(h.requests)
    pol = policy(allow_networks=())  # production: no network allowed beyond the public ones
    error = refused(f"{url}/img/ok.png", pol)
    assert "address 127.0.0.1 is a loopback address" in error.message
    assert len(h.requests) == before  # the loopback host never saw the request


def test_a_name_resolving_to_a_private_address_is_refused() -> None:
    recorder = Recorder()
    for answer in (["10.0.0.7"], ["93.184.216.34", "127.0.0.1"]):  # any bad address refuses
        lookups = Lookups({"images.example": answer})
        pol = policy(hosts=("images.example",), allow_networks=(), resolver=lookups)
        error = refused("http://images.example/p.jpg", pol, recorder)
        assert "host images.example resolves to a" in error.message
        assert answer[-1] not in error.message  # the internal address is not echoed
        assert lookups.asked == ["images.example"]
    assert recorder.urls == []


def test_hosts_off_the_allow_list_are_refused_before_dns() -> None:
    lookups, recorder = Lookups({}), Recorder()
    pol = policy(hosts=("hel1.your-objectstorage.com", "*.zara.net"), resolver=lookups)
    for url in ("http://metadata.google.internal/x", "http://localhost/x.png", "http://zara.net.evil.test/x"):
        error = refused(url, pol, recorder)
        assert "not in the image host allow-list" in error.message
    assert lookups.asked == [] and recorder.urls == []
    assert pol.host_allowed("static.zara.net") and pol.host_allowed("a.b.zara.net")
    assert not pol.host_allowed("zara.net") and not pol.host_allowed("evilzara.net")


def test_schemes_and_credentials() -> None:
    recorder = Recorder()
    https_only = policy(schemes=frozenset({"https"}), hosts=("images.example",))
    assert (
        "scheme 'http' is not allowed" in refused("http://images.example/a.png", https_only, recorder).message
    )
    with_user = refused("https://user:pw@images.example/a.png", https_only, recorder)
    assert "credentials in the URL" in with_user.message and "pw" not in with_user.message
    assert recorder.urls == []


def test_the_request_goes_to_the_checked_address(host: tuple[Host, str]) -> None:
    """DNS is asked once per hop and the connection goes to the address that was checked, with the
    name kept in Host: ``images.example`` exists only in the test's resolver, so a second lookup
    by the HTTP client would fail."""
    h, url = host
    port = httpx.URL(url).port
    lookups = Lookups({"images.example": ["127.0.0.1"]})
    pol = policy(hosts=("images.example",), resolver=lookups)
    recorder = Recorder(httpx.AsyncHTTPTransport())
    image = fetch(f"http://images.example:{port}/img/ok.png#xywh=0,0,10,20", pol, recorder)
    assert image.size == (10, 20) and image.getpixel((0, 0)) == (200, 30, 40)
    assert recorder.urls == [f"http://127.0.0.1:{port}/img/ok.png"]
    assert h.requests[-1] == ("/img/ok.png", f"images.example:{port}")
    assert lookups.asked == ["images.example"]


# ----------------------------------------------------------------------------- redirects


def test_a_redirect_to_the_metadata_address_is_not_followed(host: tuple[Host, str]) -> None:
    _h, url = host
    recorder = Recorder(httpx.AsyncHTTPTransport())
    # even with 169.254.169.254 on the host allow-list, the address rule refuses the hop
    pol = policy(hosts=("127.0.0.1", "169.254.169.254"))
    metadata = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
    error = refused(f"{url}/to?url={metadata}", pol, recorder)
    assert error.status == 422
    assert "redirected to http://169.254.169.254/" in error.message and "link-local address" in error.message
    assert recorder.urls == [f"{url}/to?url={metadata}"]  # the loopback hop only
    assert {httpx.URL(u).host for u in recorder.urls} == {"127.0.0.1"}


def test_redirects_within_the_rules_are_followed_and_bounded(host: tuple[Host, str]) -> None:
    h, url = host
    image = fetch(f"{url}/to?url=/img/ok.png", policy())
    assert image.size == (64, 48)
    before = len(h.requests)
    error = refused(f"{url}/loop", policy(max_redirects=2))
    assert "more than 2 redirects" in error.message
    assert len(h.requests) - before == 3  # the first request and two redirects, nothing more


def test_an_error_names_the_rule_not_the_answer(host: tuple[Host, str]) -> None:
    _h, url = host
    missing = refused(f"{url}/img/none.png", policy())
    assert "answered HTTP 404" in missing.message and "secret internal answer" not in missing.message
    dead = refused("http://127.0.0.1:9/x.png", policy())
    assert "unreachable (ConnectError)" in dead.message and "Errno" not in dead.message


# ----------------------------------------------------------------------------- size and pixels


def test_a_pixel_bomb_is_refused_before_decoding(host: tuple[Host, str]) -> None:
    h, url = host
    assert len(h.images["bomb.png"]) < 0.5 * MB  # 400 megapixels in under half a megabyte
    with PeakRss() as rss:
        error = refused(f"{url}/img/bomb.png", policy())
    # Pillow's own guard or the policy's limit: either way from the header, before decoding
    assert error.status == 413 and ("20000x20000" in error.message or "400000000 pixels" in error.message)
    assert rss.peak < 50 * MB, f"RSS grew by {rss.peak / MB:.0f} MB"


def test_the_pixel_limit_is_per_call_not_pillows(host: tuple[Host, str]) -> None:
    """25 megapixels is under Pillow's own limit (89 M); the policy's smaller limit refuses it
    from the header, so the 25 MB of pixels (75 MB as RGB) are never allocated."""
    _h, url = host
    assert Image.MAX_IMAGE_PIXELS is not None and 5000 * 5000 < Image.MAX_IMAGE_PIXELS < MAX_PIXELS * 2
    with PeakRss() as rss:
        error = refused(f"{url}/img/big.png", policy(max_pixels=10_000_000))
    assert error.status == 413 and "more than 10000000 pixels" in error.message
    assert rss.peak < 50 * MB, f"RSS grew by {rss.peak / MB:.0f} MB"
    with pytest.raises(ImageError, match="more than 100 pixels"):
        decode_image(png((20, 20)), "small", max_pixels=100)
    assert decode_image(png((20, 20)), "small", max_pixels=400).size == (20, 20)


def test_size_limit_while_streaming(host: tuple[Host, str]) -> None:
    _h, url = host
    error = refused(f"{url}/img/bomb.png", policy(max_bytes=100_000))
    assert error.status == 413 and "the limit is 100000" in error.message  # from Content-Length


def test_only_photo_formats_are_opened() -> None:
    with pytest.raises(ImageError) as info:
        decode_image(png((8, 8), fmt="TIFF"), "t.tif")
    assert info.value.status == 415
    assert decode_image(png((8, 8), fmt="JPEG"), "j.jpg").size == (8, 8)


def test_a_normal_image_is_fetched(host: tuple[Host, str]) -> None:
    _h, url = host
    image = fetch(f"{url}/img/ok.png", policy())
    assert image.mode == "RGB" and image.size == (64, 48) and image.getpixel((5, 5)) == (200, 30, 40)


def test_the_sync_fetcher_follows_the_same_rules(host: tuple[Host, str]) -> None:
    _h, url = host
    with httpx.Client(follow_redirects=False, trust_env=False, timeout=5) as client:
        assert fetch_image(client, ImageRef.parse(f"{url}/to?url=/img/ok.png"), policy()).size == (64, 48)
        with pytest.raises(ImageError, match="link-local address"):
            metadata = ImageRef.parse(f"{url}/to?url=http://169.254.169.254/")
            fetch_image(client, metadata, policy(hosts=("127.0.0.1", "169.254.169.254")))
        with pytest.raises(ImageError, match="loopback address"):
            fetch_image(client, ImageRef.parse(f"{url}/img/ok.png"), policy(allow_networks=()))


# ----------------------------------------------------------------------------- settings


def test_the_production_defaults_refuse_everything_but_object_storage() -> None:
    settings = ImageFetchSettings.load()
    pol = FetchPolicy.from_settings(settings)
    assert pol.schemes == {"https"} and pol.hosts == ("hel1.your-objectstorage.com",)
    assert pol.allow_networks == () and pol.max_pixels == MAX_PIXELS and pol.max_bytes == 20 * MB
    assert FetchPolicy() == pol  # the dataclass defaults are the settings' defaults


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("image_fetch_schemes", "ftp"),
        ("image_fetch_allow_networks", "10.0.0.0/99"),
        ("image_fetch_hosts", "example.com:8080"),
        ("image_fetch_hosts", "http://example.com"),
    ],
)
def test_bad_image_fetch_settings_are_refused(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as info:
        ImageFetchSettings.load(**{name: value})
    assert name.upper() in info.value.problems


def test_settings_values_are_parsed() -> None:
    settings = ImageFetchSettings.load(
        image_fetch_hosts="Static.Zara.NET., *.cdn.example, [::1]",
        image_fetch_schemes="https,http",
        image_fetch_allow_networks="198.18.0.0/15,::1/128",
    )
    pol = FetchPolicy.from_settings(settings)
    assert pol.hosts == ("static.zara.net", "*.cdn.example", "::1")
    assert pol.address_allowed(ipaddress.ip_address("198.19.0.4")) is None
    assert pol.address_allowed(ipaddress.ip_address("::ffff:198.18.0.1")) is None
    assert pol.address_allowed(ipaddress.ip_address("10.0.0.1")) == "private"


# ----------------------------------------------------------------------------- TLS with a pinned address


def _tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate for ``images.example`` signed by it: (ca.pem, cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def build(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, signer: Any, ca: bool) -> Any:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "UNDE test CA")])
    ca_cert = build("UNDE test CA", ca_key, ca_name, ca_key, True)
    leaf = build("images.example", leaf_key, ca_name, ca_key, False)
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


@pytest.fixture(scope="module")
def tls_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Host, int, Path]]:
    import uvicorn

    from unde_testkit.testing import free_port

    ca, cert, key = _tls_files(tmp_path_factory.mktemp("tls"))
    h = Host()
    h.images["ok.png"] = png((32, 16))
    port = free_port()
    config = uvicorn.Config(
        h.app, host="127.0.0.1", port=port, ssl_certfile=str(cert), ssl_keyfile=str(key), log_config=None
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield h, port, ca
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_https_to_the_pinned_address_checks_the_certificate_for_the_name(
    tls_host: tuple[Host, int, Path],
) -> None:
    """The connection goes to the checked IP, while TLS sends the name (SNI) and verifies the
    certificate against it: a name the certificate does not cover fails, pinning never skips it."""
    h, port, ca = tls_host
    lookups = Lookups({"images.example": ["127.0.0.1"], "other.example": ["127.0.0.1"]})
    pol = policy(hosts=("images.example", "other.example"), schemes=frozenset({"https"}), resolver=lookups)
    context = ssl.create_default_context(cafile=str(ca))

    async def get(url: str) -> Image.Image:
        async with httpx.AsyncClient(verify=context, trust_env=False, timeout=5) as client:
            return await fetch_image_async(client, ImageRef.parse(url), pol)

    assert asyncio.run(get(f"https://images.example:{port}/img/ok.png")).size == (32, 16)
    assert h.requests[-1] == ("/img/ok.png", f"images.example:{port}")
    with pytest.raises(ImageError, match="unreachable"):
        asyncio.run(get(f"https://other.example:{port}/img/ok.png"))
    assert len(h.requests) == 1  # the mismatching name never got past the handshake
