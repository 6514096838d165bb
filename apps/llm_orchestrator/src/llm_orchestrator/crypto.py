"""Envelope encryption of the user knowledge (spec 02 §14 "User Knowledge": AES-256-GCM, application level).

Two layers, both AES-256-GCM from the ``cryptography`` package (``AESGCM``: ``encrypt(nonce, data,
associated_data)`` returns ciphertext || 16-byte tag, ``decrypt`` raises ``InvalidTag`` on any
change; https://cryptography.io/en/latest/hazmat/primitives/aead/#cryptography.hazmat.primitives.ciphers.aead.AESGCM):

* **Master key ring** (:class:`MasterKeyRing`): versioned 256-bit keys in a JSON file that the
  llm_orchestrator role delivers into tmpfs (``/run``) only, never onto a persistent disk::

      {"current": 2, "keys": {"1": "<base64 of 32 bytes>", "2": "<base64 of 32 bytes>"}}

  ``current`` wraps new DEKs; older versions stay in the ring until every DEK is re-wrapped
  (:mod:`llm_orchestrator.keyrotation`). :class:`KeyRingSource` re-reads the file when it changes.
* **Per-user DEK**: 256 random bits, wrapped by a master key version: ``user_keys.encrypted_dek`` =
  nonce (12) || ciphertext || tag, AAD ``b"unde-dek|" + user_id + b"|v" + version``, with
  ``user_keys.master_key_version``. Deleting the row crypto-shreds the user's facts.
* **Facts**: each ``user_knowledge`` row has its own random 96-bit nonce (``iv``); the AAD binds the
  ciphertext to ``user_id|knowledge_type|row id`` (the id is generated before the INSERT), so a
  ciphertext copied to another row, user or type does not decrypt; ``encrypted_data`` holds the
  ciphertext and ``auth_tag`` the 16-byte tag.

Errors never contain key material: they name the file, the version or the row.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "KEY_BYTES",
    "NONCE_BYTES",
    "TAG_BYTES",
    "DecryptError",
    "DekUnwrapError",
    "EncryptedFact",
    "KeyRingSource",
    "MasterKeyError",
    "MasterKeyMissingError",
    "MasterKeyRing",
    "UnknownKeyVersionError",
    "decrypt_fact",
    "dek_aad",
    "encrypt_fact",
    "fact_aad",
    "generate_dek",
    "unwrap_dek",
    "wrap_dek",
]

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16

DELIVER_HINT = (
    "the master key ring lives only in RAM (tmpfs under /run) and is delivered by "
    "`ansible-playbook playbooks/llm_orchestrator.yml --tags llm_orchestrator_configure` "
    "(after a reboot it must be delivered again)"
)


class MasterKeyError(ValueError):
    """The master key ring file is unusable; the message names the problem, never a key."""


class MasterKeyMissingError(MasterKeyError):
    """The ring file does not exist (tmpfs is empty after a reboot until the role delivers it)."""


class UnknownKeyVersionError(MasterKeyError):
    """A master key version that the delivered ring does not hold."""

    def __init__(self, version: int, available: tuple[int, ...], detail: str = "") -> None:
        self.version = version
        self.available = available
        have = ", ".join(map(str, available)) or "none"
        super().__init__(
            f"master key version {version} is not in the key ring (versions: {have}){detail}; {DELIVER_HINT}"
        )


class DekUnwrapError(ValueError):
    """A wrapped DEK failed authentication (wrong master key, tampered blob, wrong user)."""


class DecryptError(ValueError):
    """A fact failed authentication (tampered ciphertext, nonce, tag, or AAD of another row)."""


@dataclass(frozen=True)
class MasterKeyRing:
    """Versioned master keys; ``current`` wraps new DEKs. ``repr`` shows versions only."""

    current: int
    keys: Mapping[int, bytes] = field(repr=False)

    def __post_init__(self) -> None:
        if self.current not in self.keys:
            raise MasterKeyError(f"current master key version {self.current} has no key in the ring")
        for version, key in self.keys.items():
            if len(key) != KEY_BYTES:
                raise MasterKeyError(f"master key version {version} is {len(key)} bytes, not {KEY_BYTES}")
        object.__setattr__(self, "keys", MappingProxyType(dict(self.keys)))

    @property
    def versions(self) -> tuple[int, ...]:
        return tuple(sorted(self.keys))

    def key(self, version: int) -> bytes:
        try:
            return self.keys[version]
        except KeyError:
            raise UnknownKeyVersionError(version, self.versions) from None

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "master key ring") -> MasterKeyRing:
        """Parse and validate the ring's JSON; errors name ``source`` and the problem."""
        try:
            doc = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MasterKeyError(f"{source}: not valid JSON ({exc.__class__.__name__})") from None
        if not isinstance(doc, dict):
            raise MasterKeyError(f'{source}: expected a JSON object {{"current": N, "keys": {{...}}}}')
        unknown = sorted(set(doc) - {"current", "keys"})
        if unknown:
            raise MasterKeyError(f"{source}: unknown fields {unknown}")
        current = doc.get("current")
        if isinstance(current, bool) or not isinstance(current, int) or current < 1:
            raise MasterKeyError(f'{source}: "current" must be a positive integer version')
        raw_keys = doc.get("keys")
        if not isinstance(raw_keys, dict) or not raw_keys:
            raise MasterKeyError(f'{source}: "keys" must be a non-empty object of version -> base64 key')
        keys: dict[int, bytes] = {}
        for name, value in raw_keys.items():
            if not name.isdigit() or str(int(name)) != name or int(name) < 1:
                raise MasterKeyError(f"{source}: key version {name!r} is not a positive integer")
            version = int(name)
            if not isinstance(value, str):
                raise MasterKeyError(f"{source}: key version {version} is not a base64 string")
            try:
                key = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise MasterKeyError(f"{source}: key version {version} is not valid base64") from None
            if len(key) != KEY_BYTES:
                raise MasterKeyError(
                    f"{source}: key version {version} decodes to {len(key)} bytes, not {KEY_BYTES}"
                )
            keys[version] = key
        if current not in keys:
            raise MasterKeyError(f'{source}: "current" version {current} has no key in "keys"')
        return cls(current=current, keys=keys)

    @classmethod
    def load(cls, path: Path | str) -> MasterKeyRing:
        """Read and validate the ring file; a missing file raises :class:`MasterKeyMissingError`."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise MasterKeyMissingError(f"master key ring {path} does not exist: {DELIVER_HINT}") from None
        except OSError as exc:
            raise MasterKeyError(f"master key ring {path} cannot be read: {exc.strerror}") from None
        return cls.from_json(data, source=f"master key ring {path}")


class KeyRingSource:
    """The ring file, re-read when its identity (inode, size, mtime) changes: a rotation that
    delivers a new ring reaches running workers on their next call, without a restart. A file that
    disappears raises :class:`MasterKeyMissingError`; one that became invalid raises
    :class:`MasterKeyError` (the old ring is not used silently). Thread-safe."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int, int] | None = None
        self._ring: MasterKeyRing | None = None

    def ring(self) -> MasterKeyRing:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise MasterKeyMissingError(
                f"master key ring {self.path} does not exist: {DELIVER_HINT}"
            ) from None
        stamp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            if self._ring is None or stamp != self._stamp:
                self._ring = MasterKeyRing.load(self.path)
                self._stamp = stamp
            return self._ring


def generate_dek() -> bytes:
    """A fresh 256-bit data encryption key."""
    return AESGCM.generate_key(bit_length=256)


def dek_aad(user_id: UUID, version: int) -> bytes:
    return b"unde-dek|" + str(user_id).encode() + b"|v" + str(version).encode()


def wrap_dek(ring: MasterKeyRing, user_id: UUID, dek: bytes, version: int | None = None) -> tuple[bytes, int]:
    """(nonce || ciphertext || tag, master key version) of ``dek`` under ``version`` (default: current)."""
    if len(dek) != KEY_BYTES:
        raise ValueError(f"a DEK is {KEY_BYTES} bytes, got {len(dek)}")
    version = ring.current if version is None else version
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(ring.key(version)).encrypt(nonce, dek, dek_aad(user_id, version)), version


def unwrap_dek(ring: MasterKeyRing, user_id: UUID, blob: bytes, version: int) -> bytes:
    """The DEK of ``user_id``; :class:`UnknownKeyVersionError` when ``version`` is not in the ring,
    :class:`DekUnwrapError` when the blob does not authenticate."""
    key = ring.key(version)
    if len(blob) != NONCE_BYTES + KEY_BYTES + TAG_BYTES:
        raise DekUnwrapError(
            f"wrapped DEK of user {user_id} is {len(blob)} bytes, not {NONCE_BYTES + KEY_BYTES + TAG_BYTES}"
        )
    try:
        return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], dek_aad(user_id, version))
    except InvalidTag:
        raise DekUnwrapError(
            f"wrapped DEK of user {user_id} does not authenticate under master key version {version}"
        ) from None


@dataclass(frozen=True)
class EncryptedFact:
    """The three columns of one ``user_knowledge`` row."""

    encrypted_data: bytes
    iv: bytes
    auth_tag: bytes


def fact_aad(user_id: UUID, knowledge_type: str, row_id: UUID) -> bytes:
    return f"{user_id}|{knowledge_type}|{row_id}".encode()


def encrypt_fact(
    dek: bytes, user_id: UUID, knowledge_type: str, row_id: UUID, plaintext: bytes
) -> EncryptedFact:
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(dek).encrypt(nonce, plaintext, fact_aad(user_id, knowledge_type, row_id))
    return EncryptedFact(encrypted_data=sealed[:-TAG_BYTES], iv=nonce, auth_tag=sealed[-TAG_BYTES:])


def decrypt_fact(dek: bytes, user_id: UUID, knowledge_type: str, row_id: UUID, fact: EncryptedFact) -> bytes:
    """The plaintext; :class:`DecryptError` (naming the row only) on any tampering."""
    if len(fact.iv) != NONCE_BYTES or len(fact.auth_tag) != TAG_BYTES:
        raise DecryptError(f"user_knowledge row {row_id}: bad nonce or tag length")
    try:
        return AESGCM(dek).decrypt(
            fact.iv, fact.encrypted_data + fact.auth_tag, fact_aad(user_id, knowledge_type, row_id)
        )
    except InvalidTag:
        raise DecryptError(f"user_knowledge row {row_id} does not authenticate") from None
