"""POST /synthesize against the simulator and a real Redis: the audio, the phrase cache (miss, hit,
``cache_key``, served while ElevenLabs is down), the errors and the service-token rule."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from unde_testkit.elevenlabs_simulator import ElevenLabsSimulator, expected_audio
from unde_testkit.service_auth import service_client
from unde_testkit.testing import EnvWriter, EnvWriterFactory, free_port
from voice.app import create
from voice.settings import VoiceSettings

pytestmark = pytest.mark.timeout(60)

PARAMS = {"warmth": 0.8, "tempo": 1.0, "tension": 0.1, "expressiveness": "moderate"}
GREETING = "Привет! Рада тебя видеть!"


@pytest.fixture
def write_env(env_writer: EnvWriterFactory) -> EnvWriter:
    return env_writer(VoiceSettings)


Env = Callable[[str], dict[str, str]]


def _client(write_env: EnvWriter, env: dict[str, str], **extra: str) -> TestClient:
    write_env({**env, "ELEVENLABS_TIMEOUT": "1.5", **extra})
    return service_client(create(VoiceSettings.load()))


@pytest.fixture
def client(
    write_env: EnvWriter,
    elevenlabs_url: str,
    simulator: ElevenLabsSimulator,
    voice_env: Env,
) -> Iterator[TestClient]:
    with _client(write_env, voice_env(elevenlabs_url)) as c:
        yield c


def _metric(client: TestClient, name: str, labels: dict[str, str] | None = None) -> float:
    value = client.app.state.runtime.metrics.registry.get_sample_value(name, labels or {})  # type: ignore[attr-defined]
    return value or 0.0


def test_synthesizes_then_serves_from_the_cache(client: TestClient, simulator: ElevenLabsSimulator) -> None:
    first = client.post("/synthesize", json={"text": GREETING, "voice_params": PARAMS})
    assert first.status_code == 200, first.text
    assert first.headers["content-type"] == "audio/mpeg"
    assert first.headers["x-cache"] == "miss"
    assert first.content == expected_audio(GREETING)
    second = client.post("/synthesize", json={"text": GREETING, "voice_params": PARAMS})
    assert second.headers["x-cache"] == "hit"
    assert second.content == first.content
    assert simulator.texts() == [GREETING]
    assert _metric(client, "voice_phrase_cache_hits_total", {"endpoint": "synthesize"}) == 1
    assert _metric(client, "voice_phrase_cache_misses_total", {"endpoint": "synthesize"}) == 1


def test_other_params_are_another_phrase_unless_a_cache_key_names_it(
    client: TestClient, simulator: ElevenLabsSimulator
) -> None:
    calmer = {**PARAMS, "warmth": 0.2}
    client.post("/synthesize", json={"text": GREETING, "voice_params": PARAMS})
    assert (
        client.post("/synthesize", json={"text": GREETING, "voice_params": calmer}).headers["x-cache"]
        == "miss"
    )
    keyed = {"text": GREETING, "cache_key": "greeting_default"}
    assert client.post("/synthesize", json={**keyed, "voice_params": PARAMS}).headers["x-cache"] == "miss"
    assert client.post("/synthesize", json={**keyed, "voice_params": calmer}).headers["x-cache"] == "hit"
    changed = client.post("/synthesize", json={**keyed, "text": "Здравствуй!", "voice_params": PARAMS})
    assert changed.headers["x-cache"] == "miss"
    assert changed.content == expected_audio("Здравствуй!")
    assert len(simulator.requests) == 4


def test_params_that_map_alike_share_the_audio(client: TestClient, simulator: ElevenLabsSimulator) -> None:
    client.post("/synthesize", json={"text": GREETING, "voice_params": {**PARAMS, "tempo": 1.3}})
    same = client.post("/synthesize", json={"text": GREETING, "voice_params": {**PARAMS, "tempo": 1.2}})
    assert same.headers["x-cache"] == "hit"


def test_cache_hits_are_served_while_elevenlabs_is_down(
    write_env: EnvWriter,
    elevenlabs_url: str,
    simulator: ElevenLabsSimulator,
    voice_env: Env,
) -> None:
    with _client(write_env, voice_env(elevenlabs_url)) as up:
        assert up.post("/synthesize", json={"text": GREETING, "voice_params": PARAMS}).status_code == 200
    with _client(write_env, voice_env(f"http://127.0.0.1:{free_port()}")) as down:
        hit = down.post("/synthesize", json={"text": GREETING, "voice_params": PARAMS})
        assert (hit.status_code, hit.headers["x-cache"]) == (200, "hit")
        assert hit.content == expected_audio(GREETING)
        miss = down.post("/synthesize", json={"text": "Новая фраза", "voice_params": PARAMS})
        assert miss.status_code == 503
        assert miss.headers["retry-after"] == "1"
        assert miss.json()["error"] == "tts_unavailable"
        assert _metric(down, "voice_elevenlabs_errors_total", {"reason": "unavailable"}) == 1


@pytest.mark.parametrize(
    ("mode", "status", "code"),
    [
        ("rate_limited", 503, "tts_rate_limited"),
        ("server_error", 503, "tts_server_error"),
        ("timeout", 503, "tts_timeout"),
        ("malformed", 502, "tts_malformed"),
    ],
)
def test_elevenlabs_faults_answer_without_caching(
    client: TestClient, simulator: ElevenLabsSimulator, mode: str, status: int, code: str
) -> None:
    simulator.mode = mode
    response = client.post("/synthesize", json={"text": GREETING, "voice_params": PARAMS})
    assert (response.status_code, response.json()["error"]) == (status, code)
    simulator.mode = "ok"
    assert (
        client.post("/synthesize", json={"text": GREETING, "voice_params": PARAMS}).headers["x-cache"]
        == "miss"
    )


def test_a_wrong_key_is_a_bad_gateway(
    write_env: EnvWriter,
    elevenlabs_url: str,
    simulator: ElevenLabsSimulator,
    voice_env: Env,
) -> None:
    with _client(write_env, voice_env(elevenlabs_url), ELEVENLABS_API_KEY="nope") as c:
        response = c.post("/synthesize", json={"text": GREETING, "voice_params": PARAMS})
    assert (response.status_code, response.json()["error"]) == (502, "tts_rejected")
    assert "nope" not in response.text


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (
            {"text": GREETING, "voice_params": {"warmth": 0.5, "tempo": 1}},
            ["body", "voice_params", "tension"],
        ),
        ({"text": GREETING, "voice_params": {**PARAMS, "tempo": "fast"}}, ["body", "voice_params", "tempo"]),
        ({"text": GREETING, "voice_params": {**PARAMS, "tempo": 0}}, ["body", "voice_params", "tempo"]),
        ({"text": GREETING, "voice_params": [1]}, ["body", "voice_params"]),
    ],
)
def test_bad_params_are_422_naming_the_field(
    client: TestClient, simulator: ElevenLabsSimulator, body: dict[str, Any], loc: list[str]
) -> None:
    response = client.post("/synthesize", json=body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == loc
    assert simulator.requests == []


@pytest.mark.parametrize(("text", "code"), [("x" * 5001, "text_too_long"), (" \n\t", "text_blank")])
def test_bad_text_is_422_naming_the_field(
    client: TestClient, simulator: ElevenLabsSimulator, text: str, code: str
) -> None:
    response = client.post("/synthesize", json={"text": text, "voice_params": PARAMS})
    assert response.status_code == 422
    assert response.json()["error"] == code
    assert response.json()["detail"].startswith("text:")
    assert simulator.requests == []


def test_fastapi_validation_names_missing_fields(client: TestClient) -> None:
    response = client.post("/synthesize", json={"voice_params": PARAMS})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "text"]


def test_only_service_callers_may_synthesize(client: TestClient, simulator: ElevenLabsSimulator) -> None:
    bare = TestClient(client.app)
    response = bare.post("/synthesize", json={"text": GREETING, "voice_params": PARAMS})
    assert response.status_code == 401
    assert simulator.requests == []
