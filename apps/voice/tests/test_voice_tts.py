"""The streaming ElevenLabs client against the simulator on loopback: the request it sends, the
audio it hands over, and each fault as the TtsError reason its metric counts."""

from __future__ import annotations

import asyncio

import pytest

from unde_common.metrics import AppMetrics
from unde_testkit.elevenlabs_simulator import (
    ELEVENLABS_KEY,
    ELEVENLABS_VOICE,
    ElevenLabsSimulator,
    expected_audio,
)
from unde_testkit.testing import free_port
from voice.mapping import map_voice_params
from voice.settings import VoiceSettings
from voice.tts import ElevenLabsClient, TtsError

pytestmark = pytest.mark.timeout(60)

TEXT = "Я нашла для тебя отличный образ на вечер."
SETTINGS = map_voice_params({"warmth": 0.8, "tempo": 1.0, "tension": 0.1})


def _settings(url: str, **overrides: object) -> VoiceSettings:
    values: dict[str, object] = {
        "elevenlabs_api_key": ELEVENLABS_KEY,
        "elevenlabs_voice_id": ELEVENLABS_VOICE,
        "elevenlabs_base_url": url,
        "elevenlabs_timeout": 1.5,
        **overrides,
    }
    return VoiceSettings.load(**values)


def _run(settings: VoiceSettings, previous: str | None = None) -> tuple[list[bytes], AppMetrics]:
    metrics = AppMetrics("voice", process_collectors=False)

    async def go() -> list[bytes]:
        client = ElevenLabsClient(settings, metrics)
        try:
            return [piece async for piece in client.stream(TEXT, SETTINGS, previous)]
        finally:
            await client.aclose()

    return asyncio.run(go()), metrics


def _fails(settings: VoiceSettings) -> tuple[TtsError, AppMetrics]:
    metrics = AppMetrics("voice", process_collectors=False)

    async def go() -> None:
        client = ElevenLabsClient(settings, metrics)
        try:
            await client.synthesize(TEXT, SETTINGS)
        finally:
            await client.aclose()

    with pytest.raises(TtsError) as info:
        asyncio.run(go())
    return info.value, metrics


def _errors(metrics: AppMetrics, reason: str) -> float:
    value = metrics.registry.get_sample_value("voice_elevenlabs_errors_total", {"reason": reason})
    return value or 0.0


def test_streams_the_audio_and_sends_the_documented_request(
    elevenlabs_url: str, simulator: ElevenLabsSimulator
) -> None:
    pieces, metrics = _run(_settings(elevenlabs_url), previous="Привет!")
    assert len(pieces) > 1
    assert b"".join(pieces) == expected_audio(TEXT)
    (request,) = simulator.requests
    assert request["path"] == f"/v1/text-to-speech/{ELEVENLABS_VOICE}/stream"
    assert request["query"] == {"output_format": "mp3_44100_128"}
    assert request["headers"]["xi-api-key"] == ELEVENLABS_KEY
    assert request["json"] == {
        "text": TEXT,
        "model_id": "eleven_v3",
        "voice_settings": {
            "stability": 0.64,
            "similarity_boost": 0.7,
            "style": 0.4,
            "use_speaker_boost": True,
            "speed": 1.0,
        },
        "previous_text": "Привет!",
    }
    assert metrics.registry.get_sample_value("voice_elevenlabs_requests_total") == 1
    assert metrics.registry.get_sample_value("voice_tts_latency_ms_count", {"source": "elevenlabs"}) == 1
    assert all(_errors(metrics, r) == 0 for r in ("timeout", "unavailable", "rejected"))


def test_no_previous_text_is_not_sent(elevenlabs_url: str, simulator: ElevenLabsSimulator) -> None:
    _run(_settings(elevenlabs_url))
    assert "previous_text" not in simulator.requests[0]["json"]


@pytest.mark.parametrize(
    ("mode", "reason", "status"),
    [
        ("rate_limited", "rate_limited", 429),
        ("server_error", "server_error", 500),
        ("unavailable", "server_error", 503),
        ("malformed", "malformed", None),
        ("timeout", "timeout", None),
    ],
)
def test_faults_become_named_errors(
    elevenlabs_url: str, simulator: ElevenLabsSimulator, mode: str, reason: str, status: int | None
) -> None:
    simulator.mode = mode
    error, metrics = _fails(_settings(elevenlabs_url))
    assert (error.reason, error.status) == (reason, status)
    assert ELEVENLABS_KEY not in str(error)
    assert _errors(metrics, reason) == 1
    assert len(simulator.requests) == 1  # never retried: the audio would start again


def test_a_stall_after_the_first_bytes_is_a_timeout(
    elevenlabs_url: str, simulator: ElevenLabsSimulator
) -> None:
    simulator.mode = "stall"
    metrics = AppMetrics("voice", process_collectors=False)
    got: list[bytes] = []

    async def go() -> None:
        client = ElevenLabsClient(_settings(elevenlabs_url), metrics)
        try:
            async for piece in client.stream(TEXT, SETTINGS):
                got.append(piece)
        finally:
            await client.aclose()

    with pytest.raises(TtsError) as info:
        asyncio.run(go())
    assert info.value.reason == "timeout"
    assert got and expected_audio(TEXT).startswith(b"".join(got))


def test_elevenlabs_down_is_unavailable() -> None:
    error, metrics = _fails(_settings(f"http://127.0.0.1:{free_port()}"))
    assert error.reason == "unavailable"
    assert _errors(metrics, "unavailable") == 1


def test_a_wrong_key_is_rejected(elevenlabs_url: str, simulator: ElevenLabsSimulator) -> None:
    error, _ = _fails(_settings(elevenlabs_url, elevenlabs_api_key="wrong"))
    assert (error.reason, error.status) == ("rejected", 401)
    assert "wrong" not in str(error)


@pytest.mark.parametrize(
    "overrides",
    [
        {"elevenlabs_model": "eleven_v9_imaginary"},
        {"elevenlabs_voice_id": "no-such-voice"},
        {"audio_format": "pcm_44100", "elevenlabs_model": "eleven_turbo_v1"},
    ],
)
def test_a_bad_configuration_is_rejected(
    elevenlabs_url: str, simulator: ElevenLabsSimulator, overrides: dict[str, object]
) -> None:
    error, _ = _fails(_settings(elevenlabs_url, **overrides))
    assert error.reason == "rejected"
    assert error.status in (404, 422)


def test_the_simulator_refuses_settings_out_of_range(
    elevenlabs_url: str, simulator: ElevenLabsSimulator
) -> None:
    import httpx

    body = {"text": "hi", "model_id": "eleven_v3", "voice_settings": {"speed": 1.5}}
    response = httpx.post(
        f"{elevenlabs_url}/v1/text-to-speech/{ELEVENLABS_VOICE}/stream",
        json=body,
        headers={"xi-api-key": ELEVENLABS_KEY},
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "voice_settings", "speed"]
    missing = httpx.post(f"{elevenlabs_url}/v1/text-to-speech/{ELEVENLABS_VOICE}/stream", json=body)
    assert missing.status_code == 401
    assert missing.json() == {"detail": {"status": "invalid_api_key", "message": "Invalid API key"}}
