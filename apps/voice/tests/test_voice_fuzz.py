"""The fuzz run of voice (unde_testkit.fuzz): its OpenAPI (POST /synthesize and the ops endpoints)
plus hand-made bodies against a real Redis and the ElevenLabs simulator — no answer is a 5xx,
none raises."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from unde_testkit.elevenlabs_simulator import ElevenLabsSimulator
from unde_testkit.fuzz import fuzz_app
from unde_testkit.service_auth import service_client
from unde_testkit.testing import EnvWriterFactory
from voice.app import create
from voice.settings import VoiceSettings

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
