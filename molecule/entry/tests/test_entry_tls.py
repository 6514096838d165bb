"""The user entry seen from outside: ``testssl.sh`` (Debian's package) from the controller against
local-app's lab address on the HTTPS port, trusting the lab entry CA of the lab vault, and the
voice server's ports probed from the controller.

* only TLS 1.2 and 1.3 are offered; every cipher suite offered is one of Mozilla's intermediate
  list (TLS 1.2) or TLS 1.3's AEAD suites; no NULL/aNULL/EXPORT/LOW/3DES/RC4/AVERAGE cipher;
* HSTS is sent with max-age of at least the profile's two years; the certificate chain verifies
  with the lab entry CA for the name local-app;
* no finding is rated above LOW. One exception, for testssl older than 3.2 only: it rates "no
  server cipher order" HIGH whatever the ciphers (3.2 rates it by the weakest cipher offered, INFO
  here), while Mozilla's profile lets the client choose among its strong ones
  (``ssl_prefer_server_ciphers off``); it is accepted only when every cipher offered is Mozilla's;
* local-voice's HTTP and WebSocket ports (registry: voice_http, voice_ws) refuse the controller,
  which is outside the firewall matrix (only api_gateway_app and the orchestrator may call them).
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

# molecule/conftest.py, loaded by pytest before this module (the lab's hosts and vault)
_default = sys.modules["unde_molecule_lab"]
pytestmark = [pytest.mark.lab, pytest.mark.journal("nginx"), pytest.mark.timeout(900)]

ENTRY = "local-app"
VOICE = "local-voice"
SERVICES = yaml.safe_load((_default.REPO / "group_vars" / "all" / "services.yml").read_text())[
    "unde_services"
]
TESTSSL = shutil.which("testssl") or shutil.which("testssl.sh")
SEVERITIES = ["DEBUG", "INFO", "OK", "LOW", "MEDIUM", "HIGH", "CRITICAL"]
# Mozilla "intermediate" (guideline 6.0, https://ssl-config.mozilla.org/guidelines/6.0.json) in
# OpenSSL names; TLS 1.3 suites are all AEAD.
MOZILLA_TLS12 = {
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
}
TLS13 = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}
HSTS_MIN_AGE = 63072000


def testssl_version() -> tuple[int, int]:
    assert TESTSSL
    out = subprocess.run([TESTSSL, "--version"], capture_output=True, text=True, check=False).stdout
    found = re.search(r"testssl(?:\.sh)?\s+(?:version\s+)?(\d+)\.(\d+)", re.sub(r"\x1b\[[0-9;]*m", "", out))
    return (int(found.group(1)), int(found.group(2))) if found else (0, 0)


def run_testssl(host_name: str, address: str, port: int, ca_pem: str, workdir: Path) -> list[dict[str, Any]]:
    """testssl.sh's findings (``--jsonfile``) for ``https://<host_name>:<port>/`` at ``address``
    (SNI and the certificate's name check use the host name), the CA added to its trust stores."""
    assert TESTSSL
    ca = workdir / "entry-ca.pem"
    ca.write_text(ca_pem)
    report = workdir / "testssl.json"
    run = subprocess.run(
        [TESTSSL, "--quiet", "--warnings", "off", "--color", "0", "--add-ca", str(ca),
         "--jsonfile", str(report), "--ip", address, f"https://{host_name}:{port}/"],
        capture_output=True, text=True, timeout=800, check=False,
    )  # fmt: skip
    assert report.exists(), run.stdout[-3000:] + run.stderr[-3000:]
    findings: list[dict[str, Any]] = json.loads(report.read_text())
    return findings


def offered_ciphers(findings: list[dict[str, Any]]) -> set[str]:
    """OpenSSL names of the suites offered (``cipher_x<hex>`` findings: "xc02b   ECDHE-... ", a
    protocol may stand first)."""
    out = set()
    for f in findings:
        if re.fullmatch(r"cipher_x[0-9a-f]+", f["id"]):
            fields = f["finding"].split()
            out.add(fields[1] if re.fullmatch(r"x[0-9a-f]+", fields[0]) else fields[2])
    return out


def judge(findings: list[dict[str, Any]], version: tuple[int, int]) -> list[str]:
    """The problems in testssl's findings, one line each (empty: the entry passes)."""
    by_id = {f["id"]: f for f in findings}
    problems = []
    for proto in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
        if not by_id.get(proto, {}).get("finding", "").startswith("not offered"):
            problems.append(f"{proto}: {by_id.get(proto, {}).get('finding')}")
    for proto in ("TLS1_2", "TLS1_3"):
        if not by_id.get(proto, {}).get("finding", "").startswith("offered"):
            problems.append(f"{proto}: {by_id.get(proto, {}).get('finding')}")
    ciphers = offered_ciphers(findings)
    if not ciphers or not ciphers <= MOZILLA_TLS12 | TLS13:
        problems.append(
            f"ciphers outside Mozilla intermediate: {sorted(ciphers - MOZILLA_TLS12 - TLS13) or 'none seen'}"
        )
    for weak in ("cipherlist_NULL", "cipherlist_aNULL", "cipherlist_EXPORT", "cipherlist_LOW",
                 "cipherlist_3DES_IDEA", "cipherlist_AVERAGE"):  # fmt: skip
        if "not offered" not in by_id.get(weak, {}).get("finding", "not offered"):
            problems.append(f"{weak}: {by_id[weak]['finding']}")
    if by_id.get("RC4", {}).get("finding", "not vulnerable") != "not vulnerable":
        problems.append(f"RC4: {by_id['RC4']['finding']}")
    age = re.search(r"=(\d+) seconds", by_id.get("HSTS_time", {}).get("finding", ""))
    if not age or int(age.group(1)) < HSTS_MIN_AGE:
        problems.append(f"HSTS: {by_id.get('HSTS_time', {}).get('finding', 'not sent')}")
    if by_id.get("cert_chain_of_trust", {}).get("severity") != "OK":
        problems.append(f"chain of trust: {by_id.get('cert_chain_of_trust', {}).get('finding')}")
    for f in findings:
        if (
            SEVERITIES.index(f["severity"]) <= SEVERITIES.index("LOW")
            if f["severity"] in SEVERITIES
            else True
        ):
            continue
        old_cipher_order = (
            version < (3, 2)
            and f["id"] == "cipher_order"
            and f["finding"] == "NOT a cipher order configured"
            and ciphers <= MOZILLA_TLS12 | TLS13
        )
        if not old_cipher_order:
            problems.append(f"{f['severity']} {f['id']}: {f['finding']}")
    return problems


@pytest.fixture(scope="module")
def findings(lab: Any) -> list[dict[str, Any]]:
    if TESTSSL is None:
        pytest.fail("testssl.sh is not installed on the controller (Debian package testssl.sh)")
    with tempfile.TemporaryDirectory() as workdir:
        return run_testssl(
            ENTRY,
            lab.private_ip(ENTRY),
            int(SERVICES["api_gateway_https"]["port"]),
            _default.vault()["vault_entry_ca_certificate"],
            Path(workdir),
        )


def test_only_tls12_and_tls13_with_mozilla_ciphers_hsts_and_nothing_above_low(
    findings: list[dict[str, Any]],
) -> None:
    problems = judge(findings, testssl_version())
    assert not problems, "\n".join(problems)


def test_the_judge_catches_a_weak_entry() -> None:
    """judge() on findings of a bad server: TLS 1.0 on, a CBC suite, no HSTS, a MEDIUM finding."""
    bad = [
        {"id": "TLS1", "severity": "LOW", "finding": "offered (deprecated)"},
        {"id": "TLS1_2", "severity": "OK", "finding": "offered"},
        {
            "id": "cipher_xc013",
            "severity": "LOW",
            "finding": "TLSv1   xc013   ECDHE-RSA-AES128-SHA  ECDH 256",
        },
        {"id": "cipherlist_AVERAGE", "severity": "LOW", "finding": "offered"},
        {"id": "cert_chain_of_trust", "severity": "OK", "finding": "passed."},
        {"id": "BREACH", "severity": "MEDIUM", "finding": "potentially VULNERABLE"},
        {"id": "cipher_order", "severity": "HIGH", "finding": "NOT a cipher order configured"},
    ]
    problems = "\n".join(judge(bad, (3, 0)))
    wanted = ("TLS1:", "TLS1_3:", "ECDHE-RSA-AES128-SHA", "cipherlist_AVERAGE", "HSTS", "MEDIUM BREACH")
    for expected in (*wanted, "HIGH cipher_order"):
        assert expected in problems, problems


@pytest.mark.parametrize("service", ["voice_http", "voice_ws"])
def test_voice_is_unreachable_from_outside_the_matrix(lab: Any, service: str) -> None:
    """The controller is no client of the voice server: a connection is refused or dropped."""
    port = int(SERVICES[service]["port"])
    try:
        with socket.create_connection((lab.private_ip(VOICE), port), timeout=5):
            reached = True
    except OSError:
        reached = False
    assert not reached, f"{VOICE}:{port} ({service}) accepted a connection from the controller"
    # and the voice server does listen there: the firewall refuses, not an absent service
    listening = (
        lab.host(VOICE).socket(f"tcp://0.0.0.0:{port}").is_listening
        or lab.host(VOICE).socket(f"tcp://{lab.private_ip(VOICE)}:{port}").is_listening
    )
    assert listening, f"{VOICE} does not listen on {port}: the check above proves nothing"
