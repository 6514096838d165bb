"""Create the lab's ansible-vault file from vault.example.yml.

The lab vault (``inventories/lab/secrets.vault.yml``) holds a fresh random value for every
credential listed in ``vault.example.yml``: real WireGuard keys, a real CA key, random
passwords. It is encrypted with the LAB-ONLY password in ``inventories/lab/vault-password.txt``,
which is committed on purpose and protects nothing of value. Production vaults are never
generated here. ``--check`` verifies the committed lab vault decrypts and has every key.
``--add-missing`` keeps every value the lab vault already has (running lab hosts keep their
passwords) and generates only the names vault.example.yml lists and the vault lacks.
A ``*_ca_certificate`` is a self-signed CA certificate of the ``*_ca_key`` of the same prefix, a
``*_ca_crl`` that CA's (empty) certificate revocation list: the lab entry CA's is served where the
lab's public certificate names its CRL distribution point.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519
from cryptography.x509.oid import NameOID

from unde_tools.inventory import REPO, load

EXAMPLE = REPO / "vault.example.yml"
LAB_VAULT = REPO / "inventories/lab/secrets.vault.yml"
LAB_PASSWORD = REPO / "inventories/lab/vault-password.txt"
# The ansible vault identity of the lab (``--vault-id`` / ANSIBLE_VAULT_IDENTITY_LIST).
VAULT_ID = f"lab@{LAB_PASSWORD}"
ANSIBLE_VAULT = REPO / ".venv/bin/ansible-vault"
#: master key versions the lab vault holds besides vault.example.yml's (the rotation drill's target)
LAB_EXTRA_MASTER_KEY_VERSIONS = ("2",)


def example_keys() -> dict[str, Any]:
    data = yaml.safe_load(EXAMPLE.read_text())
    keys: dict[str, Any] = data["all"]["vars"]
    return keys


def _wg_key() -> str:
    raw = x25519.X25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return base64.b64encode(raw).decode()


def _master_key() -> str:
    """An AES-256 master key as the orchestrator's key ring holds it: base64 of 32 random bytes."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


def _pem_key() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _ed25519_key() -> str:
    """An Ed25519 private key (PEM, PKCS8): the gateway's token signing keys."""
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem.decode()


def _ca_certificate(key_pem: str, name: str) -> str:
    """A self-signed CA certificate (10 years) for the PEM private key of the lab vault."""
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"UNDE lab {name}")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _ca_crl(key_pem: str, cert_pem: str) -> str:
    """An empty CRL (PEM) of the lab CA, next update in 10 years (the lab CA revokes nothing)."""
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    issuer = x509.load_pem_x509_certificate(cert_pem.encode())
    now = datetime.datetime.now(datetime.UTC)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(now - datetime.timedelta(days=1))
        .next_update(now + datetime.timedelta(days=3650))
        .add_extension(x509.CRLNumber(1), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return crl.public_bytes(serialization.Encoding.PEM).decode()


def generate(keep: dict[str, Any] | None = None) -> dict[str, Any]:
    """A value for every name of vault.example.yml; names in ``keep`` keep their value."""
    inv = load([REPO / "inventories/lab"])
    wg_hosts = sorted(inv.hosts_of("wireguard_local") | inv.hosts_of("wireguard_gateway"))
    values: dict[str, Any] = {}
    for name, example in example_keys().items():
        if keep is not None and name in keep and not (isinstance(example, dict) and example):
            values[name] = keep[name]
        elif name.endswith("_ca_crl"):
            prefix = name.removesuffix("_crl")
            if f"{prefix}_key" not in values or f"{prefix}_certificate" not in values:
                raise SystemExit(f"{EXAMPLE.name}: {name} must follow {prefix}_key and {prefix}_certificate")
            values[name] = _ca_crl(values[f"{prefix}_key"], values[f"{prefix}_certificate"])
        elif name.endswith("_ca_certificate"):
            key_name = name.removesuffix("_certificate") + "_key"
            if key_name not in values:
                raise SystemExit(f"{EXAMPLE.name}: {name} must come after {key_name}")
            label = name.removeprefix("vault_").removesuffix("_certificate")
            values[name] = _ca_certificate(values[key_name], label)
        elif name == "vault_wireguard_private_keys":
            values[name] = {h: _wg_key() for h in wg_hosts}
        elif name == "vault_master_encryption_keys":
            # version -> base64 of 32 random bytes; kept versions keep their key (a lab shard's DEKs
            # are wrapped with them). The lab holds one version more than the example, so that
            # molecule `agents` can drill rotate_master_key.yml from version 1 to the next.
            kept = (keep or {}).get(name) or {}
            versions = [*example, *LAB_EXTRA_MASTER_KEY_VERSIONS]
            values[name] = {v: kept.get(v) or _master_key() for v in dict.fromkeys(versions)}
        elif name == "vault_jwt_signing_keys":
            # key id -> Ed25519 private key (PEM): kept ids keep their key (issued tokens stay valid)
            kept = (keep or {}).get(name) or {}
            values[name] = {kid: kept.get(kid) or _ed25519_key() for kid in example}
        elif name.endswith(("_ca_key", "_private_key")) or name == "vault_storagebox_ssh_private_key":
            values[name] = _pem_key()
        elif name == "vault_tls_certificate":
            values[name] = ""  # the lab issues a self-signed certificate at run time
        elif isinstance(example, dict):
            # a mapping lists its keys (ACL users, callers): each gets a value, kept ones keep theirs
            kept = (keep or {}).get(name) or {}
            values[name] = {k: kept.get(k, "lab-" + secrets.token_urlsafe(18)) for k in example}
        else:
            values[name] = "lab-" + secrets.token_urlsafe(18)
    return values


def decrypt() -> dict[str, Any]:
    """The lab vault's ``vault_*`` variables (decrypted with the committed lab-only password)."""
    out = subprocess.run(
        [str(ANSIBLE_VAULT), "view", "--vault-id", VAULT_ID, str(LAB_VAULT)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        # molecule exports the same identity in ANSIBLE_VAULT_IDENTITY_LIST: name it only once
        env={**os.environ, "ANSIBLE_VAULT_IDENTITY_LIST": ""},
    ).stdout
    data = yaml.safe_load(out)
    values: dict[str, Any] = data["all"]["vars"]
    return values


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="verify the lab vault has every credential")
    ap.add_argument(
        "--add-missing",
        action="store_true",
        help="keep the lab vault's values, generate only the missing names",
    )
    args = ap.parse_args(argv)
    if args.check:
        have = decrypt()
        missing = sorted(set(example_keys()) - set(have))
        extra = sorted(set(have) - set(example_keys()))
        if missing or extra:
            print(f"{LAB_VAULT.relative_to(REPO)}: missing {missing} extra {extra}", file=sys.stderr)
            return 1
        print(f"{LAB_VAULT.relative_to(REPO)}: {len(have)} credentials, matches vault.example.yml")
        return 0
    doc = "---\n# LAB ONLY. Generated by tools/unde_tools/lab_vault.py.\n" + yaml.safe_dump(
        {"all": {"vars": generate(decrypt() if args.add_missing else None)}}, sort_keys=False, width=200
    )
    with tempfile.NamedTemporaryFile("w", dir=LAB_VAULT.parent, suffix=".tmp", delete=False) as fh:
        fh.write(doc)
        tmp = Path(fh.name)
    try:
        subprocess.run(
            [str(ANSIBLE_VAULT), "encrypt", "--vault-id", VAULT_ID, str(tmp)],
            check=True,
            capture_output=True,
        )
        tmp.replace(LAB_VAULT)
    finally:
        tmp.unlink(missing_ok=True)
    print(f"wrote {LAB_VAULT.relative_to(REPO)} (encrypted with the lab-only password)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
