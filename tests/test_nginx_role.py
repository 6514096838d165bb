"""roles/nginx, the user entry on local-app, checked on this machine (no lab):

* the rendered values come from the one place each lives: ports from the registry
  (group_vars/all/services.yml), the voice servers' private addresses from the inventory, the body
  limit from group_vars/all/entry.yml, which equals the gateway's own upload limit;
* ``nginx.conf`` rendered by Ansible's templating engine for the lab's local-app passes the real
  ``nginx -t`` of this machine's nginx (the role's ``validate:`` runs the same on the host), for
  each certificate source;
* for real: that configuration (ports, paths and certificate moved under a temporary directory)
  runs in Debian's nginx in front of a stand-in gateway and a stand-in voice WebSocket server:
  port 80 redirects with 301 and serves ACME challenges, HTTPS negotiates HTTP/2 and carries HSTS
  and the security headers once each, the proxy headers reach the gateway (a forged
  X-Forwarded-For is replaced), the gateway connections are kept alive, an oversize body is a JSON
  413 that never reaches the gateway, a dead gateway is a JSON 503 with Retry-After, the WebSocket
  location upgrades and relays frames both ways, the access log is JSON; ``testssl.sh`` against it
  finds only TLS 1.2/1.3, Mozilla's ciphers, HSTS and nothing above LOW;
* the hardening drop-in merged into the package's unit passes ``systemd-analyze verify`` and rates
  at most unit_security's bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import http.server
import importlib.util
import json
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
import yaml
from ansible.inventory.manager import InventoryManager  # type: ignore[import-untyped]
from ansible.parsing.dataloader import DataLoader  # type: ignore[import-untyped]
from ansible.plugins.loader import init_plugin_loader  # type: ignore[import-untyped]
from ansible.template import Templar, trust_as_template  # type: ignore[import-untyped]
from ansible.vars.hostvars import HostVars  # type: ignore[import-untyped]
from ansible.vars.manager import VariableManager  # type: ignore[import-untyped]
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from support import REPO
from unde_testkit.testing import free_port
from unde_tools import unit_security
from unde_tools.lab_vault import _ca_certificate, _ca_crl, _pem_key

ROLE = REPO / "roles" / "nginx"
LAB_INVENTORY = REPO / "inventories" / "lab" / "hosts.yml"
HOST = "local-app"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
TESTSSL = shutil.which("testssl") or shutil.which("testssl.sh")
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
PACKAGE_UNIT = Path("/lib/systemd/system/nginx.service")
needs_nginx = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (Debian package nginx-light)")
pytestmark = pytest.mark.timeout(600)


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@functools.cache
def _nginx_versions() -> tuple[str, str]:
    """(nginx, OpenSSL) versions of this machine's nginx, read as the role reads them on a host."""
    if NGINX is None:
        return "1.22.1", "3.0.0"
    out = subprocess.run([NGINX, "-V"], capture_output=True, text=True, check=True).stderr
    nginx = re.search(r"nginx/([0-9.]+)", out)
    openssl = re.search(r"running with OpenSSL ([0-9.]+)", out) or re.search(
        r"built with OpenSSL ([0-9.]+)", out
    )
    assert nginx and openssl, out
    return nginx.group(1), openssl.group(1)


@functools.cache
def _inventory() -> tuple[Any, Any, Any]:
    init_plugin_loader()
    loader = DataLoader()
    inventory = InventoryManager(loader=loader, sources=[str(LAB_INVENTORY)])
    return loader, inventory, VariableManager(loader=loader, inventory=inventory)


class Role:
    """roles/nginx's variables for the lab's local-app (defaults < inventory < distribution and
    role vars < overrides), rendered by Ansible's own templating engine. The vault is not
    decrypted: the credentials the role reads are given as overrides."""

    def __init__(self, **overrides: Any) -> None:
        loader, inventory, variables = _inventory()
        host_vars = variables.get_vars(host=inventory.get_host(HOST), include_hostvars=True)
        host_vars["hostvars"] = HostVars(inventory=inventory, variable_manager=variables, loader=loader)
        nginx, openssl = _nginx_versions()
        data = {
            **loader.load_from_file(str(ROLE / "defaults" / "main.yml"), trusted_as_template=True),
            **host_vars,
            **loader.load_from_file(str(ROLE / "vars" / "Debian.yml"), trusted_as_template=True),
            **loader.load_from_file(str(ROLE / "vars" / "main.yml"), trusted_as_template=True),
            "ansible_managed": "Ansible managed",
            "role_path": str(ROLE),
            "__nginx_version": nginx,
            "__nginx_openssl_version": openssl,
            "unde_tls_certificate": "",
            "unde_tls_private_key": "",
            **overrides,
        }
        self.templar = Templar(loader=loader, variables=data)

    def value(self, expression: str) -> Any:
        return self.templar.template(trust_as_template("{{ " + expression + " }}"))

    def template(self, name: str = "nginx.conf.j2") -> str:
        return str(self.templar.template(trust_as_template((ROLE / "templates" / name).read_text())))


# ----------------------------------------------------------------------------- one source each


def test_ports_and_addresses_come_from_the_registry_and_the_inventory() -> None:
    services = _yaml(REPO / "group_vars" / "all" / "services.yml")["unde_services"]
    r = Role()
    conf = r.template()
    https, http, gateway, voice = (
        services[name]["port"]
        for name in ("api_gateway_https", "api_gateway_http", "api_gateway_app", "voice_ws")
    )
    voice_ip = r.value("hostvars['local-voice'].private_ip")
    app_ip = r.value("hostvars['local-app'].private_ip")
    assert f"listen 0.0.0.0:{https} ssl" in conf
    assert f"listen 0.0.0.0:{http} default_server;" in conf
    assert f"server {app_ip}:{gateway};" in conf
    assert f"server {voice_ip}:{voice};" in conf
    assert re.search(r"location = /api/v1/voice/stream \{\s+proxy_pass http://voice_ws/stream;", conf)
    # no port literal in the role: every port is a registry lookup
    for path in sorted(ROLE.rglob("*")):
        if path.is_file() and path.suffix in (".yml", ".j2"):
            for port in (https, http, gateway, voice):
                assert not re.search(rf"(?<![\d.]){port}(?!\d)", path.read_text()), f"{path}: literal {port}"


def test_the_body_limit_is_the_gateways_upload_limit() -> None:
    entry = _yaml(REPO / "group_vars" / "all" / "entry.yml")
    r = Role()
    limit = int(r.value("nginx_client_max_body_size"))
    assert limit == (
        entry["unde_upload_max_photo_bytes"]
        + entry["unde_upload_max_thumb_bytes"]
        + entry["unde_upload_multipart_overhead_bytes"]
    )
    assert f"client_max_body_size {limit};" in r.template()
    # the gateway's own defaults (what it refuses with 413 itself) are the same numbers
    from api_gateway import media_store
    from api_gateway.media_settings import MediaSettings

    fields = MediaSettings.model_fields
    assert fields["media_max_photo_bytes"].default == entry["unde_upload_max_photo_bytes"]
    assert fields["media_max_thumb_bytes"].default == entry["unde_upload_max_thumb_bytes"]
    assert entry["unde_upload_multipart_overhead_bytes"] == media_store.MULTIPART_OVERHEAD


def test_tls_profile_is_mozilla_intermediate() -> None:
    conf = Role().template()
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in conf
    ciphers = re.search(r"ssl_ciphers (\S+);", conf)
    assert ciphers and ciphers.group(1).split(":") == MOZILLA_INTERMEDIATE
    assert "ssl_prefer_server_ciphers off;" in conf
    assert "server_tokens off;" in conf
    assert 'add_header Strict-Transport-Security "max-age=63072000; includeSubDomains" always;' in conf
    assert "ssl_dhparam" not in conf  # no DHE suite, so no DH parameters


@pytest.mark.parametrize(
    ("nginx", "openssl", "http2", "tickets_off", "mlkem"),
    [("1.22.1", "3.0.15", False, True, False), ("1.26.3", "3.5.1", True, False, True)],
)
def test_the_config_follows_the_installed_versions(
    nginx: str, openssl: str, http2: bool, tickets_off: bool, mlkem: bool
) -> None:
    """bookworm's 1.22 (`listen ... ssl http2`, tickets off) and trixie's 1.26 with OpenSSL 3.5
    (`http2 on`, the post-quantum group first)."""
    conf = Role(__nginx_version=nginx, __nginx_openssl_version=openssl).template()
    assert ("http2 on;" in conf) is http2
    assert ("ssl http2 default_server;" in conf) is not http2
    assert ("ssl_session_tickets off;" in conf) is tickets_off
    curves = re.search(r"ssl_ecdh_curve (\S+);", conf)
    assert curves
    assert curves.group(1) == ("X25519MLKEM768:" if mlkem else "") + "X25519:prime256v1:secp384r1"


MOZILLA_INTERMEDIATE = [
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
]


# ----------------------------------------------------------------------------- certificates


@dataclass(frozen=True)
class Pki:
    """A CA like the lab entry CA (tools/unde_tools/lab_vault.py) and a leaf like the role's lab
    certificate (short-lived, SANs, a CRL distribution point)."""

    ca_key: str
    ca_cert: str
    ca_crl: str
    cert: str
    key: str


@functools.cache
def _pki() -> Pki:
    ca_key = _pem_key()
    ca_cert = _ca_certificate(ca_key, "entry_ca")
    key = ec.generate_private_key(ec.SECP256R1())
    ca = serialization.load_pem_private_key(ca_key.encode(), password=None)
    assert isinstance(ca, ec.EllipticCurvePrivateKey)
    issuer = x509.load_pem_x509_certificate(ca_cert.encode()).subject
    now = datetime.datetime.now(datetime.UTC)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=89))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.DNSName(HOST)]), critical=False
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        )
        .add_extension(
            x509.CRLDistributionPoints(
                [
                    x509.DistributionPoint(
                        [x509.UniformResourceIdentifier("http://localhost/crl")], None, None, None
                    )
                ]
            ),
            critical=False,
        )
        .sign(ca, hashes.SHA256())
    )
    return Pki(
        ca_key=ca_key,
        ca_cert=ca_cert,
        ca_crl=_ca_crl(ca_key, ca_cert),
        cert=leaf.public_bytes(serialization.Encoding.PEM).decode(),
        key=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
    )


def test_lab_vault_makes_the_entry_ca_and_its_crl() -> None:
    pki = _pki()
    crl = x509.load_pem_x509_crl(pki.ca_crl.encode())
    ca = x509.load_pem_x509_certificate(pki.ca_cert.encode())
    assert crl.issuer == ca.subject and len(list(crl)) == 0
    assert crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- nginx -t, for real


@dataclass
class Site:
    """A rendered configuration moved under ``root``: the paths the role uses on a host, the ports
    free ones of this machine."""

    root: Path
    conf: Path
    https: int
    http: int
    gateway: int
    voice: int
    ca: Path
    access_log: Path


def _site(root: Path, source: str = "vault", **overrides: Any) -> Site:
    pki = _pki()
    tls = root / "tls"
    tls.mkdir(parents=True, exist_ok=True)
    (tls / "entry.crt").write_text(pki.cert)
    (tls / "entry.key").write_text(pki.key)
    (tls / "entry-ca.crl").write_text(pki.ca_crl)
    (root / "ca.pem").write_text(pki.ca_cert)
    for sub in ("log", "lib", "run", "acme/.well-known/acme-challenge"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    ports = {name: free_port() for name in ("https", "http", "gateway", "voice")}
    values: dict[str, Any] = {
        "nginx_tls_source": source,
        "nginx_tls_dir": str(tls),
        "nginx_tls_certificate": pki.cert,
        "nginx_tls_private_key": pki.key,
        "nginx_lab_ca_certificate": pki.ca_cert,
        "nginx_lab_ca_key": pki.ca_key,
        "nginx_lab_ca_crl": pki.ca_crl,
        "nginx_acme_webroot": str(root / "acme"),
        "nginx_acme_certificate_path": str(tls / "entry.crt"),
        "nginx_acme_private_key_path": str(tls / "entry.key"),
        "nginx_access_log": str(root / "log" / "access.json"),
        "nginx_error_log": str(root / "log" / "error.log"),
        "nginx_listen_addresses": ["127.0.0.1"],
        "nginx_https_port": ports["https"],
        "nginx_http_port": ports["http"],
        "nginx_gateway_address": "127.0.0.1",
        "nginx_gateway_port": ports["gateway"],
        "nginx_voice_addresses": ["127.0.0.1"],
        "nginx_voice_ws_port": ports["voice"],
        "nginx_worker_processes": 2,
        "__nginx_state_dir": str(root / "lib"),
        # workers as this test's user: they read and write the temporary directory
        "__nginx_user": "root",
        "__nginx_group": "root",
        "__nginx_run_dir": str(root / "run"),
        **overrides,
    }
    conf = root / "nginx.conf"
    conf.write_text(Role(**values).template())
    return Site(root, conf, ports["https"], ports["http"], ports["gateway"], ports["voice"], root / "ca.pem",
                root / "log" / "access.json")  # fmt: skip


def _nginx_t(conf: Path) -> subprocess.CompletedProcess[str]:
    assert NGINX
    return subprocess.run(
        [NGINX, "-t", "-q", "-p", str(conf.parent), "-c", str(conf)],
        capture_output=True,
        text=True,
        check=False,
    )


@needs_nginx
@pytest.mark.parametrize("source", ["vault", "lab", "acme"])
def test_rendered_config_passes_nginx_t(tmp_path: Path, source: str) -> None:
    site = _site(tmp_path, source)
    checked = _nginx_t(site.conf)
    assert checked.returncode == 0, checked.stderr + site.conf.read_text()


@needs_nginx
def test_nginx_t_refuses_a_broken_config(tmp_path: Path) -> None:
    """What the role's validate step relies on: a bad file is refused (the old one stays)."""
    site = _site(tmp_path)
    site.conf.write_text(site.conf.read_text().replace("ssl_protocols", "ssl_protocolz", 1))
    assert _nginx_t(site.conf).returncode != 0


def test_the_template_is_validated_whole_and_reloads() -> None:
    tasks = _yaml(ROLE / "tasks" / "configure.yml")
    render = next(t for t in tasks if t["name"] == "Render nginx.conf")
    assert render["ansible.builtin.template"]["validate"] == "nginx -t -q -c %s"
    assert render["notify"] == "Reload nginx"
    assert "include " not in (ROLE / "templates" / "nginx.conf.j2").read_text().replace(
        "include {{ __nginx_mime_types }};", ""
    )
    handlers = {h["name"]: h for h in _yaml(ROLE / "handlers" / "main.yml")}
    assert handlers["Reload nginx"]["ansible.builtin.systemd_service"]["state"] == "reloaded"


# ----------------------------------------------------------------------------- the unit


def _dropin() -> str:
    """templates/hardening.conf.j2 with the role's ``unde_dropin`` (its Jinja rendered for local-app)."""
    import jinja2

    task = next(t for t in _yaml(ROLE / "tasks" / "configure.yml") if t["name"] == "Harden the nginx unit")
    r = Role()
    spec = task["vars"]["unde_dropin"]
    dropin = {
        "comment": [r.templar.template(trust_as_template(line)) for line in spec["comment"]],
        "sandbox": {k: r.templar.template(trust_as_template(str(v))) for k, v in spec["sandbox"].items()},
        "extra": [r.templar.template(trust_as_template(line)) for line in spec["extra"]],
    }
    env = jinja2.Environment(  # noqa: S701 (systemd text, not HTML)
        loader=jinja2.FileSystemLoader(REPO / "templates"), keep_trailing_newline=True, trim_blocks=True
    )
    env.filters["combine"] = lambda base, extra: {**base, **extra}
    return env.get_template("hardening.conf.j2").render(unde_dropin=dropin, ansible_managed="Ansible managed")


def test_the_dropin_runs_nginx_unprivileged_with_one_capability() -> None:
    text = _dropin()
    lines = set(text.splitlines())
    for line in (
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "MemoryMax=512M",
        "User=www-data",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "ReadWritePaths=-/var/log/nginx /var/lib/nginx",
        "RuntimeDirectory=nginx",
        "PIDFile=/run/nginx/nginx.pid",
        "MemoryDenyWriteExecute=yes",
        "UMask=0027",
    ):
        assert line in lines, f"{line} missing:\n{text}"


@pytest.mark.skipif(
    SYSTEMD_ANALYZE is None or not PACKAGE_UNIT.exists(), reason="no systemd-analyze or nginx unit"
)
def test_the_hardened_unit_verifies_and_is_exposed_at_most_ok(tmp_path: Path) -> None:
    """The package's unit with the drop-in appended (the same sections merged, as systemd reads a
    drop-in), offline."""
    assert SYSTEMD_ANALYZE
    unit = tmp_path / "nginx.service"
    base = PACKAGE_UNIT.read_text()
    service = "\n".join(line for line in _dropin().splitlines() if line and not line.startswith(("#", "[")))
    unit.write_text(base.replace("[Install]", service + "\n\n[Install]", 1))
    verify = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", str(unit)], capture_output=True, text=True
    )
    problems = [
        line
        for line in (verify.stdout + verify.stderr).splitlines()
        if line.strip() and "Failed to " not in line and "bus" not in line.lower()
    ]
    assert verify.returncode == 0 and not problems, verify.stdout + verify.stderr
    security = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
    )
    value = unit_security.exposure(security.stdout)
    if value is None:
        pytest.skip(f"systemd-analyze security --offline unavailable: {security.stderr[:200]}")
    assert value <= unit_security.bound("nginx"), unit_security.findings(security.stdout)


# ----------------------------------------------------------------------------- for real


class _Gateway(http.server.ThreadingHTTPServer):
    """Stands in for the api_gateway app: answers each request with what it received (headers,
    the client port of the connection nginx used, the body's length) as JSON."""

    daemon_threads = True

    def __init__(self, port: int) -> None:
        self.requests: list[dict[str, Any]] = []
        super().__init__(("127.0.0.1", port), _GatewayHandler)


class _GatewayHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # kept-alive connections, as uvicorn

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        seen = {
            "path": self.path,
            "port": self.client_address[1],
            "headers": dict(self.headers),
            "body": len(body),
        }
        assert isinstance(self.server, _Gateway)
        self.server.requests.append(seen)
        out = json.dumps(seen).encode()
        self.send_response(404 if self.path == "/" else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.send_header("X-Frame-Options", "SAMEORIGIN")  # nginx must send its own, once
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = _answer  # noqa: N815 (the names http.server calls)

    def log_message(self, format: str, *args: Any) -> None:
        return


@contextlib.contextmanager
def _voice(port: int) -> Iterator[list[str]]:
    """Stands in for the voice WebSocket server: echoes each frame, records the paths asked."""
    paths: list[str] = []
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop = asyncio.Event()

    async def echo(ws: Any) -> None:
        paths.append(ws.request.path)
        async for message in ws:
            await ws.send(message)

    async def main() -> None:
        async with websockets.serve(echo, "127.0.0.1", port):
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield paths
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)


def _wait_port(port: int) -> None:
    for _ in range(100):
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


@dataclass
class Running:
    site: Site
    gateway: _Gateway
    voice_paths: list[str]
    ssl: ssl.SSLContext

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(
            base_url=f"https://localhost:{self.site.https}", verify=self.ssl, timeout=10, **kw
        )


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    if NGINX is None:
        pytest.skip("nginx is not installed (Debian package nginx-light)")
    site = _site(tmp_path_factory.mktemp("entry"), "lab", nginx_client_max_body_size=1024 * 1024)
    (site.root / "acme" / ".well-known" / "acme-challenge" / "token1").write_text("token1.thumbprint")
    gateway = _Gateway(site.gateway)
    threading.Thread(target=gateway.serve_forever, daemon=True).start()
    proc = subprocess.Popen(
        [NGINX, "-p", str(site.root), "-c", str(site.conf), "-g", "daemon off;"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        _wait_port(site.https)
        with _voice(site.voice) as paths:
            yield Running(site, gateway, paths, ssl.create_default_context(cafile=str(site.ca)))
    finally:
        proc.send_signal(signal.SIGQUIT)
        proc.wait(20)
        gateway.shutdown()


def test_http_redirects_and_serves_acme_and_the_crl(running: Running) -> None:
    base = f"http://127.0.0.1:{running.site.http}"
    redirect = httpx.get(f"{base}/api/v1/profile?x=1", headers={"Host": "local-app"}, follow_redirects=False)
    assert redirect.status_code == 301
    assert redirect.headers["Location"] == "https://local-app/api/v1/profile?x=1"
    acme = httpx.get(f"{base}/.well-known/acme-challenge/token1")
    assert (acme.status_code, acme.text) == (200, "token1.thumbprint")
    assert httpx.get(f"{base}/.well-known/unde/entry-ca.crl").status_code in (200, 404)  # DER made on hosts


def test_https_h2_headers_and_proxy_headers(running: Running) -> None:
    with socket.create_connection(("127.0.0.1", running.site.https)) as raw:
        ctx = ssl.create_default_context(cafile=str(running.site.ca))
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.selected_alpn_protocol() == "h2" and tls.version() in ("TLSv1.2", "TLSv1.3")
    with running.client() as client:
        answer = client.get(
            "/api/v1/profile", headers={"X-Forwarded-For": "6.6.6.6", "X-Request-ID": "client-id-1"}
        )
    assert answer.status_code == 200
    assert answer.headers["Strict-Transport-Security"] == "max-age=63072000; includeSubDomains"
    assert answer.headers.get_list("X-Frame-Options") == ["DENY"]
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["X-Request-ID"] == "client-id-1"
    assert answer.headers["Server"] == "nginx"  # no version
    seen = {k.lower(): v for k, v in answer.json()["headers"].items()}
    assert seen["x-forwarded-for"] == "127.0.0.1" and seen["x-real-ip"] == "127.0.0.1"
    assert (seen["x-forwarded-proto"], seen["x-request-id"], seen["host"]) == (
        "https",
        "client-id-1",
        "localhost",
    )
    with running.client() as client:
        forged = client.get("/api/v1/profile", headers={"X-Request-ID": "bad id; with spaces"})
    assert re.fullmatch(r"[0-9a-f]{32}", forged.headers["X-Request-ID"])


def test_gateway_connections_are_kept_alive(running: Running) -> None:
    before = len(running.gateway.requests)
    for _ in range(20):
        with running.client() as client:  # a new client connection each time
            assert client.get("/api/v1/products").status_code == 200
    ports = {r["port"] for r in running.gateway.requests[before:]}
    assert len(ports) < 20, "every request opened a new connection to the gateway"


def test_oversize_body_is_a_json_413_that_never_reaches_the_gateway(running: Running) -> None:
    before = len(running.gateway.requests)
    with running.client() as client:
        fits = client.post("/api/v1/media", content=b"x" * (1024 * 1024 - 1))
        big = client.post("/api/v1/media", content=b"x" * (2 * 1024 * 1024))
    assert fits.status_code == 200 and fits.json()["body"] == 1024 * 1024 - 1
    assert big.status_code == 413 and big.json()["code"] == "too_large"
    assert "Strict-Transport-Security" in big.headers
    assert len(running.gateway.requests) == before + 1


def test_websocket_relays_to_voice_stream(running: Running) -> None:
    async def talk() -> tuple[str, bytes]:
        uri = f"wss://localhost:{running.site.https}/api/v1/voice/stream"
        async with websockets.connect(uri, ssl=running.ssl) as ws:
            await ws.send('{"text":"hi"}')
            text = await ws.recv()
            await ws.send(b"\x00\x01binary")
            binary = await ws.recv()
        assert isinstance(text, str) and isinstance(binary, bytes)
        return text, binary

    assert asyncio.run(talk()) == ('{"text":"hi"}', b"\x00\x01binary")
    assert running.voice_paths[-1] == "/stream"


def test_access_log_is_json(running: Running) -> None:
    with running.client() as client:
        client.get("/api/v1/profile", headers={"X-Request-ID": "logged-1"})
    time.sleep(0.2)  # nginx writes the line after the answer
    lines = [json.loads(line) for line in running.site.access_log.read_text().splitlines()]
    mine = [line for line in lines if line["request_id"] == "logged-1"]
    assert mine and mine[-1]["status"] == 200 and mine[-1]["uri"] == "/api/v1/profile"


def test_dead_gateway_is_a_json_503_with_retry_after(tmp_path: Path) -> None:
    if NGINX is None:
        pytest.skip("nginx is not installed")
    site = _site(tmp_path, "vault")
    proc = subprocess.Popen([NGINX, "-p", str(site.root), "-c", str(site.conf), "-g", "daemon off;"])
    try:
        _wait_port(site.https)
        ctx = ssl.create_default_context(cafile=str(site.ca))
        answer = httpx.get(f"https://localhost:{site.https}/api/v1/chat", verify=ctx, timeout=10)
    finally:
        proc.send_signal(signal.SIGQUIT)
        proc.wait(20)
    assert answer.status_code == 503 and answer.json()["code"] == "unavailable"
    assert answer.headers["Retry-After"] == "5" and "Strict-Transport-Security" in answer.headers


@pytest.mark.skipif(TESTSSL is None, reason="testssl.sh is not installed (Debian package testssl.sh)")
def test_testssl_finds_only_the_profile(
    running: Running, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """molecule/entry's judge on this machine's nginx with the role's configuration."""
    # the marker molecule/conftest.py registers for that module
    request.config.addinivalue_line("markers", "journal(*units): journal of these units on failure")
    spec = importlib.util.spec_from_file_location(
        "unde_entry_tls", REPO / "molecule" / "entry" / "tests" / "test_entry_tls.py"
    )
    assert spec and spec.loader
    stub = types.ModuleType("unde_molecule_lab")
    stub.REPO = REPO  # type: ignore[attr-defined]
    had = sys.modules.get("unde_molecule_lab")
    sys.modules["unde_molecule_lab"] = stub
    try:
        entry = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(entry)
    finally:
        if had is None:
            sys.modules.pop("unde_molecule_lab", None)
        else:
            sys.modules["unde_molecule_lab"] = had
    findings = entry.run_testssl("localhost", "127.0.0.1", running.site.https, _pki().ca_cert, tmp_path)
    problems = entry.judge(findings, entry.testssl_version())
    assert not problems, "\n".join(problems)
