"""The fuzz run of voice (unde_testkit.fuzz): its OpenAPI (POST /synthesize and the ops endpoints)
plus hand-made bodies against a real Redis and the ElevenLabs simulator — no answer is a 5xx,
none raises."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from unde_testkit.elevenlabs_simulator import ELEVENLABS_KEY, ELEVENLABS_VOICE, ElevenLabsSimulator
from unde_testkit.fuzz import HAND_MADE_BODIES, fuzz_app
from unde_testkit.service_auth import service_client
from unde_testkit.testing import EnvWriterFactory
from voice.app import create
from voice.runtime import Runtime
from voice.settings import VoiceSettings
from voice.stream import create_ws

pytestmark = pytest.mark.timeout(300)


def test_fuzz_finds_no_5xx(
    env_writer: EnvWriterFactory,
    elevenlabs_url: str,
    simulator: ElevenLabsSimulator,
    voice_env: Callable[[str], dict[str, str]],
) -> None:
    env_writer(VoiceSettings)(voice_env(elevenlabs_url))
    with service_client(create(VoiceSettings.load())) as client:
        report = fuzz_app(client, "voice", max_examples=30)
    print(report.summary())
    assert report.requests > 0
    assert simulator.requests, "no fuzz case reached ElevenLabs: the schema cases are all refused"
    assert report.findings == [], report.summary()


def test_websocket_hand_made_messages_never_fail(
    elevenlabs_url: str, simulator: ElevenLabsSimulator, voice_redis: str
) -> None:
    """Each hand-made body as a WebSocket message (text when it is UTF-8, else binary) to the
    in-process /stream app: an ``end`` or a client error frame, never ``internal_error``."""
    settings = VoiceSettings.load(
        elevenlabs_api_key=ELEVENLABS_KEY,
        elevenlabs_voice_id=ELEVENLABS_VOICE,
        elevenlabs_base_url=elevenlabs_url,
        redis_url=voice_redis,
        ws_require_user_token=False,
    )
    runtime = Runtime.create(settings)
    outcomes: dict[str, str] = {}
    with TestClient(create_ws(runtime)) as client:
        for name, body in HAND_MADE_BODIES:
            with client.websocket_connect("/stream") as conn:
                try:
                    conn.send_text(body.decode("utf-8"))
                except UnicodeDecodeError:
                    conn.send_bytes(body)
                while True:
                    message = conn.receive()
                    if message.get("text") is not None:
                        outcomes[name] = json.loads(message["text"]).get("code", "end")
                        break
                    if message["type"] == "websocket.close":
                        outcomes[name] = f"closed {message.get('code')}"
                        break
        assert client.portal is not None
        client.portal.call(runtime.aclose)
    assert set(outcomes) == {name for name, _ in HAND_MADE_BODIES}
    assert "internal_error" not in outcomes.values(), outcomes
    assert all(code.startswith(("invalid_", "end")) for code in outcomes.values()), outcomes
