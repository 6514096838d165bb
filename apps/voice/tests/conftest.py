"""Fixtures of the voice tests: the ElevenLabs simulator on loopback, the phrase cache's Redis
database (DB 10, emptied per test), the gateway's token keys and the settings of a voice under
test."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest
import redis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from unde_testkit.elevenlabs_simulator import ELEVENLABS_KEY, ELEVENLABS_VOICE, ElevenLabsSimulator
from unde_testkit.testing import LoopbackServer

#: the key id and claims of the gateway's access tokens (api_gateway.auth)
KID = "voice-test-1"


@pytest.fixture(scope="session")
def gateway_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="session")
def jwt_public_keys(gateway_key: Ed25519PrivateKey) -> str:
    """``JWT_PUBLIC_KEYS`` of the test gateway: ``{kid: PEM}``."""
    pem = gateway_key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    return json.dumps({KID: pem.decode()})


@pytest.fixture(scope="session")
def user_token(gateway_key: Ed25519PrivateKey) -> Callable[..., str]:
    """``user_token(typ="access", ttl_s=900, kid=KID, key=None, **claims)``: a token signed as the
    gateway signs its access tokens (api_gateway.auth)."""

    def make(
        *,
        typ: str = "access",
        ttl_s: int = 900,
        kid: str = KID,
        key: Ed25519PrivateKey | None = None,
        **claims: Any,
    ) -> str:
        now = int(time.time())
        body = {
            "sub": str(uuid.uuid4()),
            "shard": 0,
            "typ": typ,
            "iss": "unde-api-gateway",
            "aud": "unde-app",
            "iat": now,
            "exp": now + ttl_s,
            **claims,
        }
        return jwt.encode(body, key or gateway_key, algorithm="EdDSA", headers={"kid": kid})

    return make


@pytest.fixture(scope="session")
def elevenlabs_server() -> Iterator[tuple[ElevenLabsSimulator, str]]:
    """The simulator served on loopback for the whole session: (simulator, base URL)."""
    simulator = ElevenLabsSimulator(hang_s=4.0)
    with LoopbackServer(simulator.app) as server:
        yield simulator, server.url


@pytest.fixture
def simulator(elevenlabs_server: tuple[ElevenLabsSimulator, str]) -> Iterator[ElevenLabsSimulator]:
    """The session's simulator, answering normally and with no requests recorded."""
    elevenlabs_server[0].reset()
    yield elevenlabs_server[0]
    elevenlabs_server[0].reset()


@pytest.fixture
def elevenlabs_url(elevenlabs_server: tuple[ElevenLabsSimulator, str]) -> str:
    return elevenlabs_server[1]


@pytest.fixture
def voice_redis(redis_url: str) -> str:
    """The phrase cache's database (DB 10 of the test Redis), emptied."""
    url = redis_url.rsplit("/", 1)[0] + "/10"
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


@pytest.fixture
def voice_env(voice_redis: str, jwt_public_keys: str) -> Callable[[str], dict[str, str]]:
    """``voice_env(elevenlabs_url)``: the settings of a voice under test (service auth: the plugin's)."""

    def make(url: str) -> dict[str, str]:
        return {
            "ELEVENLABS_API_KEY": ELEVENLABS_KEY,
            "ELEVENLABS_VOICE_ID": ELEVENLABS_VOICE,
            "ELEVENLABS_BASE_URL": url,
            "REDIS_URL": voice_redis,
            "JWT_PUBLIC_KEYS": jwt_public_keys,
            "HOST": "127.0.0.1",
        }

    return make
