"""The master key ring (file validation, reload on change) and the envelope encryption primitives."""

from __future__ import annotations

import base64
import json
import os
import uuid
from pathlib import Path

import pytest

from llm_orchestrator.crypto import (
    DecryptError,
    DekUnwrapError,
    EncryptedFact,
    KeyRingSource,
    MasterKeyError,
    MasterKeyMissingError,
    MasterKeyRing,
    UnknownKeyVersionError,
    decrypt_fact,
    encrypt_fact,
    generate_dek,
    unwrap_dek,
    wrap_dek,
)
from llm_orchestrator.keys_settings import DEFAULT_MASTER_KEY_FILE
from llm_orchestrator.settings import LlmOrchestratorSettings
from unde_testkit.testing import EnvWriterFactory

KEY1 = bytes(range(32))
KEY2 = bytes(range(100, 132))


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def write_ring(path: Path, current: int, keys: dict[int, bytes]) -> Path:
    """Written the way the role delivers it: a new file moved into place."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"current": current, "keys": {str(v): b64(k) for v, k in keys.items()}}))
    os.replace(tmp, path)
    return path


def test_ring_loads_and_hides_keys(tmp_path: Path) -> None:
    ring = MasterKeyRing.load(write_ring(tmp_path / "ring", 2, {1: KEY1, 2: KEY2}))
    assert ring.current == 2 and ring.versions == (1, 2)
    assert ring.key(1) == KEY1 and ring.key(2) == KEY2
    assert b64(KEY1) not in repr(ring) and str(KEY1) not in repr(ring)
    with pytest.raises(UnknownKeyVersionError, match="version 3 is not in the key ring") as info:
        ring.key(3)
    assert info.value.version == 3 and info.value.available == (1, 2)


BAD_RINGS: list[tuple[str, str]] = [
    ("not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    (json.dumps({"keys": {"1": b64(KEY1)}}), '"current" must be a positive integer'),
    (json.dumps({"current": True, "keys": {"1": b64(KEY1)}}), '"current" must be a positive integer'),
    (json.dumps({"current": "1", "keys": {"1": b64(KEY1)}}), '"current" must be a positive integer'),
    (json.dumps({"current": 1, "keys": {}}), '"keys" must be a non-empty object'),
    (json.dumps({"current": 2, "keys": {"1": b64(KEY1)}}), '"current" version 2 has no key'),
    (json.dumps({"current": 1, "keys": {"1": b64(KEY1[:16])}}), "key version 1 decodes to 16 bytes, not 32"),
    (json.dumps({"current": 1, "keys": {"1": b64(KEY1 + b"x")}}), "key version 1 decodes to 33 bytes"),
    (json.dumps({"current": 1, "keys": {"1": "!!not base64!!"}}), "key version 1 is not valid base64"),
    (json.dumps({"current": 1, "keys": {"1": 12}}), "key version 1 is not a base64 string"),
    (json.dumps({"current": 1, "keys": {"1": b64(KEY1), "one": b64(KEY2)}}), "key version 'one'"),
    (json.dumps({"current": 1, "keys": {"1": b64(KEY1), "01": b64(KEY2)}}), "key version '01'"),
    (json.dumps({"current": 1, "keys": {"1": b64(KEY1)}, "key": b64(KEY2)}), "unknown fields ['key']"),
]


@pytest.mark.parametrize(("text", "problem"), BAD_RINGS, ids=[p for _, p in BAD_RINGS])
def test_ring_validation_names_the_problem_never_the_key(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "ring"
    path.write_text(text)
    with pytest.raises(MasterKeyError) as info:
        MasterKeyRing.load(path)
    message = str(info.value)
    assert problem in message and str(path) in message
    for key in (KEY1, KEY2, KEY1[:16], KEY1 + b"x"):
        assert b64(key) not in message


def test_missing_ring_says_where_the_key_comes_from(tmp_path: Path) -> None:
    with pytest.raises(MasterKeyMissingError) as info:
        MasterKeyRing.load(tmp_path / "absent")
    message = str(info.value)
    assert "does not exist" in message and "only in RAM" in message and "/run" in message
    assert "ansible-playbook playbooks/llm_orchestrator.yml --tags llm_orchestrator_configure" in message
    assert "after a reboot" in message


def test_key_ring_source_rereads_a_changed_file(tmp_path: Path) -> None:
    path = write_ring(tmp_path / "ring", 1, {1: KEY1})
    source = KeyRingSource(path)
    first = source.ring()
    assert source.ring() is first  # unchanged file: not parsed again
    write_ring(path, 2, {1: KEY1, 2: KEY2})
    second = source.ring()
    assert second.current == 2 and second.versions == (1, 2)
    write_ring(path, 2, {2: KEY2})  # the old key retired
    assert source.ring().versions == (2,)
    path.write_text("{broken")
    with pytest.raises(MasterKeyError, match="not valid JSON"):
        source.ring()
    path.unlink()
    with pytest.raises(MasterKeyMissingError):
        source.ring()


def test_dek_wrap_is_bound_to_user_and_version() -> None:
    ring = MasterKeyRing(current=2, keys={1: KEY1, 2: KEY2})
    user, other = uuid.uuid4(), uuid.uuid4()
    dek = generate_dek()
    assert len(dek) == 32 and generate_dek() != dek
    blob, version = wrap_dek(ring, user, dek)
    assert version == 2 and len(blob) == 12 + 32 + 16 and dek not in blob
    assert unwrap_dek(ring, user, blob, 2) == dek
    blob1, v1 = wrap_dek(ring, user, dek, 1)
    assert v1 == 1 and unwrap_dek(ring, user, blob1, 1) == dek
    with pytest.raises(DekUnwrapError, match=str(other)):
        unwrap_dek(ring, other, blob, 2)  # another user's AAD
    with pytest.raises(DekUnwrapError):
        unwrap_dek(MasterKeyRing(current=2, keys={2: KEY1}), user, blob, 2)  # another key, same version
    tampered = bytearray(blob)
    tampered[20] ^= 1
    with pytest.raises(DekUnwrapError):
        unwrap_dek(ring, user, bytes(tampered), 2)
    with pytest.raises(UnknownKeyVersionError, match="version 7"):
        unwrap_dek(ring, user, blob, 7)


def test_fact_encryption_round_trip_and_tampering() -> None:
    dek, user, row = generate_dek(), uuid.uuid4(), uuid.uuid4()
    plain = b'{"size":"M"}'
    sealed = encrypt_fact(dek, user, "body_params", row, plain)
    assert len(sealed.iv) == 12 and len(sealed.auth_tag) == 16 and len(sealed.encrypted_data) == len(plain)
    assert plain not in sealed.encrypted_data
    assert decrypt_fact(dek, user, "body_params", row, sealed) == plain
    assert encrypt_fact(dek, user, "body_params", row, plain).iv != sealed.iv  # a fresh nonce per row
    for field in ("encrypted_data", "iv", "auth_tag"):
        value = bytearray(getattr(sealed, field))
        value[0] ^= 0x80
        changed = EncryptedFact(**{**sealed.__dict__, field: bytes(value)})
        with pytest.raises(DecryptError, match=str(row)):
            decrypt_fact(dek, user, "body_params", row, changed)
    for args in (
        (uuid.uuid4(), "body_params", row),
        (user, "budget", row),
        (user, "body_params", uuid.uuid4()),
    ):
        with pytest.raises(DecryptError):
            decrypt_fact(dek, *args, sealed)


def test_master_key_file_setting(env_writer: EnvWriterFactory, tmp_path: Path) -> None:
    write_env = env_writer(LlmOrchestratorSettings)
    write_env()
    assert LlmOrchestratorSettings.load().master_key_file == DEFAULT_MASTER_KEY_FILE
    assert str(DEFAULT_MASTER_KEY_FILE).startswith("/run/")
    write_env({"MASTER_KEY_FILE": str(tmp_path / "ring")})
    assert LlmOrchestratorSettings.load().master_key_file == tmp_path / "ring"
