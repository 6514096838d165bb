"""Filter ``unde_openssh_public_key``: the OpenSSH public key line of a PEM private key.

Runs on the controller (the private key never goes to the stand-in). Accepts the PKCS#8 /
traditional PEM keys the lab vault holds (EC, RSA, Ed25519) and OpenSSH-format keys.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives import serialization


def unde_openssh_public_key(private_key: str, comment: str = "") -> str:
    text = str(private_key).strip()
    if not text:
        raise ValueError("unde_openssh_public_key: the private key is empty")
    data = text.encode()
    key: Any
    if "OPENSSH PRIVATE KEY" in text:
        key = serialization.load_ssh_private_key(data, password=None)
    else:
        key = serialization.load_pem_private_key(data, password=None)
    line = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    out = line.decode()
    return f"{out} {comment}".strip()


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Any]:
        return {"unde_openssh_public_key": unde_openssh_public_key}
